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
# - the LAN's DHCP requests, when DHCP is enabled: the firmware serves DHCP on the LAN.
# The host program takes the claims from natrouter.json when it starts (hostargs.py) and
# from the firmware whenever its running configuration changes (board.py: a forward
# added from the REPL is claimed from the next packet).

import natlinkrules
from natlinkrules import DEFAULTS, claims  # noqa: F401 (this board's rules, one module)

MAX_RANGES = 8           # NATLINK_MAX_RANGES
PACKET_MAX = 1500        # NATLINK_MTU: the largest packet natlink carries


def ranges_text(ranges):
    """[(lo, hi), ...] as the host program reads them: "lo-hi,lo-hi"."""
    return ",".join("%d-%d" % r for r in ranges)


def claims_request(cfg):
    """The control request that hands the host program cfg's claims."""
    c = claims(cfg)
    return "claims tcp=%s udp=%s icmp=%s dhcp=%d" % (
        ranges_text(c["tcp"]), ranges_text(c["udp"]), ranges_text(c["icmp"]), c["dhcp"])


def check(cfg, problems):
    """config.board_rules' check: what config.validate() cannot know about this board."""
    natlinkrules.check(cfg, problems, MAX_RANGES, PACKET_MAX)
