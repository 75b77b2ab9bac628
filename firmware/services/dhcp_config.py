# The DHCP server's configuration section (services/dhcp.py), validated in the style of
# firmware/manage/config.py:
#
#   cfg, problems = dhcp_config.validate(raw, lan_addr, lan_mask)
#
# cfg always comes back complete and valid; problems says, one sentence each naming the
# key, what was wrong and what was used instead. raw None (no section) gives the
# defaults without a problem. lan_addr/lan_mask are the LAN's validated dotted strings.
#
#   {"enabled": true, "first": <LAN .100>, "last": <LAN .199, clipped to the subnet>,
#    "lease_s": 3600, "capacity": 0,
#    "static": [{"mac": "aa:bb:cc:dd:ee:ff", "addr": "192.168.4.50"}]}
#
# capacity: the lease table's entries; 0 (the default) makes it the pool's size, so that
# every address of the pool can be bound (at most CAPACITY_MAX); a smaller number saves
# RAM and caps the clients served at once (services/README.md).
#
# The DNS servers it hands out are the configuration's top-level "dns" (dns_servers()).
#
# Fallbacks: a bad key takes its default; a bad static entry or DNS server is left out.
# The router's own address may lie inside first..last: the server skips it.
# Runs on MicroPython (no re, no dataclasses).

from nat.addr import ip, ip_bytes, ip_str, unroutable  # noqa: F401 (dhcp.py's ip_bytes)
from manage.validation import Bad, Problems, is_int

LEASE_MIN = 120             # shorter leases mostly make renewal traffic
LEASE_MAX = 7 * 86400
CAPACITY_MAX = 254          # entries (a /24's every host); 0 in the config: the pool's size
STATIC_MAX = 64
DNS_MAX = 8                 # what fits in a 576-byte reply beside everything else

KEYS = ("enabled", "first", "last", "lease_s", "capacity", "static")


# ---- addresses (slow path: on 32-bit MicroPython these ints are heap objects)

def mac(text):
    """'aa:bb:cc:dd:ee:ff' (either case) -> 6 bytes; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("not a MAC address: %r" % (text,))
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError("not a MAC address: %r" % text)
    out = bytearray(6)
    for i, part in enumerate(parts):
        if len(part) != 2 or not all(c in "0123456789abcdefABCDEF" for c in part):
            raise ValueError("not a MAC address: %r" % text)
        out[i] = int(part, 16)
    return bytes(out)


def mac_str(b):
    return ":".join("%02x" % x for x in b)


def usable_mac(b):
    """A client's own MAC: not a group (multicast/broadcast) address, not all zero."""
    return not (b[0] & 1) and any(b)


# ---- defaults

def default_pool(la, lm):
    """(first, last) as ints: the LAN's .100 to .199, clipped to the subnet, never the
    router's own address."""
    net = la & lm
    bcast = net | (lm ^ 0xFFFFFFFF)
    first, last = net + 100, net + 199
    if first >= bcast:
        first = net + 1
    if last >= bcast:
        last = bcast - 1
    if first == la:
        first += 1
    if last == la:
        last -= 1
    return first, last


def defaults(lan_addr, lan_mask):
    first, last = default_pool(ip(lan_addr), ip(lan_mask))
    return {"enabled": True, "first": ip_str(first), "last": ip_str(last), "lease_s": 3600,
            "capacity": 0, "static": []}


# ---- validation

class _Lan:
    def __init__(self, addr, mask):
        self.addr, self.mask = addr, mask
        self.a, self.m = ip(addr), ip(mask)

    def host(self, where, v):
        """v (a dotted string) as an int, if it is a host on the LAN other than the router."""
        try:
            a = ip(v)
        except ValueError:
            raise Bad("%s: %r is not an IPv4 address" % (where, v))
        inv = self.m ^ 0xFFFFFFFF
        if a & self.m != self.a & self.m:
            raise Bad("%s: %r is not on the LAN %s/%s" % (where, v, self.addr, self.mask))
        if (a & inv) in (0, inv):
            raise Bad("%s: %r is the network or broadcast address of the LAN %s/%s"
                       % (where, v, self.addr, self.mask))
        if a == self.a:
            raise Bad("%s: %r is the router's own address" % (where, v))
        return a


def validate(raw, lan_addr, lan_mask, problems=None):
    """(cfg, problems) for the parsed "dhcp" section (None: absent, the defaults).
    problems: a validation.Problems to add to (strict: the first problem raises)."""
    d = defaults(lan_addr, lan_mask)
    if problems is None:
        problems = Problems()
    if raw is None:
        return d, problems
    if not isinstance(raw, dict):
        problems.add("dhcp: must be an object with %s" % ", ".join(KEYS), "using defaults")
        return d, problems
    for k in raw:
        if k not in KEYS:
            problems.add("dhcp.%s: unknown key" % (k,), "ignored")
    lan = _Lan(lan_addr, lan_mask)
    cfg = {}
    v = raw.get("enabled", True)
    if v is True or v is False:
        cfg["enabled"] = v
    else:
        problems.add("dhcp.enabled: %r must be true or false" % (v,), "using true")
        cfg["enabled"] = True
    cfg["lease_s"] = _int(raw, "lease_s", LEASE_MIN, LEASE_MAX, d, problems,
                          " (2 minutes to 7 days)")
    cfg["capacity"] = _int(raw, "capacity", 0, CAPACITY_MAX, d, problems, " (0: the pool's size)")
    _pool(cfg, raw, d, lan, problems)
    cfg["static"] = _statics(raw.get("static", []), lan, problems)
    return cfg, problems


def _int(raw, key, lo, hi, d, problems, why):
    v = raw.get(key, d[key])
    if is_int(v) and lo <= v <= hi:
        return v
    problems.add("dhcp.%s: %r must be an integer %d..%d%s" % (key, v, lo, hi, why),
                 "using %d" % d[key])
    return d[key]


def _pool(cfg, raw, d, lan, problems):
    ends = []
    for key in ("first", "last"):
        try:
            ends.append(lan.host("dhcp." + key, raw.get(key, d[key])))
        except Bad as e:
            problems.add(str(e), "using %s" % d[key])
            ends.append(ip(d[key]))
    first, last = ends
    if first > last:
        problems.add("dhcp: first %s is above last %s" % (ip_str(first), ip_str(last)),
                     "using the default pool %s..%s" % (d["first"], d["last"]))
        first, last = ip(d["first"]), ip(d["last"])
    cfg["first"], cfg["last"] = ip_str(first), ip_str(last)


def _statics(raw, lan, problems):
    if not isinstance(raw, list):
        problems.add("dhcp.static: must be a list of {\"mac\", \"addr\"}", "no static leases")
        return []
    out = []
    macs = []
    addrs = []
    for i, entry in enumerate(raw):
        where = "dhcp.static[%d]" % i
        if len(out) == STATIC_MAX:
            problems.add("dhcp.static: more than %d entries" % STATIC_MAX, "the rest left out")
            break
        try:
            if not isinstance(entry, dict):
                raise Bad("%s: must be an object with mac and addr" % where)
            for k in entry:
                if k not in ("mac", "addr"):
                    raise Bad("%s.%s: unknown key" % (where, k))
            for k in ("mac", "addr"):
                if k not in entry:
                    raise Bad("%s.%s: missing" % (where, k))
            try:
                m = mac(entry["mac"])
            except ValueError:
                raise Bad("%s.mac: %r is not a MAC address like aa:bb:cc:dd:ee:ff"
                           % (where, entry["mac"]))
            if not usable_mac(m):
                raise Bad("%s.mac: %s is a multicast, broadcast or zero MAC"
                           % (where, entry["mac"]))
            a = lan.host(where + ".addr", entry["addr"])
            if m in macs:
                raise Bad("%s.mac: %s already has a static lease" % (where, mac_str(m)))
            if a in addrs:
                raise Bad("%s.addr: %s is already another MAC's static address"
                           % (where, ip_str(a)))
        except Bad as e:
            problems.add(str(e), "static lease left out")
            continue
        macs.append(m)
        addrs.append(a)
        out.append({"mac": mac_str(m), "addr": ip_str(a)})
    return out


def dns_servers(raw, default, problems):
    """The configuration's "dns" list: the servers DHCP hands out (RFC 2132 6)."""
    if not isinstance(raw, list):
        problems.add("dns: must be a list of IPv4 addresses", "using %s" % default)
        return list(default)
    out = []
    for i, v in enumerate(raw):
        if len(out) == DNS_MAX:
            problems.add("dns: more than %d servers" % DNS_MAX, "the rest left out")
            break
        try:
            a = ip(v)
        except ValueError:
            problems.add("dns[%d]: %r is not an IPv4 address" % (i, v), "left out")
            continue
        if unroutable(a):
            problems.add("dns[%d]: %r is not a unicast address" % (i, v), "left out")
            continue
        out.append(ip_str(a))
    return out
