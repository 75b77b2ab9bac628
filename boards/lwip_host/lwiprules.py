# The lwIP host board's rules on natrouter.json (config.board_rules), and what natlink
# claims for the router. Shared by board.py on the board and host/hostargs.py, which
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

LWIP_EPHEMERAL = 0xC000  # TCP/UDP_LOCAL_PORT_RANGE_START in lwIP 2.1.3 and esp-lwip
DHCP_CLIENT = 68
MAX_RANGES = 8           # NATLINK_MAX_RANGES
PACKET_MAX = 1500        # NATLINK_MTU: the largest packet natlink carries

DEFAULTS = {"ports": {"first": 1024, "last": LWIP_EPHEMERAL - 1}}


def merge(ranges):
    """Sorted inclusive ranges with overlapping and adjacent ones joined."""
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def claims(cfg):
    """{"tcp": [(lo, hi), ...], "udp": [...], "icmp": [...]} for a cfg check() passed."""
    first, last = cfg["ports"]["first"], cfg["ports"]["last"]
    tcp = [(0, 1023), (first, last)]
    udp = [(0, DHCP_CLIENT - 1), (DHCP_CLIENT + 1, 1023), (first, last)]
    for f in cfg["forwards"]:
        (tcp if f["proto"] == "tcp" else udp).append((f["port"], f["port"]))
    return {"tcp": merge(tcp), "udp": merge(udp), "icmp": [(0, 0xFFFF)]}


def check(cfg, problems):
    """config.board_rules' check: what config.validate() cannot know about this board."""
    top = LWIP_EPHEMERAL - 1
    ports = cfg["ports"]
    if ports["last"] > top:
        first = ports["first"] if ports["first"] <= top else DEFAULTS["ports"]["first"]
        problems.add("ports.last: %d reaches into %d..65535, where lwIP picks the ports of "
                     "its own connections; set it to %d at most"
                     % (ports["last"], LWIP_EPHEMERAL, top), "using %d..%d" % (first, top))
        cfg["ports"] = {"first": first, "last": top}
    kept = []
    for f in cfg["forwards"]:
        what = "forwards (%s %d -> %s:%d)" % (f["proto"], f["port"], f["to"], f["to_port"])
        if f["port"] > top or (f["proto"] == "udp" and f["port"] == DHCP_CLIENT):
            problems.add("%s: that port is lwIP's on this board" % what, "forward left out")
            continue
        if len(claims(dict(cfg, forwards=kept + [f]))[f["proto"]]) > MAX_RANGES:
            problems.add("%s: natlink claims at most %d port ranges per protocol; bring the "
                         "port forwards into the NAT range (ports)" % (what, MAX_RANGES),
                         "forward left out")
            continue
        kept.append(f)
    cfg["forwards"] = kept
    asked = cfg["mtu"]
    for sec, key in ((cfg, "mtu"), (cfg["lan"], "lan.mtu"), (cfg["wan"], "wan.mtu")):
        if sec.get("mtu", 0) > PACKET_MAX:
            if sec is cfg or sec["mtu"] != asked:  # a link's own, not the one just reported
                problems.add("%s: %d is more than natlink carries (%d)"
                             % (key, sec["mtu"], PACKET_MAX), "using %d" % PACKET_MAX)
            sec["mtu"] = PACKET_MAX
