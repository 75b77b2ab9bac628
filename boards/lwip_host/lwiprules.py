# The lwIP host board's rules on natrouter.json (config.board_rules), and what natlink
# claims for the router: natlinkrules.py (boards/natlink/, shared with the ESP32 boards)
# with this build's limits. Used by board.py on the board and by host/hostargs.py, which
# starts the host program from the same file, so both read it the same way. Runs on
# MicroPython and CPython; slow path only.
#
# The port split (boards/natlink/README.md): lwIP keeps the WAN address's ports from
# 0xC000 up (its own connections) and UDP 68 (its DHCP client); the router gets the rest
# of what it uses. natlink claims, on the WAN address:
# - TCP and UDP destination ports 0..1023: the router maps client ports below 1024 into
#   1..1023 (portgen.py); port 0 is nobody's service: the router drops and counts it,
#   where lwIP would answer a RST or a port unreachable. Minus UDP 68.
# - the NAT range (config "ports"), below 0xC000;
# - every port forward's port;
# - ICMP query ids 0..65535: the router picks ids anywhere (portgen.py), and this board's
#   lwIP pings nobody. Echo requests to the WAN address are never claimed: lwIP answers
#   them, as on the ESP32.
# The host program takes the claims when it starts: a forward added later through the
# REPL reaches the router only inside what is claimed already (ports below 1024 and the
# NAT range); others need the board restarted.

import natlinkrules
from natlinkrules import DEFAULTS, claims  # noqa: F401 (this board's rules, one module)

MAX_RANGES = 8           # NATLINK_MAX_RANGES
PACKET_MAX = 1500        # NATLINK_MTU: the largest packet natlink carries


def check(cfg, problems):
    """config.board_rules' check: what config.validate() cannot know about this board."""
    natlinkrules.check(cfg, problems, MAX_RANGES, PACKET_MAX)
