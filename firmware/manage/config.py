# natrouter's configuration: a JSON file on the board (boards/README.md).
#
#   cfg, problems = config.load(path)
#
# cfg always comes back complete and valid; problems lists, one clear message each, what
# was wrong and what was used instead. A missing, unreadable or half-written file gives
# the defaults: the board must always boot to a state where it can be reached and fixed.
# Runs on MicroPython (json; no pathlib, no dataclasses). Written atomically: store.py.
#
# Besides the file's own keys, cfg carries the addresses as ints (slow path only; the
# per-packet path never builds whole addresses as ints):
#   cfg["lan"]["addr_int"], cfg["lan"]["mask_int"],
#   cfg["wan"]["addr_int"], cfg["wan"]["mask_int"], cfg["wan"]["gateway_int"],
#   each forward's "to_int" and "proto_num" (6 or 17).
# save() writes only the file's keys. A forward's "to_port" may be left out: it then
# equals "port".
#
# Fallbacks: lan and wan fall back to the defaults together (they must agree with each
# other); a bad forward is left out; any other bad key takes its default.
#
# "wan.mode" is "static" (the addresses are the WAN's) or "dhcp" (the board asks for a
# lease; the addresses only stand in until one comes); a file without it takes the
# default's. "wifi" holds the Wi-Fi boards' settings (access point, station: wifi.py),
# unused elsewhere. A board may change the defaults, add keys and sections of its own and
# its own checks (board_rules()). reset() goes back to the defaults, keeping a copy.
import json

import nat
from nat.addr import unroutable
from nat.table import TIMEOUTS
from services import dhcp_config
from filter import ruleconfig, captureconfig
from . import store
from .validation import Bad, Problems, int_section, is_int
from .wifi import validate as _wifi
from . import webconfig

DEFAULT_PATH = "natrouter.json"
TABLE_MAX = 8192
_WAN_MODES = ("static", "dhcp")


def defaults():
    """A fresh copy of the default configuration (without the derived *_int keys)."""
    d = {
        "lan": {"addr": "192.168.4.1", "mask": "255.255.255.0"},
        "wan": {"addr": "198.51.100.2", "mask": "255.255.255.0", "gateway": "198.51.100.1",
                "mode": "static"},
        "forwards": [],
        "ports": {"first": 1024, "last": 65535},
        "table": {"tcp": 512, "udp": 256, "icmp": 64},
        "mtu": 1500,
        "allow_source_route": False,  # RFC 7126 4.3, 4.4: source-routed packets dropped
        # How the NAT behaves (RFC 4787, RFC 5382, RFC 5508): inbound filtering of mapped
        # ports ("endpoint", "address" or "address_port"-dependent), the share of a full
        # table one LAN host may keep (percent), idle timeouts in seconds.
        "nat": {"filtering": "address", "share": 50,
                "timeouts": dict(TIMEOUTS)},
        "dns": ["9.9.9.9"],           # what DHCP hands out (Quad9)
        "firewall": ruleconfig.defaults(),  # who may open what (filter/ruleconfig.py)
        "capture": captureconfig.defaults(),  # the packet capture's ring (filter/capture.py)
        "wifi": {"ap_ssid": "natrouter", "ap_key": "natrouter", "ap_channel": 6,
                 "ap_clients": 4, "sta_ssid": "", "sta_key": ""},
    }
    d.update(webconfig.defaults())    # the page on the LAN, its password, MQTT
    for key, value in _board["defaults"].items():
        if isinstance(value, dict):  # over a section, or a section of the board's own
            d[key] = dict(d.get(key, {}))
            for k, v in value.items():
                d[key][k] = list(v) if isinstance(v, list) else v
        else:
            d[key] = list(value) if isinstance(value, list) else value
    lan = d["lan"]
    d["dhcp"] = dhcp_config.defaults(lan["addr"], lan["mask"])  # on the LAN (dhcp_config.py)
    return d


# A board's own rules (set by boards/<name>/board.py at import, before the configuration
# is loaded): defaults {section: {key: value}} laid over the ones above (e.g. table sizes
# that fit its heap), and check(cfg, problems), run last by validate() on the validated
# cfg: it adds one sentence naming the key per problem (problems.add(wrong, instead)) and
# leaves in cfg what is used instead, as validate() does. Keys and sections of the
# board's own (in its defaults, not above: e.g. "wifi.sta_mac", "recovery") reach check()
# as the file gives them, for it to judge.
_board = {"defaults": {}, "check": None}


def board_rules(defaults=None, check=None):
    _board["defaults"] = defaults or {}
    _board["check"] = check


def load(path=DEFAULT_PATH):
    """(cfg, problems). Never raises: a bad or missing file gives the defaults (or the
    whole copy an interrupted save() left: store.py)."""
    raw, problem = store.load_json(path)
    if raw is None:  # a half-written file would land here, were writes not atomic
        return validate(defaults())[0], ["%s: %s; using defaults" % (path, problem)]
    cfg, problems = validate(raw)
    said = [problem] if problem else []
    said += problems
    return cfg, ["%s: %s" % (path, p) for p in said]


RESET_KEPT = ".before-reset"   # where reset() keeps the configuration it replaces


def reset(path=DEFAULT_PATH):
    """Back to the defaults (the board's included): the file's configuration, if it held
    one, is kept as path + RESET_KEPT first (a power cut leaves the old file or the
    defaults, whole, and the copy), then the defaults are written. Returns the copy's
    path, or None when there was nothing to keep."""
    raw, _ = store.load_json(path)
    kept = None
    if raw is not None:
        kept = path + RESET_KEPT
        store.save_json(kept, raw)
    save(path, validate(defaults())[0])
    return kept


def save(path, cfg):
    """Validate cfg exactly as load() would, then write its file keys atomically
    (store.py): a power cut leaves either the old or the new file, never half of one.
    A configuration load() would not take whole raises ValueError naming the key, and
    nothing is written."""
    checked = validate(_file_keys(cfg), strict=True)[0]
    store.save_json(path, to_file(checked))


_DERIVED = ("addr_int", "mask_int", "gateway_int", "to_int", "proto_num")


def _file_keys(cfg):
    """cfg without the keys validate() derives, whatever shape it has (validate() then
    says what is wrong with it)."""
    if not isinstance(cfg, dict):
        raise ValueError("the configuration must be a dict, not %s" % type(cfg).__name__)
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _DERIVED}
        elif isinstance(value, list):
            value = [{k: v for k, v in x.items() if k not in _DERIVED}
                     if isinstance(x, dict) else x for x in value]
        out[key] = value
    return out


def to_file(cfg):
    """A validated cfg without the derived keys: what save() writes and load() reads."""
    out = {}
    for key, value in defaults().items():
        v = cfg.get(key, value)
        if isinstance(value, dict):
            sec = v
            v = {k: sec[k] for k in value}
            if key in ("lan", "wan") and sec.get("mtu", cfg["mtu"]) != cfg["mtu"]:
                v["mtu"] = sec["mtu"]  # the link's own MTU
        elif key == "dns":
            v = list(v)
        elif key == "forwards":
            v = [{"proto": f["proto"], "port": f["port"], "to": f["to"],
                  "to_port": f.get("to_port", f["port"])} for f in v]
        out[key] = v
    return out


# ---- validation

def validate(raw, strict=False):
    """(cfg, problems) for an already parsed JSON value. strict: raise ValueError at the
    first problem instead (nothing may be replaced by a default)."""
    problems = Problems(strict)
    d = defaults()
    if not isinstance(raw, dict):
        problems.add("the file must hold a JSON object", "using defaults")
        raw = {}
    for key in raw:
        if key not in d:
            problems.add("unknown key %r" % (key,), "ignored")
    cfg = {}
    _net(cfg, raw, d, problems)
    cfg["ports"] = _ports(raw.get("ports", d["ports"]), d["ports"], problems)
    cfg["table"] = _table(raw.get("table", d["table"]), d["table"], problems)
    cfg["mtu"] = _mtu(raw.get("mtu", d["mtu"]), d["mtu"], problems)
    for name in ("lan", "wan"):  # a link's own MTU, else "mtu"
        sec = raw.get(name)
        v = sec.get("mtu", cfg["mtu"]) if isinstance(sec, dict) else cfg["mtu"]
        if not (is_int(v) and _MTU[0] <= v <= _MTU[1]):
            problems.add("%s.mtu: %r must be an integer %d..%d" % ((name, v) + _MTU),
                         "using %d" % cfg["mtu"])
            v = cfg["mtu"]
        cfg[name]["mtu"] = v
    cfg["allow_source_route"] = _flag(raw, "allow_source_route", d, problems)
    cfg["nat"] = _nat(raw.get("nat", d["nat"]), d["nat"], problems)
    cfg["forwards"] = _forwards(raw.get("forwards", d["forwards"]), cfg["lan"], problems)
    cfg["firewall"] = ruleconfig.validate(raw.get("firewall", d["firewall"]), cfg["lan"],
                                          problems)
    cfg["capture"] = captureconfig.validate(raw.get("capture", d["capture"]), d["capture"],
                                            problems)
    cfg["dns"] = dhcp_config.dns_servers(raw.get("dns", d["dns"]), d["dns"], problems)
    # The pool lies on the LAN: its defaults follow the LAN's address.
    cfg["dhcp"] = dhcp_config.validate(raw.get("dhcp"), cfg["lan"]["addr"], cfg["lan"]["mask"],
                                       problems)[0]
    cfg["wifi"] = _wifi(raw.get("wifi", d["wifi"]), d["wifi"], problems)
    cfg.update(webconfig.validate(raw, d, problems))
    for key, value in d.items():  # the board's own sections
        if key not in cfg:
            sec = raw.get(key, value)
            if not isinstance(sec, dict):
                problems.add("%s: must be an object with %s" % (key, ", ".join(value)),
                             "using defaults")
                sec = {}
            cfg[key] = dict(value, **sec)
    if _board["check"] is not None:
        _board["check"](cfg, problems)
    return cfg, problems


def _section(raw, name, keys, optional=()):
    sec = raw.get(name)
    if not isinstance(sec, dict):
        raise Bad("%s: must be an object with %s" % (name, ", ".join(keys)))
    for k in sec:
        if k not in keys and k not in optional:
            raise Bad("%s.%s: unknown key" % (name, k))
    for k in keys:
        if k not in sec:
            raise Bad("%s.%s: missing" % (name, k))
    return sec


def _addr(sec, name, key):
    try:
        return nat.ip(sec[key])
    except ValueError:
        raise Bad("%s.%s: %r is not an IPv4 address" % (name, key, sec[key]))


def _mask(sec, name):
    m = _addr(sec, name, "mask")
    inv = m ^ 0xFFFFFFFF
    if inv & (inv + 1):
        raise Bad("%s.mask: %s is not a contiguous netmask" % (name, sec["mask"]))
    if inv < 3 or m == 0:
        raise Bad("%s.mask: %s leaves no room for hosts (use /1 to /30)" % (name, sec["mask"]))
    return m


def _host(sec, name, key, a, m):
    """a must be a usable unicast address inside the subnet of m, not its network or
    broadcast address."""
    if unroutable(a):
        raise Bad("%s.%s: %s is not a unicast host address" % (name, key, sec[key]))
    host = a & (m ^ 0xFFFFFFFF)
    if host == 0 or host == m ^ 0xFFFFFFFF:
        raise Bad("%s.%s: %s is the network or broadcast address of %s/%s"
                   % (name, key, sec[key], sec["addr"], sec["mask"]))


def _net(cfg, raw, d, problems):
    try:
        lan = _section(raw, "lan", ("addr", "mask"), ("mtu",)) if "lan" in raw else d["lan"]
        wan = (_section(raw, "wan", ("addr", "mask", "gateway"), ("mode", "mtu")) if "wan" in raw
               else d["wan"])
        mode = wan.get("mode", d["wan"]["mode"])
        if mode not in _WAN_MODES:
            raise Bad("wan.mode: %r must be \"static\" or \"dhcp\"" % (mode,))
        la, lm = _addr(lan, "lan", "addr"), _mask(lan, "lan")
        _host(lan, "lan", "addr", la, lm)
        wa, wm, gw = _addr(wan, "wan", "addr"), _mask(wan, "wan"), _addr(wan, "wan", "gateway")
        _host(wan, "wan", "addr", wa, wm)
        if gw & wm != wa & wm:
            raise Bad("wan.gateway: %s is not on the WAN subnet %s/%s"
                       % (wan["gateway"], wan["addr"], wan["mask"]))
        _host(wan, "wan", "gateway", gw, wm)
        if gw == wa:
            raise Bad("wan.gateway: %s is the WAN address itself" % wan["gateway"])
        both = lm & wm  # the shorter prefix decides whether they overlap
        if la & both == wa & both:
            raise Bad("lan/wan: the LAN subnet %s/%s and the WAN subnet %s/%s overlap"
                       % (lan["addr"], lan["mask"], wan["addr"], wan["mask"]))
    except Bad as e:
        problems.add(str(e), "using the default lan and wan")
        lan, wan = d["lan"], d["wan"]
        mode = wan["mode"]
        la, lm, wa, wm, gw = (nat.ip(lan["addr"]), nat.ip(lan["mask"]), nat.ip(wan["addr"]),
                              nat.ip(wan["mask"]), nat.ip(wan["gateway"]))
    cfg["lan"] = {"addr": lan["addr"], "mask": lan["mask"], "addr_int": la, "mask_int": lm}
    cfg["wan"] = {"addr": wan["addr"], "mask": wan["mask"], "gateway": wan["gateway"],
                  "mode": mode, "addr_int": wa, "mask_int": wm, "gateway_int": gw}



def _ports(sec, default, problems):
    try:
        if not isinstance(sec, dict) or set(sec) != set(default):
            raise Bad("ports: must be an object with first and last")
        for k in ("first", "last"):
            if not is_int(sec[k]) or not 1024 <= sec[k] <= 65535:
                raise Bad("ports.%s: %r must be an integer 1024..65535 (ports below 1024 "
                           "always map into 1..1023)" % (k, sec[k]))
        if sec["first"] > sec["last"]:
            raise Bad("ports: first %d is above last %d" % (sec["first"], sec["last"]))
        return {"first": sec["first"], "last": sec["last"]}
    except Bad as e:
        problems.add(str(e), "using %d..%d" % (default["first"], default["last"]))
        return dict(default)


def _table(sec, default, problems):
    return int_section("table", sec, default, dict.fromkeys(default, (1, TABLE_MAX)), problems)


_MTU = (576, 9000)  # RFC 791: every host takes 576; jumbo frames at most


def _mtu(v, default, problems):
    if is_int(v) and _MTU[0] <= v <= _MTU[1]:
        return v
    problems.add("mtu: %r must be an integer %d..%d" % ((v,) + _MTU), "using %d" % default)
    return default


_FILTERING = ("endpoint", "address", "address_port")
# RFC 4787 REQ-5 (UDP >= 2 min), RFC 5382 REQ-5 (TCP established >= 2 h 4 min,
# transitory >= 4 min), RFC 5508 REQ-2 (ICMP >= 60 s); the 16-bit flow clock caps them.
_TIMEOUT_RANGE = {"udp": (120, 20000), "tcp_established": (7440, 20000),
                  "tcp_transitory": (240, 20000), "icmp": (60, 20000)}


def _nat(sec, d, problems):
    out = {"filtering": d["filtering"], "share": d["share"], "timeouts": dict(d["timeouts"])}
    if not isinstance(sec, dict):
        problems.add("nat: must be an object with filtering, share, timeouts", "using defaults")
        return out
    for k in sec:
        if k not in out:
            problems.add("nat.%s: unknown key" % k, "ignored")
    v = sec.get("filtering", d["filtering"])
    if v in _FILTERING:
        out["filtering"] = v
    else:
        problems.add("nat.filtering: %r must be one of %s" % (v, ", ".join(_FILTERING)),
                     "using %s" % d["filtering"])
    v = sec.get("share", d["share"])
    if is_int(v) and 1 <= v <= 100:
        out["share"] = v
    else:
        problems.add("nat.share: %r must be a percentage 1..100" % (v,), "using %d" % d["share"])
    t = sec.get("timeouts", d["timeouts"])
    if not isinstance(t, dict):
        problems.add("nat.timeouts: must be an object with %s" % ", ".join(_TIMEOUT_RANGE),
                     "using defaults")
        return out
    for k in t:
        if k not in _TIMEOUT_RANGE:
            problems.add("nat.timeouts.%s: unknown key" % k, "ignored")
    for k, (lo, hi) in _TIMEOUT_RANGE.items():
        v = t.get(k, d["timeouts"][k])
        if is_int(v) and lo <= v <= hi:
            out["timeouts"][k] = v
        else:
            problems.add("nat.timeouts.%s: %r must be %d..%d seconds (the RFCs' minimum "
                         "first)" % (k, v, lo, hi), "using %d" % d["timeouts"][k])
    return out


def _flag(raw, key, d, problems):
    v = raw.get(key, d[key])
    if v is True or v is False:
        return v
    problems.add("%s: %r must be true or false" % (key, v), "using %s" % json.dumps(d[key]))
    return d[key]


def _forwards(raw, lan, problems):
    if not isinstance(raw, list):
        problems.add("forwards: must be a list", "no port forwards")
        return []
    out = []
    seen = []
    lm = lan["mask_int"]
    for i, f in enumerate(raw):
        where = "forwards[%d]" % i
        try:
            if not isinstance(f, dict):
                raise Bad("%s: must be an object with proto, port, to, to_port" % where)
            for k in f:
                if k not in ("proto", "port", "to", "to_port"):
                    raise Bad("%s.%s: unknown key" % (where, k))
            for k in ("proto", "port", "to"):
                if k not in f:
                    raise Bad("%s.%s: missing" % (where, k))
            proto = f["proto"]
            try:
                number = nat.proto_number(proto, ("tcp", "udp"))
            except ValueError as e:
                raise Bad("%s.%s" % (where, e))
            to_port = f.get("to_port", f["port"])
            for k, v in (("port", f["port"]), ("to_port", to_port)):
                if not is_int(v) or not 1 <= v <= 65535:
                    raise Bad("%s.%s: %r must be an integer 1..65535" % (where, k, v))
            try:
                to = nat.ip(f["to"])
            except ValueError:
                raise Bad("%s.to: %r is not an IPv4 address" % (where, f["to"]))
            host = to & (lm ^ 0xFFFFFFFF)
            if (to & lm != lan["addr_int"] & lm or host == 0 or host == lm ^ 0xFFFFFFFF
                    or to == lan["addr_int"]):
                raise Bad("%s.to: %s is not a host on the LAN %s/%s"
                           % (where, f["to"], lan["addr"], lan["mask"]))
            if (proto, f["port"]) in seen:
                raise Bad("%s: %s port %d is already forwarded" % (where, proto, f["port"]))
        except Bad as e:
            problems.add(str(e), "forward left out")
            continue
        seen.append((proto, f["port"]))
        out.append({"proto": proto, "port": f["port"], "to": f["to"], "to_port": to_port,
                    "proto_num": number, "to_int": to})
    return out
