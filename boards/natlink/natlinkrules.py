# The port split between lwIP and the router on a natlink board (README.md, "The port
# split"), as rules on natrouter.json: what natlink claims for the router and what a
# configuration must leave to lwIP. Shared by the ESP32 boards (esp32_common/
# esp32board.py, frozen in) and the lwIP host board (lwip_host/lwiprules.py), which add
# their own limits. Runs on MicroPython and CPython; slow path only.

LWIP_EPHEMERAL = 0xC000  # TCP/UDP_LOCAL_PORT_RANGE_START in lwIP 2.1/2.2 and esp-lwip
DHCP_CLIENT = 68         # lwIP's DHCP client: natlink never claims it

DEFAULTS = {"ports": {"first": 1024, "last": LWIP_EPHEMERAL - 1}}


def merge(ranges):
    """Sorted inclusive (lo, hi) ranges, overlapping and adjacent ones joined."""
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def claims(cfg):
    """{"tcp": [...], "udp": [...], "icmp": [...], "dhcp": bool}: what natlink claims
    for the router (natlink.start's and natlink.claim's keywords). On the WAN address the
    ports (ICMP ids): TCP/UDP 0..1023 (the router maps client ports below 1024 there;
    port 0 it drops and counts, where lwIP would answer), the NAT range, each port
    forward; UDP 68 stays lwIP's. Every ICMP query id: lwIP answers pings itself and
    pings nobody. Ports from 0xC000 up are lwIP's own (check() keeps the NAT range and
    the forwards below). dhcp: the LAN's DHCP requests, when the configuration enables
    DHCP (the router's own server serves the LAN on every natlink board)."""
    first, last = cfg["ports"]["first"], cfg["ports"]["last"]
    tcp = [(0, 1023), (first, last)]
    udp = [(0, DHCP_CLIENT - 1), (DHCP_CLIENT + 1, 1023), (first, last)]
    for f in cfg["forwards"]:
        (tcp if f["proto"] == "tcp" else udp).append((f["port"], f["port"]))
    return {"tcp": merge(tcp), "udp": merge(udp), "icmp": [(0, 0xFFFF)],
            "dhcp": cfg["dhcp"]["enabled"]}


def check(cfg, problems, max_ranges, mtu_max):
    """The split's rules on a cfg config.validate() passed, for config.board_rules: the
    NAT range below 0xC000, no forward on lwIP's ports, at most max_ranges claimed ranges
    per protocol (natlink's table), no MTU over mtu_max (what natlink carries). Each
    change is reported in problems and made in cfg."""
    ports = cfg["ports"]
    top = LWIP_EPHEMERAL - 1
    if ports["last"] > top:
        first = ports["first"] if ports["first"] <= top else DEFAULTS["ports"]["first"]
        problems.add("ports.last: %d reaches into %d..65535, where lwIP picks the ports of "
                     "the board's own connections; set it to %d at most"
                     % (ports["last"], LWIP_EPHEMERAL, top), "using %d..%d" % (first, top))
        cfg["ports"] = {"first": first, "last": top}
    kept = []
    for f in cfg["forwards"]:
        what = "forwards (%s %d -> %s:%d)" % (f["proto"], f["port"], f["to"], f["to_port"])
        if f["port"] > top:
            problems.add("%s: port %d is lwIP's on this board (its own connections use "
                         "%d..65535)" % (what, f["port"], LWIP_EPHEMERAL), "forward left out")
            continue
        if f["proto"] == "udp" and f["port"] == DHCP_CLIENT:
            problems.add("%s: UDP port 68 is the board's DHCP client" % what,
                         "forward left out")
            continue
        if len(claims(dict(cfg, forwards=kept + [f]))[f["proto"]]) > max_ranges:
            problems.add("%s: natlink claims at most %d port ranges per protocol; bring the "
                         "port forwards into the NAT range (ports)" % (what, max_ranges),
                         "forward left out")
            continue
        kept.append(f)
    cfg["forwards"] = kept
    asked = cfg["mtu"]
    if asked > mtu_max:
        problems.add("mtu: %d is more than natlink carries on this board (%d)"
                     % (asked, mtu_max), "using %d" % mtu_max)
        cfg["mtu"] = mtu_max
    for name in ("lan", "wan"):
        if cfg[name]["mtu"] > mtu_max:
            if cfg[name]["mtu"] != asked:      # its own, not the one just reported
                problems.add("%s.mtu: %d is more than natlink carries on this board (%d)"
                             % (name, cfg[name]["mtu"], mtu_max), "using %d" % mtu_max)
            cfg[name]["mtu"] = mtu_max
