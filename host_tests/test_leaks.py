"""Nothing reaches the LAN that should not (issue 7), rule by rule, at the router: a
hostile WAN and a sloppy LAN, scapy building the packets, the router on MemoryLinks
(test_router.Net). The engine's own rules are also checked in test_contract.py and
replayed on every runtime (vectors.py); the viper datapath is compared with its twin
on the unix port below; the virtual board's floods are in test_vboard_e2e.py."""
import copy
import json
import os

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_LSRR, IPOption_SSRR
from scapy.layers.inet import IPOption_RR, IPOption_Router_Alert
from scapy.packet import raw

from manage import config, store
from runtimes import run_unix, unix_binary
from test_router import CLIENT, HOST1, HOST2, LAN_ADDR, SERVER, WAN_ADDR, Net, changed

OTHER = "203.0.113.77"


@pytest.fixture
def net():
    return Net()


def out_and_back(net, proto="udp", sport=40000):
    """Open a flow HOST1 -> SERVER; returns the translated packet as it left."""
    l4 = {"udp": UDP(sport=sport, dport=53), "tcp": TCP(sport=sport, dport=80, flags="S"),
          "icmp": ICMP(type=8, id=sport)}[proto]
    _, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER) / l4 / b"q")
    assert len(wan_out) == 1
    return wan_out[0]


# ---- 1. ICMP errors go back to the source of what they quote

@pytest.mark.parametrize("dst", ["10.1.2.3", "198.51.100.255", HOST1, "255.255.255.255"])
def test_wan_icmp_error_to_anyone_but_the_quoted_source_is_dropped(net, dst):
    sent = out_and_back(net)
    err = IP(src=SERVER, dst=dst) / ICMP(type=3, code=3) / raw(sent)[:28]
    before = net.counters()
    assert net.from_wan(err) == ([], [])
    delta = changed(before, net.counters())
    assert delta.pop("rx_wan") == 1 and len(delta) == 1, delta
    # 255.255.255.255 is refused before the engine looks (it is not on the LAN either).
    assert next(iter(delta)) in ("dropped_icmp_error",), delta


def test_wan_icmp_error_to_the_quoted_source_still_arrives(net):
    sent = out_and_back(net)
    err = IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / raw(sent)[:28]
    lan_out, _ = net.from_wan(err)
    assert len(lan_out) == 1 and lan_out[0].dst == HOST1


def test_lan_icmp_error_not_to_the_quoted_source_is_dropped(net):
    out_and_back(net)
    got = IP(src=SERVER, dst=HOST1, ttl=60) / UDP(sport=53, dport=40000) / b"answer"
    for dst in (OTHER, SERVER):
        err = IP(src=HOST1, dst=dst) / ICMP(type=3, code=3) / raw(got)[:28]
        lan_out, wan_out = net.from_lan(err)
        if dst == SERVER:  # the quoted packet's source: translated and sent on
            assert len(wan_out) == 1 and wan_out[0].src == WAN_ADDR
        else:
            assert (lan_out, wan_out) == ([], [])
    assert net.counters()["dropped_icmp_error"] == 1


# ---- 2. Echo requests do not ride an outbound ping's flow

@pytest.mark.parametrize("request_type", [8, 13, 15, 17])
def test_outside_request_with_an_inside_hosts_id_is_not_let_in(net, request_type):
    sent = out_and_back(net, "icmp", sport=0x4242)
    xid = sent[ICMP].id
    before = net.counters()
    lan_out, wan_out = net.from_wan(IP(src=OTHER, dst=WAN_ADDR) / ICMP(type=request_type, id=xid))
    assert lan_out == []
    if request_type == 8:  # the router's own to answer
        assert len(wan_out) == 1 and wan_out[0][ICMP].type == 0 and wan_out[0].src == WAN_ADDR
        assert changed(before, net.counters()) == {"rx_wan": 1, "echo_replies": 1}
    else:
        assert wan_out == []
        assert changed(before, net.counters()) == {"rx_wan": 1, "dropped_to_router": 1}
    # The real reply still comes in.
    lan_out, _ = net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=0, id=xid))
    assert len(lan_out) == 1 and lan_out[0][ICMP].id == 0x4242


def test_inside_reply_neither_rides_a_flow_nor_opens_one(net):
    out_and_back(net, "icmp", sport=0x4242)
    before = net.counters()
    assert net.from_lan(IP(src=HOST1, dst=SERVER) / ICMP(type=0, id=0x4242)) == ([], [])
    assert net.from_lan(IP(src=HOST1, dst=OTHER) / ICMP(type=0, id=0x4343)) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 2, "dropped_cannot_nat": 2}
    assert net.counters()["flows_icmp"] == 1


# ---- 3. and 4. Martian sources

WAN_MARTIANS = ["198.51.100.0", "198.51.100.255", WAN_ADDR, "0.1.2.3", "127.0.0.1",
                "224.0.0.5", "239.1.1.1", "240.0.0.1", "255.255.255.255", "169.254.9.9"]


@pytest.mark.parametrize("src", WAN_MARTIANS)
def test_wan_martian_sources_dropped_even_to_forwarded_ports(net, src):
    before = net.counters()
    for pkt in (IP(src=src, dst=WAN_ADDR) / TCP(sport=5555, dport=8080, flags="S"),
                IP(src=src, dst=WAN_ADDR) / UDP(sport=5556, dport=6000),
                IP(src=src, dst=WAN_ADDR) / ICMP(type=8)):
        assert net.from_wan(pkt) == ([], [])
    assert changed(before, net.counters()) == {"rx_wan": 3, "dropped_martian": 3}
    assert net.counters()["flows_tcp"] == net.counters()["flows_udp"] == 0


@pytest.mark.parametrize("src", ["192.168.4.0", "192.168.4.255", LAN_ADDR])
def test_lan_martian_sources_dropped(net, src):
    before = net.counters()
    assert net.from_lan(IP(src=src, dst=SERVER) / UDP(sport=1000, dport=53)) == ([], [])
    assert net.from_lan(IP(src=src, dst=SERVER) / TCP(sport=1000, dport=80, flags="S")) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 2, "dropped_martian": 2}


# ---- 5. UDP with a bad length field

def _udp_len(src, dst, sport, dport, ulen, payload=b"0123456789"):
    return raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport, len=ulen) / payload)


@pytest.mark.parametrize("ulen", [0, 7, 19, 1000])
def test_udp_bad_length_dropped_both_ways(net, ulen):
    out_and_back(net)  # a live flow the bad packets would match
    before = net.counters()
    assert net.from_lan(_udp_len(HOST1, SERVER, 40000, 53, ulen)) == ([], [])
    assert net.from_wan(_udp_len(SERVER, WAN_ADDR, 53, 40000, ulen)) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 1, "rx_wan": 1, "dropped_malformed": 2}


def test_udp_length_exactly_right_passes(net):
    out_and_back(net)
    lan_out, _ = net.from_wan(_udp_len(SERVER, WAN_ADDR, 53, 40000, 18))
    assert len(lan_out) == 1


# ---- 6. Port 0

@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("sport,dport", [(0, 80), (40000, 0)])
def test_port_zero_dropped_both_ways_and_opens_nothing(net, proto, sport, dport):
    l4 = TCP if proto == "tcp" else UDP
    before = net.counters()
    assert net.from_lan(IP(src=HOST1, dst=SERVER) / l4(sport=sport, dport=dport)) == ([], [])
    assert net.from_wan(IP(src=CLIENT, dst=WAN_ADDR) / l4(sport=sport, dport=dport)) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 1, "rx_wan": 1, "dropped_port_zero": 2}
    assert net.counters()["flows_added"] == 0


# ---- 7. Source routing

SOURCE_ROUTES = [IPOption_LSRR(routers=["198.51.100.9"]), IPOption_SSRR(routers=["198.51.100.9"])]


@pytest.mark.parametrize("option", SOURCE_ROUTES, ids=["lsrr", "ssrr"])
def test_source_routed_packets_dropped_both_ways(net, option):
    out_and_back(net)
    before = net.counters()
    assert net.from_lan(IP(src=HOST1, dst=SERVER, options=[option]) / UDP(sport=40000, dport=53)) \
        == ([], [])
    assert net.from_wan(IP(src=SERVER, dst=WAN_ADDR, options=[option]) / UDP(sport=53, dport=40000)) \
        == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 1, "rx_wan": 1, "dropped_source_route": 2}


@pytest.mark.parametrize("option", [IPOption_RR(routers=["0.0.0.0"] * 2), IPOption_Router_Alert()],
                         ids=["record-route", "router-alert"])
def test_other_options_pass(net, option):
    out_and_back(net)
    lan_out, _ = net.from_wan(IP(src=SERVER, dst=WAN_ADDR, options=[option])
                              / UDP(sport=53, dport=40000) / b"a")
    assert len(lan_out) == 1


def test_source_routing_can_be_allowed():
    raw_cfg = config.defaults()
    raw_cfg["allow_source_route"] = True
    cfg, problems = config.validate(raw_cfg)
    assert problems == []
    n = Net()
    n.r = type(n.r)(cfg, n.lan, n.wan, ms=lambda: n.ms, clock=lambda: 0)
    _, wan_out = n.from_lan(IP(src=HOST1, dst=SERVER, options=[SOURCE_ROUTES[0]])
                            / UDP(sport=40000, dport=53))
    assert len(wan_out) == 1


# ---- 8. config.save writes only what load takes whole

def _good():
    cfg = config.defaults()
    cfg["forwards"] = [{"proto": "tcp", "port": 8080, "to": HOST1, "to_port": 80}]
    return cfg


@pytest.mark.parametrize("change,named", [
    (lambda c: c["forwards"][0].update(port=70000), "forwards[0].port"),
    (lambda c: c["forwards"][0].pop("port"), "forwards[0].port"),
    (lambda c: c["forwards"].append({"proto": "tcp", "port": 8080, "to": HOST2}), "forwards[1]"),
    (lambda c: c["lan"].update(addr="1.2.3"), "lan.addr"),
    (lambda c: c.update(mtu="big"), "mtu"),
    (lambda c: c["table"].update(tcp=0), "table.tcp"),
    (lambda c: c.update(forwards="none"), "forwards"),
    (lambda c: c.update(extra=1), "extra"),
], ids=["port-70000", "no-port", "overlapping", "bad-addr", "mtu", "table", "not-a-list", "extra"])
def test_save_refuses_what_load_would_not_take(tmp_path, change, named):
    path = str(tmp_path / "natrouter.json")
    config.save(path, _good())
    before = open(path).read()
    bad = copy.deepcopy(_good())
    change(bad)
    with pytest.raises(ValueError) as e:
        config.save(path, bad)
    msg = str(e.value)
    assert named in msg and "\n" not in msg and ";" not in msg, msg
    assert open(path).read() == before
    assert os.listdir(str(tmp_path)) == ["natrouter.json"]


def test_save_refuses_a_non_dict(tmp_path):
    with pytest.raises(ValueError, match="must be a dict"):
        config.save(str(tmp_path / "x.json"), ["not", "a", "dict"])
    assert os.listdir(str(tmp_path)) == []


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = str(tmp_path / "natrouter.json")
    config.save(path, _good())

    def full(*a):
        raise OSError(28, "ENOSPC")

    monkeypatch.setattr(os, "sync", full, raising=False)
    monkeypatch.setattr(os, "rename", full)
    monkeypatch.setattr(os, "remove", os.unlink)
    with pytest.raises(OSError):
        config.save(path, dict(_good(), mtu=1400))
    monkeypatch.undo()
    assert os.listdir(str(tmp_path)) == ["natrouter.json"]
    assert json.load(open(path))["mtu"] == 1500


def test_save_accepts_what_load_returned(tmp_path):
    path = str(tmp_path / "natrouter.json")
    cfg, _ = config.validate(_good())  # with the derived *_int keys
    config.save(path, cfg)
    assert config.load(path) == (cfg, [])


def test_a_temporary_file_alone_is_recovered(tmp_path):
    # Power lost between the remove and the rename of a non-replacing filesystem.
    path = str(tmp_path / "natrouter.json")
    config.save(path, _good())
    os.rename(path, path + ".tmp")
    cfg, problems = config.load(path)
    assert problems == ["%s: missing; recovered %s.tmp" % (path, path)]
    assert cfg["forwards"][0]["port"] == 8080


# ---- the datapath's viper twin agrees with its pure-Python twin (unix port)

DATAPATH_TWINS = r"""
import random, nat, pktlib
from array import array
from nat import core
from forward import datapath
from manage import config, store
random.seed(11)
assert datapath.drain is not datapath.drain_py, "the viper datapath is not in use"
cfg, _ = config.validate(config.defaults())
pol = datapath.policy(cfg, (1500, 1400))
hosts = ("192.168.4.2", "192.168.4.0", "192.168.4.255", "192.168.4.1", "198.51.100.2",
         "198.51.100.0", "198.51.100.255", "10.9.9.9", "0.0.0.1", "127.0.0.1", "224.0.0.1",
         "240.1.1.1", "255.255.255.255", "169.254.1.1", "203.0.113.5")


class Io:
    # One packet to receive; what was sent and what the slow path was handed.
    def __init__(self, pkt):
        self.pkt, self.sent, self.slow = pkt, [], []

    def recv(self, buf):
        p, self.pkt = self.pkt, None
        if p is None:
            return 0
        buf[0:len(p)] = p
        return len(p)

    def send(self, buf, n):
        self.sent.append(bytes(buf[0:n]))

    def slowpath(self, verdict, status):
        self.slow.append((verdict, status))


def table():
    # Flows both ways: LAN .2:1000 -> .5:53 (UDP) and :1000 -> :53 (TCP) leave as the WAN's.
    t = nat.Table(tcp=8, udp=8, icmp=8)
    p = nat.Packet()
    for b in (pktlib.udp("192.168.4.2", "203.0.113.5", 1000, 53),
              pktlib.tcp("192.168.4.2", "203.0.113.5", 1000, 53, flags=0x02)):
        assert p.parse(bytearray(b)) == nat.OK
        assert t.add(p, nat.ip("198.51.100.2"), lambda: 1000) == nat.OK
    return t


twins = []
for drain in (datapath.drain, datapath.drain_py):
    f = array("H", bytes(2 * nat.consts.F_WORDS))
    f[nat.consts.F_CAP] = 1600  # the buffer's length, as Packet.bind notes it
    twins.append((drain, table(), f, array("I", bytes(4 * 40)), bytearray(1600)))
seen = {}
for i in range(4000):
    src, dst = random.choice(hosts), random.choice(hosts)
    kind = random.randrange(6)
    sport, dport = random.choice((0, 67, 1000)), random.choice((0, 67, 53, 1000))
    if kind == 4:  # a packet of one of the flows, either way
        make = random.choice((pktlib.udp, pktlib.tcp))
        b = random.choice((make("192.168.4.2", "203.0.113.5", 1000, 53),
                           make("203.0.113.5", "198.51.100.2", 53, 1000)))
    elif kind == 5:  # a first fragment
        b = bytearray(pktlib.udp(src, dst, sport, dport, payload=b"f" * 40))
        b[6] |= 0x20
        pktlib.put16(b, 10, 0)
        pktlib.put16(b, 10, pktlib.checksum(b[0:20]))
    elif kind == 0:
        b = pktlib.udp(src, dst, sport, dport, payload=b"x" * random.randrange(1600))
    elif kind == 1:
        b = pktlib.tcp(src, dst, sport, dport)
    elif kind == 2:
        b = pktlib.echo(src, dst, 7)
    else:
        b = pktlib.ipv4(17, src, dst, bytes(8), options=random.choice(
            (b"\x83\x07\x04\x01\x02\x03\x04\x00", b"\x89\x07\x04\x01\x02\x03\x04\x00",
             b"\x07\x07\x04\x00\x00\x00\x00\x00", b"\x94\x04\x00\x00")))
    b = bytearray(b)
    if random.random() < 0.1:
        b[random.randrange(len(b))] ^= 1 << random.randrange(8)
    for side in (0, 1):
        got = []
        for drain, t, f, c, buf in twins:
            io = Io(bytes(b))
            path = (io.recv, io.send, core.parse, core.translate_flow, core.translate_error,
                    buf, f, pol, c, t.mems, t.heads, side, io.slowpath)
            assert drain(path, 2) == 1
            # the fields once parsed (after a failed parse only F_OK counts)
            got.append((io.sent, io.slow, list(c), list(f) if f[0] else None))
        assert got[0] == got[1], (side, bytes(b), got)
        what = "sent" if got[0][0] else "slow%d" % got[0][1][0][0] if got[0][1] else "drop"
        seen[what] = seen.get(what, 0) + 1
c = twins[0][3]
print("DATAPATH agree=%d dropped=%d %s" % (sum(seen.values()), sum(c) - c[0] - c[1],
                                           " ".join("%s=%d" % kv for kv in sorted(seen.items()))))
"""


@pytest.mark.skipif(unix_binary() is None, reason="the MicroPython unix port is not installed")
def test_viper_datapath_agrees_with_its_twin():
    out = run_unix(DATAPATH_TWINS)
    assert out.startswith("DATAPATH agree=8000"), out
    counts = dict(kv.split("=") for kv in out.split()[1:])
    assert int(counts["drop"]) > 1000, out
    assert int(counts["dropped"]) > 1000, out  # the random packets did exercise the drops
    # ... and every way out: sent (translated), and each verdict the slow path gets
    for what in ("sent", "slow2", "slow3", "slow4", "slow5", "slow6"):
        assert int(counts.get(what, 0)) > 0, (what, out)


@pytest.mark.parametrize("crash_at", range(1, 6))
@pytest.mark.parametrize("replacing", [True, False], ids=["rename-replaces", "fat-like"])
def test_power_cut_at_any_step_of_save_leaves_old_or_new(tmp_path, monkeypatch, crash_at, replacing):
    """Cut the power (an exception that nothing cleans up after) at the n-th filesystem
    call of save(): the next load() has the old or the new configuration, whole."""
    path = str(tmp_path / "natrouter.json")
    config.save(path, _good())
    new = dict(_good(), mtu=1400)
    calls = [0]
    real = {name: getattr(os, name) for name in ("rename", "remove", "sync")}

    class PowerCut(BaseException):
        pass

    def wrap(name):
        def call(*a):
            calls[0] += 1
            if calls[0] == crash_at:
                raise PowerCut(name)
            if name == "rename" and not replacing and os.path.exists(a[1]):
                raise OSError(17, "EEXIST")
            return real[name](*a)
        return call

    for name in real:
        monkeypatch.setattr(os, name, wrap(name))
    monkeypatch.setattr(store, "_remove", lambda p: None)  # a dead board cleans nothing
    try:
        config.save(path, new)
    except PowerCut:
        pass
    monkeypatch.undo()
    cfg, problems = config.load(path)
    assert cfg["mtu"] in (1500, 1400), problems
    assert all("using defaults" not in p for p in problems), problems
