"""config.load/validate/save: every bad key is named and replaced by a safe value; a
missing, garbage or half-written file boots with the defaults; save() is atomic."""
import copy
import json
import os

import pytest

from manage import config
import nat
from runtimes import run_unix

GOOD = {
    "lan": {"addr": "10.1.0.1", "mask": "255.255.0.0"},
    "wan": {"addr": "100.64.7.20", "mask": "255.255.255.248", "gateway": "100.64.7.17",
            "mode": "static"},
    "forwards": [{"proto": "tcp", "port": 8080, "to": "10.1.0.2", "to_port": 80},
                 {"proto": "udp", "port": 8080, "to": "10.1.2.3", "to_port": 53}],
    "ports": {"first": 20000, "last": 30000},
    "table": {"tcp": 1024, "udp": 100, "icmp": 8},
    "mtu": 1400,
    "allow_source_route": False,
    "nat": {"filtering": "endpoint", "share": 30,
            "timeouts": {"udp": 600, "tcp_established": 8000, "tcp_transitory": 300, "icmp": 90}},
    "dns": ["192.0.2.53", "9.9.9.9"],
    "firewall": {"default": "allow", "blocked": ["10.1.0.9"],
                 "rules": [{"dir": "out", "proto": "tcp", "lan": "10.1.0.0/24", "remote": "any",
                            "port": [8000, 8100], "action": "reject"},
                           {"dir": "in", "proto": "udp", "lan": "any",
                            "remote": "192.0.2.0/24", "port": 8080, "action": "allow"}]},
    "capture": {"size": 65536, "snap": 256, "port": 0},
    "dhcp": {"enabled": True, "first": "10.1.0.50", "last": "10.1.0.60", "lease_s": 7200,
             "capacity": 16, "static": [{"mac": "02:00:00:00:00:07", "addr": "10.1.0.7"}]},
    "wifi": {"ap_ssid": "natrouter-7", "ap_key": "correct horse", "ap_channel": 11,
             "ap_clients": 8, "sta_ssid": "upstream", "sta_key": "f" * 64},
    "web": {"enabled": True, "port": 8080},
    "admin": {"password": ""},
    "mqtt": {"enabled": True, "host": "192.0.2.10", "port": 1883, "user": "", "password": "",
             "topic": "natrouter", "interval_s": 60, "discovery": "homeassistant"},
}


def with_change(path, value):
    """GOOD with the key at dotted `path` set to value (or removed for DELETE)."""
    cfg = copy.deepcopy(GOOD)
    keys = path.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = int(keys[-1]) if isinstance(node, list) else keys[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


DELETE = object()


def test_good_config_kept_with_ints():
    cfg, problems = config.validate(copy.deepcopy(GOOD))
    assert problems == []
    assert config.to_file(cfg) == GOOD
    assert cfg["lan"]["addr_int"] == nat.ip("10.1.0.1")
    assert cfg["lan"]["mask_int"] == 0xFFFF0000
    assert cfg["wan"]["gateway_int"] == nat.ip("100.64.7.17")
    assert [(f["proto_num"], f["to_int"]) for f in cfg["forwards"]] == [
        (6, nat.ip("10.1.0.2")), (17, nat.ip("10.1.2.3"))]


def test_defaults_are_valid_and_complete():
    cfg, problems = config.validate({})
    assert problems == []
    assert config.to_file(cfg) == config.defaults()


def test_to_port_defaults_to_port():
    cfg, problems = config.validate(with_change("forwards.0.to_port", DELETE))
    assert problems == [] and cfg["forwards"][0]["to_port"] == 8080


NET_FALLBACK = "using the default lan and wan"


@pytest.mark.parametrize("path,value,named", [
    ("lan.addr", "10.1.0.256", "lan.addr"),
    ("lan.addr", "10.1.0.0", "lan.addr"),           # the network address
    ("lan.addr", "127.0.0.1", "lan.addr"),
    ("lan.addr", 167837697, "lan.addr"),            # an int, not a string
    ("lan.mask", "255.0.255.0", "lan.mask"),        # not contiguous
    ("lan.mask", "255.255.255.255", "lan.mask"),
    ("lan.mask", DELETE, "lan.mask"),
    ("lan.extra", 1, "lan.extra"),
    ("wan.addr", "1.2.3", "wan.addr"),
    ("wan.addr", "100.64.7.23", "wan.addr"),        # the subnet's broadcast address
    ("wan.mask", "0.0.0.0", "wan.mask"),
    ("wan.gateway", "100.64.8.1", "wan.gateway"),   # off the WAN subnet
    ("wan.gateway", "100.64.7.20", "wan.gateway"),  # the WAN address itself
    ("wan.gateway", DELETE, "wan.gateway"),
    ("wan", "dhcp", "wan"),
    ("wan", {"addr": "10.1.200.1", "mask": "255.255.255.0", "gateway": "10.1.200.254"},
     "overlap"),                                    # WAN inside the LAN subnet
    ("lan.mask", "128.0.0.0", "overlap"),           # LAN subnet covering the WAN
])
def test_bad_network_falls_back_to_default_lan_and_wan(path, value, named):
    cfg, problems = config.validate(with_change(path, value))
    assert len(problems) >= 1
    msg = problems[0]
    assert named in msg and NET_FALLBACK in msg
    d = config.defaults()
    assert (cfg["lan"]["addr"], cfg["wan"]["addr"]) == (d["lan"]["addr"], d["wan"]["addr"])
    # The rest is kept; the forwards are judged against the default LAN now.
    assert cfg["mtu"] == 1400 and cfg["table"] == GOOD["table"]


@pytest.mark.parametrize("path,value,named", [
    ("forwards.0.proto", "icmp", "forwards[0].proto"),
    ("forwards.0.port", 0, "forwards[0].port"),
    ("forwards.0.port", 65536, "forwards[0].port"),
    ("forwards.0.port", "80", "forwards[0].port"),
    ("forwards.0.to_port", 70000, "forwards[0].to_port"),
    ("forwards.0.to", "192.168.9.9", "forwards[0].to"),    # outside the LAN
    ("forwards.0.to", "10.1.0.1", "forwards[0].to"),       # the router itself
    ("forwards.0.to", "10.1.255.255", "forwards[0].to"),   # the LAN broadcast
    ("forwards.0.to", "nope", "forwards[0].to"),
    ("forwards.0.to", DELETE, "forwards[0].to"),
    ("forwards.0.color", "red", "forwards[0].color"),
    ("forwards.0", "8080", "forwards[0]"),
    ("forwards.1.proto", "tcp", "forwards[1]"),            # duplicate tcp 8080
])
def test_bad_forward_left_out(path, value, named):
    cfg, problems = config.validate(with_change(path, value))
    assert len(problems) == 1 and named in problems[0] and "left out" in problems[0]
    assert len(cfg["forwards"]) == 1
    assert cfg["lan"]["addr"] == "10.1.0.1"  # nothing else touched


@pytest.mark.parametrize("path,value,named,default", [
    ("ports.first", 80, "ports.first", {"first": 1024, "last": 65535}),
    ("ports.last", 65536, "ports.last", {"first": 1024, "last": 65535}),
    ("ports.first", 40000, "ports", {"first": 1024, "last": 65535}),  # above last
    ("ports", [1024, 2048], "ports", {"first": 1024, "last": 65535}),
    ("table.tcp", 0, "table.tcp", {"tcp": 512, "udp": 100, "icmp": 8}),
    ("table.udp", 8193, "table.udp", {"tcp": 1024, "udp": 256, "icmp": 8}),
    ("table.icmp", True, "table.icmp", {"tcp": 1024, "udp": 100, "icmp": 64}),
    ("mtu", 575, "mtu", 1500),
    ("mtu", 9001, "mtu", 1500),
    ("mtu", 1500.0, "mtu", 1500),
    ("forwards", {"proto": "tcp"}, "forwards", []),
])
def test_bad_key_takes_its_default(path, value, named, default):
    cfg, problems = config.validate(with_change(path, value))
    assert len(problems) == 1 and problems[0].startswith(named), problems
    assert cfg[path.split(".")[0]] == default
    assert cfg["lan"]["addr"] == "10.1.0.1"


def test_wan_mode_is_optional_and_defaults_to_the_defaults_mode():
    raw = with_change("wan.mode", DELETE)
    cfg, problems = config.validate(raw)
    assert problems == [] and cfg["wan"]["mode"] == "static"
    cfg, problems = config.validate(with_change("wan.mode", "dhcp"))
    assert problems == [] and cfg["wan"]["mode"] == "dhcp"
    assert config.to_file(cfg)["wan"]["mode"] == "dhcp"


def test_bad_wan_mode_falls_back_with_the_network():
    cfg, problems = config.validate(with_change("wan.mode", "pppoe"))
    assert problems[0].startswith("wan.mode: 'pppoe'")  # then the forwards off the LAN...
    assert NET_FALLBACK in problems[0] and cfg["wan"]["mode"] == "static"
    with pytest.raises(ValueError, match=r"wan\.mode"):
        config.validate(with_change("wan.mode", 1), strict=True)


@pytest.mark.parametrize("key,value", [
    ("ap_ssid", ""), ("ap_ssid", "x" * 33), ("ap_ssid", "é" * 17), ("ap_ssid", 5),
    ("sta_ssid", "x" * 33), ("sta_ssid", None),
    ("ap_key", "short"), ("ap_key", "x" * 65), ("ap_key", "g" * 64), ("ap_key", "tab\there1"),
    ("sta_key", 12345678),
    ("ap_channel", 0), ("ap_channel", 14), ("ap_channel", True), ("ap_clients", 11),
    ("ap_clients", 0), ("bogus", 1),
])
def test_bad_wifi_key_takes_its_default(key, value):
    cfg, problems = config.validate(with_change("wifi." + key, value))
    assert len(problems) == 1 and problems[0].startswith("wifi.%s: " % key), problems
    want = dict(GOOD["wifi"])
    if key in want:
        want[key] = config.defaults()["wifi"][key]
    assert cfg["wifi"] == want
    if key.endswith("_key"):  # a password is never echoed
        assert repr(value) not in problems[0]
    with pytest.raises(ValueError, match="wifi.%s" % key):
        config.validate(with_change("wifi." + key, value), strict=True)


@pytest.mark.parametrize("key,value", [
    ("ap_key", ""), ("ap_key", "12345678"), ("ap_key", "~" * 63), ("sta_key", "0aF" * 21 + "b"),
    ("sta_ssid", ""), ("ap_ssid", "é" * 16), ("ap_channel", 13), ("ap_clients", 10),
])
def test_good_wifi_values_kept(key, value):
    cfg, problems = config.validate(with_change("wifi." + key, value))
    assert problems == [] and cfg["wifi"][key] == value


def test_board_rules_change_defaults_and_check(monkeypatch):
    seen = []

    def check(cfg, problems):
        seen.append(cfg["table"]["tcp"])
        if cfg["mtu"] > 1400:
            problems.add("mtu: %d is more than this board carries" % cfg["mtu"], "using 1400")
            cfg["mtu"] = 1400

    monkeypatch.setattr(config, "_board", {"defaults": {}, "check": None})
    config.board_rules({"table": {"tcp": 100}, "wan": {"mode": "dhcp"},
                        "lan": {"addr": "10.9.0.1"}}, check)
    d = config.defaults()
    assert d["table"] == {"tcp": 100, "udp": 256, "icmp": 64} and d["wan"]["mode"] == "dhcp"
    assert d["dhcp"]["first"] == "10.9.0.100"  # the pool follows the board's LAN
    cfg, problems = config.validate({})
    assert problems == ["mtu: 1500 is more than this board carries; using 1400"]
    assert cfg["mtu"] == 1400 and cfg["table"]["tcp"] == 100 and seen == [100]
    with pytest.raises(ValueError, match=r"^mtu: 1500 is more"):
        config.validate({}, strict=True)
    assert config.validate(with_change("wan.mode", DELETE))[0]["wan"]["mode"] == "dhcp"


def test_unknown_top_level_key_reported():
    raw = dict(copy.deepcopy(GOOD), forward=[])
    cfg, problems = config.validate(raw)
    assert problems == ["unknown key 'forward'; ignored"]
    assert config.to_file(cfg) == GOOD


def test_not_an_object():
    cfg, problems = config.validate([1, 2])
    assert "JSON object" in problems[0]
    assert config.to_file(cfg) == config.defaults()


# ---- files

def defaults_loaded(cfg):
    return config.to_file(cfg) == config.defaults() and cfg["lan"]["addr_int"] == nat.ip(
        "192.168.4.1")


def test_missing_file(tmp_path):
    path = str(tmp_path / "natrouter.json")
    cfg, problems = config.load(path)
    assert defaults_loaded(cfg)
    assert len(problems) == 1 and path in problems[0] and "using defaults" in problems[0]


@pytest.mark.parametrize("content", [
    b"garbage{{{",
    json.dumps(GOOD).encode()[:57],   # half-written
    b"",                              # created, never written
    b"\xff\xfe\x00junk",              # not text
    b"null",
])
def test_bad_file_boots_with_defaults(tmp_path, content):
    path = tmp_path / "natrouter.json"
    path.write_bytes(content)
    cfg, problems = config.load(str(path))
    assert defaults_loaded(cfg)
    assert len(problems) == 1 and str(path) in problems[0]


def test_problems_name_the_file(tmp_path):
    path = tmp_path / "natrouter.json"
    path.write_text(json.dumps(with_change("mtu", 1)))
    _cfg, problems = config.load(str(path))
    assert problems == ["%s: mtu: 1 must be an integer 576..9000; using 1500" % path]


def test_save_then_load_round_trips(tmp_path):
    path = str(tmp_path / "natrouter.json")
    cfg, _ = config.validate(copy.deepcopy(GOOD))
    config.save(path, cfg)
    again, problems = config.load(path)
    assert problems == [] and again == cfg
    assert os.listdir(str(tmp_path)) == ["natrouter.json"]  # no temporary left behind


def test_save_is_atomic(tmp_path, monkeypatch):
    """A crash before the rename leaves the old file whole (and at most a stray temp)."""
    path = str(tmp_path / "natrouter.json")
    old, _ = config.validate(copy.deepcopy(GOOD))
    config.save(path, old)
    new = dict(old, mtu=9000)

    def crash(src, dst):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        config.save(path, new)
    monkeypatch.undo()
    loaded, problems = config.load(path)
    assert problems == [] and loaded == old
    # The next save still works over the stray temporary file.
    config.save(path, new)
    assert config.load(path)[0]["mtu"] == 9000


def test_save_replaces_where_rename_does_not(tmp_path, monkeypatch):
    path = str(tmp_path / "natrouter.json")
    config.save(path, config.validate({})[0])
    real_rename = os.rename

    def no_replace(src, dst):
        if os.path.exists(dst):
            raise OSError(17, "EEXIST")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", no_replace)
    config.save(path, config.validate(copy.deepcopy(GOOD))[0])
    monkeypatch.undo()
    assert config.to_file(config.load(path)[0]) == GOOD


# ---- the same on MicroPython

def test_micropython_agrees(tmp_path):
    """load/validate/save on the unix port give what CPython gives."""
    cases = {"good": json.dumps(GOOD), "bad": json.dumps(with_change("wan.gateway", "1.1.1.1")),
             "forward": json.dumps(with_change("forwards.1.port", 8080 * 10)),
             "half": json.dumps(GOOD)[:40]}
    for name, text in cases.items():
        (tmp_path / (name + ".json")).write_text(text)
    code = (
        "from manage import config\nimport json\n"
        "for name in %r:\n"
        "    cfg, problems = config.load(%r + '/' + name + '.json')\n"
        "    print(json.dumps([name, cfg, problems]))\n"
        "cfg = config.load(%r + '/good.json')[0]\n"
        "config.save(%r + '/saved.json', cfg)\n"
        "print(json.dumps(['saved', config.load(%r + '/saved.json')[0], []]))\n"
    ) % (sorted(cases), str(tmp_path), str(tmp_path), str(tmp_path), str(tmp_path))
    out = run_unix(code)
    got = {}
    for line in out.splitlines():
        name, cfg, problems = json.loads(line)
        got[name] = (cfg, problems)
    for name in cases:
        want = config.load(str(tmp_path / (name + ".json")))
        assert got[name][0] == want[0], name
        assert len(got[name][1]) == len(want[1]), name
        if name != "half":  # the error text of a failed read differs between runtimes
            assert got[name][1] == want[1], name
    assert got["saved"][0] == got["good"][0]


# ---- the NAT's behaviour and each link's MTU

NAT_DEFAULT = config.defaults()["nat"]


@pytest.mark.parametrize("path,value,named", [
    ("nat.filtering", "full-cone", "nat.filtering: 'full-cone' must be one of endpoint, address"),
    ("nat.share", 0, "nat.share: 0 must be a percentage"),
    ("nat.share", 101, "nat.share"),
    ("nat.timeouts.udp", 119, "nat.timeouts.udp: 119 must be 120..20000 seconds"),
    ("nat.timeouts.tcp_established", 7439, "nat.timeouts.tcp_established"),
    ("nat.timeouts.tcp_transitory", 239, "nat.timeouts.tcp_transitory"),
    ("nat.timeouts.icmp", 59, "nat.timeouts.icmp"),
    ("nat.timeouts.udp", 20001, "nat.timeouts.udp"),
    ("nat.timeouts.sctp", 5, "nat.timeouts.sctp: unknown key"),
    ("nat.colour", 5, "nat.colour: unknown key"),
    ("nat", "fast", "nat: must be an object"),
    ("nat.timeouts", [], "nat.timeouts: must be an object"),
])
def test_bad_nat_settings_named_and_replaced(path, value, named):
    _cfg, problems = config.validate(with_change(path, value))
    assert len(problems) == 1 and problems[0].startswith(named), problems
    with pytest.raises(ValueError, match=named.split(":")[0].replace(".", r"\.")):
        config.validate(with_change(path, value), strict=True)


def test_good_nat_settings_kept():
    cfg, problems = config.validate(copy.deepcopy(GOOD))
    assert problems == [] and cfg["nat"] == GOOD["nat"]
    assert config.validate({})[0]["nat"] == NAT_DEFAULT


def test_each_link_has_its_own_mtu():
    raw = copy.deepcopy(GOOD)
    raw["wan"]["mtu"] = 1280
    cfg, problems = config.validate(raw)
    assert problems == [] and (cfg["lan"]["mtu"], cfg["wan"]["mtu"]) == (1400, 1280)
    assert config.to_file(cfg)["wan"]["mtu"] == 1280 and "mtu" not in config.to_file(cfg)["lan"]
    raw["wan"]["mtu"] = 400
    cfg, problems = config.validate(raw)
    assert problems == ["wan.mtu: 400 must be an integer 576..9000; using 1400"]
    assert cfg["wan"]["addr"] == GOOD["wan"]["addr"] and cfg["wan"]["mtu"] == 1400
