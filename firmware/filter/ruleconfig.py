# The "firewall" section of natrouter.json (manage/config.py calls defaults() and
# validate()):
#
#   "firewall": {"default": "allow",
#                "rules": [{"dir": "out", "proto": "tcp", "lan": "192.168.4.23",
#                           "remote": "any", "port": 80, "action": "reject"}, ...],
#                "blocked": ["192.168.4.50"]}
#
# A rule: dir "out" (a LAN host opening a flow), "in" (a port forward being used) or
# "any"; proto "any", "tcp", "udp" or "icmp"; lan and remote "any", an address or
# "address/prefix"; port "any", a port, or [first, last] (for icmp: the ICMP type; for
# "in": the WAN port the remote host opened); action "allow", "drop" or "reject". Every
# key but action may be left out ("any", dir "out"). "blocked": LAN hosts with no
# internet (nr.block), checked before the rules. validate() gives each rule in full.
import nat
from nat.addr import unroutable
from manage.validation import Bad, is_int

RULES_MAX = 32     # fixed: the compiled rules' memory is known in advance (rules.py)
BLOCKED_MAX = 16
ACTIONS = ("allow", "drop", "reject")
DIRECTIONS = ("out", "in", "any")
PROTOS = ("any", "tcp", "udp", "icmp")
_KEYS = ("dir", "proto", "lan", "remote", "port", "action")


def defaults():
    return {"default": "allow", "rules": [], "blocked": []}


def validate(sec, lan, problems):
    """The section whole, from the file's raw value; lan: cfg["lan"] (addr_int,
    mask_int). A bad rule or blocked host is left out (strict: raises naming it)."""
    out = defaults()
    if not isinstance(sec, dict):
        problems.add("firewall: must be an object with default, rules, blocked",
                     "no firewall rules")
        return out
    for k in sec:
        if k not in out:
            problems.add("firewall.%s: unknown key" % k, "ignored")
    v = sec.get("default", "allow")
    if v in ACTIONS:
        out["default"] = v
    else:
        problems.add("firewall.default: %r must be one of %s" % (v, ", ".join(ACTIONS)),
                     "using allow")
    rules = sec.get("rules", [])
    if not isinstance(rules, list):
        problems.add("firewall.rules: must be a list", "no rules")
        rules = []
    for i, r in enumerate(rules):
        try:
            if len(out["rules"]) == RULES_MAX:
                raise Bad("firewall.rules[%d]: at most %d rules" % (i, RULES_MAX))
            out["rules"].append(rule(r, "firewall.rules[%d]" % i))
        except Bad as e:
            problems.add(str(e), "rule left out")
    blocked = sec.get("blocked", [])
    if not isinstance(blocked, list):
        problems.add("firewall.blocked: must be a list of LAN host addresses", "none blocked")
        blocked = []
    for i, host in enumerate(blocked):
        try:
            out["blocked"].append(_blocked(host, "firewall.blocked[%d]" % i, lan,
                                           out["blocked"]))
        except Bad as e:
            problems.add(str(e), "host left out")
    return out


def rule(r, where):
    """One rule, every key given; Bad naming the key when it is wrong."""
    if not isinstance(r, dict):
        raise Bad("%s: must be an object with %s" % (where, ", ".join(_KEYS)))
    for k in r:
        if k not in _KEYS:
            raise Bad("%s.%s: unknown key" % (where, k))
    out = {"dir": r.get("dir", "out"), "proto": r.get("proto", "any"),
           "lan": r.get("lan", "any"), "remote": r.get("remote", "any"),
           "port": r.get("port", "any"), "action": r.get("action")}
    for key, allowed in (("dir", DIRECTIONS), ("proto", PROTOS), ("action", ACTIONS)):
        if out[key] not in allowed:
            raise Bad("%s.%s: %r must be one of %s" % (where, key, out[key], ", ".join(allowed)))
    for key in ("lan", "remote"):
        subnet(out[key], "%s.%s" % (where, key))
    port = out["port"]
    if port != "any":
        if out["proto"] == "any":
            raise Bad("%s.port: a port (or ICMP type) needs proto tcp, udp or icmp" % where)
        top = 255 if out["proto"] == "icmp" else 65535
        what = "an ICMP type 0..255" if top == 255 else "a port 1..65535"
        first, last = port if isinstance(port, list) and len(port) == 2 else (port, port)
        if not (is_int(first) and is_int(last) and (top == 255 or first >= 1)
                and first <= last <= top):
            raise Bad("%s.port: %r must be \"any\", %s or [first, last]" % (where, port, what))
        out["port"] = [first, last] if isinstance(port, list) else port
    return out


def subnet(text, where):
    """(network, mask) as ints of "any", "a.b.c.d" or "a.b.c.d/prefix"."""
    if text == "any":
        return 0, 0
    if not isinstance(text, str):
        raise Bad("%s: %r must be \"any\", an address or address/prefix" % (where, text))
    addr, _, prefix = text.partition("/")
    try:
        a = nat.ip(addr)
    except ValueError:
        raise Bad("%s: %r is not an address or address/prefix" % (where, text))
    bits = 32
    if prefix:
        if not prefix.isdigit() or int(prefix) > 32:
            raise Bad("%s: %r: the prefix must be 0..32" % (where, text))
        bits = int(prefix)
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    if a & mask != a:
        raise Bad("%s: %r has host bits set (network %s/%d)" % (
            where, text, nat.ip_str(a & mask), bits))
    return a, mask


def _blocked(host, where, lan, seen):
    try:
        a = nat.ip(host)
    except ValueError:
        raise Bad("%s: %r is not an IPv4 address" % (where, host))
    m = lan["mask_int"]
    if unroutable(a) or a & m != lan["addr_int"] & m or a == lan["addr_int"]:
        raise Bad("%s: %s is not a host on the LAN" % (where, host))
    if host in seen:
        raise Bad("%s: %s is blocked already" % (where, host))
    if len(seen) == BLOCKED_MAX:
        raise Bad("%s: at most %d blocked hosts" % (where, BLOCKED_MAX))
    return host
