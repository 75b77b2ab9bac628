"""The router on CPython: MemoryLinks, scapy-built packets, scapy as the oracle for
every header and checksum the router writes."""
import threading
import time
import types

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.packet import Raw, raw

import nat
from forward import router
from forward.counters import NAMES as COUNTERS
from forward.portgen import PortGen
from forward.router import Router
from manage import config
from manage.runner import Runner
from memlink import MemoryLink

LAN_ADDR = "192.168.4.1"
WAN_ADDR = "198.51.100.2"
HOST1 = "192.168.4.2"
HOST2 = "192.168.4.3"
SERVER = "203.0.113.5"
CLIENT = "203.0.113.9"
FORWARDS = [{"proto": "tcp", "port": 8080, "to": HOST1, "to_port": 80},
            {"proto": "udp", "port": 6000, "to": HOST2, "to_port": 7000}]


class Net:
    """A Router between two MemoryLinks, with a fake clock (self.ms) for the ICMP rate
    limit and the flow table."""

    def __init__(self, forwards=FORWARDS, ports=None, table=None, lan_mtu=1500,
                 wan_mtu=1500, nat_cfg=None, **kw):
        raw_cfg = config.defaults()
        raw_cfg["forwards"] = forwards
        if ports:
            raw_cfg["ports"] = ports
        if table:
            raw_cfg["table"] = table
        if nat_cfg:
            raw_cfg["nat"].update(nat_cfg)
        cfg, problems = config.validate(raw_cfg)
        assert problems == []
        self.ms = 5000
        self.lan = MemoryLink("lan", lan_mtu, 64)
        self.wan = MemoryLink("wan", wan_mtu, 64)
        self.r = Router(cfg, self.lan, self.wan, ms=lambda: self.ms,
                        clock=lambda: self.ms // 1000, **kw)

    def send(self, link, *pkts):
        """Inject packets on a link, run the loop until idle; (lan out, wan out) as IPs."""
        for p in pkts:
            assert link.inject(p if isinstance(p, (bytes, bytearray)) else raw(p))
        while self.r.poll():
            pass
        return ([IP(b) for b in self.lan.take_all()], [IP(b) for b in self.wan.take_all()])

    def from_lan(self, *pkts):
        return self.send(self.lan, *pkts)

    def from_wan(self, *pkts):
        return self.send(self.wan, *pkts)

    def counters(self):
        return self.r.counters()


@pytest.fixture
def net():
    return Net()


def assert_checksums(p):
    """Every checksum the router wrote is what scapy computes from scratch."""
    wire = raw(p)
    q = IP(wire)
    del q.chksum
    l4 = q.payload
    if isinstance(l4, (TCP, UDP, ICMP)) and not (isinstance(l4, UDP) and l4.chksum == 0):
        del l4.chksum
    assert raw(q) == wire


def changed(before, after):
    """The counters that changed, with their deltas."""
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# ---- pings of the router itself

@pytest.mark.parametrize("side,src,dst", [
    ("lan", HOST1, LAN_ADDR),
    ("lan", HOST1, WAN_ADDR),
    ("wan", SERVER, WAN_ADDR),
    ("wan", SERVER, LAN_ADDR),
])
def test_echo_to_router_addresses(net, side, src, dst):
    req = IP(src=src, dst=dst, ttl=1) / ICMP(type=8, id=0x1234, seq=7) / Raw(b"odd-length!")
    before = net.counters()
    lan_out, wan_out = net.send(getattr(net, side), req)
    replies, other = (lan_out, wan_out) if side == "lan" else (wan_out, lan_out)
    assert other == [] and len(replies) == 1
    rep = replies[0]
    assert (rep.src, rep.dst, rep.ttl) == (dst, src, 64)
    assert (rep[ICMP].type, rep[ICMP].code, rep[ICMP].id, rep[ICMP].seq) == (0, 0, 0x1234, 7)
    assert rep[Raw].load == b"odd-length!"
    assert_checksums(rep)
    assert changed(before, net.counters()) == {"rx_" + side: 1, "echo_replies": 1}


@pytest.mark.parametrize("pkt", [
    IP(src=HOST1, dst=LAN_ADDR) / UDP(sport=5000, dport=53) / b"q",
    IP(src=HOST1, dst=WAN_ADDR) / TCP(sport=5000, dport=22, flags="S"),
    IP(src=HOST1, dst=LAN_ADDR) / ICMP(type=13),            # timestamp request
    IP(src=HOST1, dst=LAN_ADDR, flags="MF") / ICMP(type=8),  # fragmented echo
], ids=["udp", "tcp", "icmp-timestamp", "fragmented-echo"])
def test_other_traffic_to_router_dropped_quietly(net, pkt):
    before = net.counters()
    assert net.from_lan(pkt) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 1, "dropped_to_router": 1}


def test_echo_from_non_host_source_not_answered(net):
    assert net.from_wan(IP(src="224.0.0.1", dst=WAN_ADDR) / ICMP(type=8)) == ([], [])
    assert net.from_lan(IP(src="0.0.0.0", dst=LAN_ADDR) / ICMP(type=8)) == ([], [])
    assert net.from_lan(IP(src="10.0.0.9", dst=LAN_ADDR) / ICMP(type=8)) == ([], [])
    assert net.counters()["echo_replies"] == 0
    assert net.counters()["dropped_bad_source"] == 2


# ---- LAN -> WAN

@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_outbound_keeps_port_and_replies_come_back(net, proto):
    l4 = {"tcp": TCP(sport=40000, dport=80, flags="S", seq=1000),
          "udp": UDP(sport=40000, dport=53),
          "icmp": ICMP(type=8, id=40000, seq=1)}[proto]
    before = net.counters()
    lan_out, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER, ttl=64) / l4 / b"hello")
    assert lan_out == [] and len(wan_out) == 1
    out = wan_out[0]
    assert (out.src, out.dst, out.ttl) == (WAN_ADDR, SERVER, 63)
    assert out[Raw].load == b"hello"
    assert_checksums(out)
    if proto == "icmp":
        assert out[ICMP].id == 40000
        reply = IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=0, id=40000, seq=1) / b"hello"
    else:
        layer = TCP if proto == "tcp" else UDP
        assert (out[layer].sport, out[layer].dport) == (40000, 80 if proto == "tcp" else 53)
        reply = IP(src=SERVER, dst=WAN_ADDR) / layer(sport=out[layer].dport, dport=40000) / b"re"
    lan_out, wan_out = net.from_wan(reply)
    assert wan_out == [] and len(lan_out) == 1
    back = lan_out[0]
    assert (back.src, back.dst, back.ttl) == (SERVER, HOST1, 63)
    assert_checksums(back)
    if proto == "icmp":
        assert back[ICMP].id == 40000
    else:
        assert back[layer].dport == 40000
    assert changed(before, net.counters()) == {
        "rx_lan": 1, "rx_wan": 1, "translated_out": 1, "translated_in": 1, "flows_added": 1,
        "flows_" + proto: 1}


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
def test_two_hosts_same_port_same_server(net, proto):
    def l4(port):
        return {"tcp": TCP(sport=port, dport=443, flags="S"), "udp": UDP(sport=port, dport=443),
                "icmp": ICMP(type=8, id=port)}[proto]
    ext = []
    for host in (HOST1, HOST2):
        _, wan_out = net.from_lan(IP(src=host, dst=SERVER) / l4(33333))
        assert len(wan_out) == 1 and wan_out[0].src == WAN_ADDR
        assert_checksums(wan_out[0])
        ext.append(wan_out[0][ICMP].id if proto == "icmp" else wan_out[0].sport)
    assert ext[0] == 33333 and ext[1] != 33333
    assert 1024 <= ext[1] <= 65535 or proto == "icmp"
    # Each external port's replies reach its own host, at its own port.
    for host, port in zip((HOST1, HOST2), ext):
        if proto == "icmp":
            reply = IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=0, id=port)
        else:
            layer = TCP if proto == "tcp" else UDP
            reply = IP(src=SERVER, dst=WAN_ADDR) / layer(sport=443, dport=port)
        lan_out, _ = net.from_wan(reply)
        assert len(lan_out) == 1 and lan_out[0].dst == host
        assert (lan_out[0][ICMP].id if proto == "icmp" else lan_out[0].dport) == 33333
        assert_checksums(lan_out[0])


def test_low_source_ports_stay_below_1024(net):
    ext = []
    for i in range(20):
        _, wan_out = net.from_lan(IP(src="192.168.4.%d" % (10 + i), dst=SERVER)
                                  / UDP(sport=700, dport=53))
        ext.append(wan_out[0].sport)
    assert ext[0] == 700
    assert len(set(ext)) == 20 and all(1 <= p <= 1023 for p in ext)


def test_configured_port_range():
    net = Net(ports={"first": 40000, "last": 40009})
    ext = []
    for i in range(3):
        _, wan_out = net.from_lan(IP(src="192.168.4.%d" % (10 + i), dst=SERVER)
                                  / TCP(sport=40005, dport=80))
        ext.append(wan_out[0].sport)
    _, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(sport=5000, dport=80))
    ext.append(wan_out[0].sport)
    assert ext[0] == 40005  # kept: free and inside the range
    assert len(set(ext)) == 4 and all(40000 <= p <= 40009 for p in ext)


def test_forwarded_port_never_used_for_outbound_flows(net):
    _, wan_out = net.from_lan(IP(src=HOST2, dst=CLIENT) / TCP(sport=8080, dport=5555))
    assert wan_out[0].sport != 8080
    # So the forward still reaches its server for that very client.
    lan_out, _ = net.from_wan(IP(src=CLIENT, dst=WAN_ADDR) / TCP(sport=5555, dport=8080))
    assert lan_out[0].dst == HOST1


def test_port_range_exhausted_counts_overlap():
    net = Net(ports={"first": 40000, "last": 40001})
    outs = [net.from_lan(IP(src="192.168.4.%d" % (10 + i), dst=SERVER)
                         / UDP(sport=40000, dport=53))[1] for i in range(3)]
    assert [len(o) for o in outs] == [1, 1, 0]
    assert net.counters()["dropped_overlap"] == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(2, 40), st.sampled_from([22, 700, 1023, 1024, 5000,
                                                                 40000, 65535]),
                          st.sampled_from(["tcp", "udp"])),
                min_size=1, max_size=25, unique=True))
def test_mappings_distinct_and_reversible(clients):
    """Any set of LAN clients to one server: distinct external ports per protocol, low
    ports stay low, and each reply returns to exactly its own client."""
    net = Net()
    ext = {}
    for host, port, proto in clients:
        layer = TCP if proto == "tcp" else UDP
        _, wan_out = net.from_lan(IP(src="192.168.4.%d" % host, dst=SERVER)
                                  / layer(sport=port, dport=443))
        x = wan_out[0][layer].sport
        assert (proto, x) not in ext.values()
        assert (x < 1024) == (port < 1024) and x != 0
        ext[(host, port, proto)] = (proto, x)
    for (host, port, proto), (_, x) in ext.items():
        layer = TCP if proto == "tcp" else UDP
        lan_out, _ = net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / layer(sport=443, dport=x))
        assert [(p.dst, p[layer].dport) for p in lan_out] == [("192.168.4.%d" % host, port)]


@pytest.mark.parametrize("dst", ["192.168.4.7", "192.168.4.255", "255.255.255.255",
                                 "224.0.0.251", "239.255.255.250", "198.51.100.255"])
def test_lan_local_broadcast_multicast_not_forwarded(net, dst):
    before = net.counters()
    assert net.from_lan(IP(src=HOST1, dst=dst) / UDP(sport=5353, dport=5353)) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 1, "dropped_lan_local": 1}


def test_spoofed_sources_dropped(net):
    assert net.from_lan(IP(src="10.9.9.9", dst=SERVER) / UDP(sport=1, dport=2)) == ([], [])
    assert net.from_wan(IP(src=HOST2, dst=WAN_ADDR) / UDP(sport=1, dport=6000)) == ([], [])
    assert net.counters()["dropped_bad_source"] == 2
    assert net.counters()["flows_udp"] == 0


def test_not_nattable_protocol_dropped(net):
    assert net.from_lan(IP(src=HOST1, dst=SERVER, proto=47) / b"gre-ish") == ([], [])
    assert net.counters()["dropped_cannot_nat"] == 1


def test_malformed_dropped(net):
    good = raw(IP(src=HOST1, dst=SERVER) / UDP(sport=1, dport=2))
    bad_sum = bytearray(good)
    bad_sum[10] ^= 0xFF
    for junk in (b"\x00" * 40, bytes(bad_sum), good[:24]):
        assert net.from_lan(junk) == ([], [])
    assert net.from_wan(b"\x45" + b"\x00" * 19) == ([], [])
    assert net.counters()["dropped_malformed"] == 4


# ---- WAN -> LAN

@pytest.mark.parametrize("pkt", [
    IP(src=CLIENT, dst=WAN_ADDR) / TCP(sport=4444, dport=9999, flags="S"),
    IP(src=CLIENT, dst=WAN_ADDR) / UDP(sport=4444, dport=9999),
    IP(src=CLIENT, dst=WAN_ADDR, ttl=1) / UDP(sport=4444, dport=9999),
    IP(src=CLIENT, dst=HOST1) / TCP(sport=4444, dport=80, flags="S"),
    IP(src=CLIENT, dst=WAN_ADDR) / ICMP(type=0, id=999),
    IP(src=CLIENT, dst=WAN_ADDR) / ICMP(type=3, code=3) / IPerror(src=WAN_ADDR, dst=CLIENT)
    / UDP(sport=1, dport=2),
    IP(src=CLIENT, dst=WAN_ADDR, proto=47) / b"x",
], ids=["tcp-syn", "udp", "udp-ttl1", "to-lan-host", "echo-reply", "icmp-error", "gre"])
def test_unsolicited_wan_packets_dropped_without_reply(net, pkt):
    before = net.counters()
    assert net.from_wan(pkt) == ([], [])
    delta = changed(before, net.counters())
    assert delta.pop("rx_wan") == 1
    assert len(delta) == 1 and next(iter(delta)).startswith("dropped_")


@pytest.mark.parametrize("filtering,same_host_other_port,other_host", [
    ("endpoint", True, True), ("address", True, False), ("address_port", False, False)])
def test_filtering_decides_who_else_may_use_a_mapping(filtering, same_host_other_port, other_host):
    # RFC 4787 REQ-8: endpoint-independent lets anyone in, address-dependent only the
    # addresses the inside endpoint has sent to, address-and-port-dependent nobody new.
    net = Net(nat_cfg={"filtering": filtering})
    net.from_lan(IP(src=HOST1, dst=SERVER) / UDP(sport=40000, dport=53))
    for src, sport, admitted in ((SERVER, 54, same_host_other_port), (CLIENT, 53, other_host)):
        before = net.counters()
        lan_out, _ = net.from_wan(IP(src=src, dst=WAN_ADDR) / UDP(sport=sport, dport=40000) / b"hi")
        if admitted:
            assert [(p.src, p[UDP].sport, p.dst, p[UDP].dport) for p in lan_out] == [
                (src, sport, HOST1, 40000)]  # the inside host sees who really sent it
            assert changed(before, net.counters())["filtered_in"] == 1
            # and its answer goes back out from the same mapping
            _, wan_out = net.from_lan(IP(src=HOST1, dst=src) / UDP(sport=40000, dport=sport))
            assert [(p.src, p[UDP].sport) for p in wan_out] == [(WAN_ADDR, 40000)]
        else:
            assert lan_out == []
            assert changed(before, net.counters()) == {"rx_wan": 1, "dropped_filtered": 1}


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_port_forward_end_to_end(net, proto):
    if proto == "tcp":
        port, server, server_port = 8080, HOST1, 80
        first = TCP(sport=5555, dport=port, flags="S", seq=100)
        answer = TCP(sport=server_port, dport=5555, flags="SA", seq=900, ack=101)
    else:
        port, server, server_port = 6000, HOST2, 7000
        first = UDP(sport=5555, dport=port)
        answer = UDP(sport=server_port, dport=5555)
    layer = type(first)
    before = net.counters()
    lan_out, wan_out = net.from_wan(IP(src=CLIENT, dst=WAN_ADDR) / first / b"in")
    assert wan_out == [] and len(lan_out) == 1
    got = lan_out[0]
    # The server sees the real client.
    assert (got.src, got[layer].sport, got.dst, got[layer].dport) == (
        CLIENT, 5555, server, server_port)
    assert got[Raw].load == b"in" and got.ttl == 63
    assert_checksums(got)
    if proto == "tcp":
        assert got[TCP].flags == "S"
    lan_out, wan_out = net.from_lan(IP(src=server, dst=CLIENT) / answer / b"out")
    assert lan_out == [] and len(wan_out) == 1
    back = wan_out[0]
    assert (back.src, back[layer].sport, back.dst, back[layer].dport) == (
        WAN_ADDR, port, CLIENT, 5555)
    assert_checksums(back)
    if proto == "tcp":
        assert back[TCP].flags == "SA"
    # Later packets of the connection ride the flow.
    lan_out, _ = net.from_wan(IP(src=CLIENT, dst=WAN_ADDR) / layer(sport=5555, dport=port))
    assert len(lan_out) == 1 and lan_out[0].dst == server
    assert changed(before, net.counters()) == {
        "rx_wan": 2, "rx_lan": 1, "translated_in": 2, "translated_out": 1, "flows_added": 1,
        "forwards_hit": 1, "flows_" + proto: 1}


# ---- Time Exceeded

def quoted(err):
    """The bytes an ICMP error quotes (from the wire: scapy's layers would re-encode)."""
    return raw(err)[err.ihl * 4 + 8:]


def test_ttl1_new_flow_gets_time_exceeded_from_lan_address(net):
    probe = raw(IP(src=HOST1, dst=SERVER, ttl=1, id=4242, tos=0x12)
                / UDP(sport=33434, dport=33434) / (b"x" * 32))
    lan_out, wan_out = net.from_lan(probe)
    assert wan_out == [] and len(lan_out) == 1
    err = lan_out[0]
    assert (err.src, err.dst, err.proto) == (LAN_ADDR, HOST1, 1)
    assert (err[ICMP].type, err[ICMP].code) == (11, 0)
    assert err.tos == 0xD0  # precedence 6, the probe's TOS bits, no ECN (RFC 1812 4.3.2.5)
    assert quoted(err) == probe  # short: quoted whole, untranslated
    assert err.len == 28 + len(probe)
    assert_checksums(err)
    c = net.counters()
    assert c["ttl_exceeded_sent"] == 1 and c["flows_udp"] == 0  # no flow spent on it


def test_ttl1_established_flows_both_directions(net):
    _, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(sport=40000, dport=80))
    lan_out, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER, ttl=1)
                                    / TCP(sport=40000, dport=80))
    assert wan_out == [] and lan_out[0].src == LAN_ADDR and lan_out[0][ICMP].type == 11
    inbound = raw(IP(src=SERVER, dst=WAN_ADDR, ttl=1) / TCP(sport=80, dport=40000))
    lan_out, wan_out = net.from_wan(inbound)
    assert lan_out == [] and len(wan_out) == 1
    err = wan_out[0]
    assert (err.src, err.dst, err[ICMP].type) == (WAN_ADDR, SERVER, 11)
    assert quoted(err) == inbound  # as it arrived, not translated
    assert_checksums(err)


def test_ttl1_to_port_forward(net):
    lan_out, wan_out = net.from_wan(IP(src=CLIENT, dst=WAN_ADDR, ttl=1)
                                    / TCP(sport=5555, dport=8080, flags="S"))
    assert lan_out == [] and wan_out[0].src == WAN_ADDR and wan_out[0][ICMP].type == 11


def test_time_exceeded_quote_capped_at_576_bytes(net):
    probe = raw(IP(src=HOST1, dst=SERVER, ttl=1) / UDP(sport=1, dport=2) / (b"y" * 1400))
    err = net.from_lan(probe)[0][0]
    assert len(raw(err)) == 576 and err.len == 576
    assert quoted(err) == probe[:548]
    assert_checksums(err)


def test_time_exceeded_rate_limited(net):
    def burst(n, first_port):
        return net.from_lan(*[IP(src=HOST1, dst=SERVER, ttl=1) / UDP(sport=first_port + i,
                                                                    dport=33434)
                              for i in range(n)])[0]
    assert len(burst(30, 1000)) == 20  # the burst
    c = net.counters()
    assert (c["ttl_exceeded_sent"], c["ttl_exceeded_rate_limited"]) == (20, 10)
    net.ms += 500  # half a second refills 5 tokens
    assert len(burst(8, 2000)) == 5
    net.ms += 60000  # never more than the burst
    assert len(burst(30, 3000)) == 20


def test_no_time_exceeded_for_errors_and_later_fragments(net):
    silent = [
        IP(src=HOST1, dst=SERVER, ttl=1) / ICMP(type=3, code=3) / IPerror(src=SERVER, dst=HOST1)
        / UDP(sport=53, dport=9),
        IP(src=HOST1, dst=SERVER, ttl=1, frag=100) / b"later fragment",
    ]
    before = net.counters()
    for pkt in silent:
        assert net.from_lan(pkt) == ([], [])
    # The error quotes no flow: dropped as such, before its TTL matters. The later
    # fragment's TTL ends it in the fragment tracker, silently (RFC 1812 4.3.2.7).
    assert changed(before, net.counters()) == {"rx_lan": 2, "dropped_icmp_error": 1,
                                               "frag_dropped_ttl": 1}
    # The first fragment does get one.
    lan_out, _ = net.from_lan(IP(src=HOST1, dst=SERVER, ttl=1, flags="MF") / UDP() / b"1st")
    assert lan_out[0][ICMP].type == 11


# ---- MTU

def test_too_big_with_df_gets_frag_needed():
    net = Net(wan_mtu=1000)
    big = IP(src=HOST1, dst=SERVER, flags="DF") / UDP(sport=1, dport=2) / (b"z" * 1200)
    lan_out, wan_out = net.from_lan(big)
    assert wan_out == [] and len(lan_out) == 1
    err = lan_out[0]
    assert (err.src, err[ICMP].type, err[ICMP].code, err[ICMP].nexthopmtu) == (
        LAN_ADDR, 3, 4, 1000)
    assert_checksums(err)
    c = net.counters()
    assert (c["dropped_too_big"], c["frag_needed_sent"]) == (1, 1)


def test_too_big_without_df_leaves_in_fragments():
    from scapy.layers.inet import defragment
    net = Net(wan_mtu=1000)
    lan_out, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER, id=77) / UDP(sport=4000, dport=2)
                                    / (b"z" * 1200))
    assert lan_out == [] and len(wan_out) == 2 and all(len(raw(p)) <= 1000 for p in wan_out)
    whole = defragment(wan_out)[0]
    assert (whole.src, whole[UDP].sport, whole[UDP].load) == (WAN_ADDR, 4000, b"z" * 1200)
    assert_checksums(IP(raw(whole)))
    assert net.counters()["fragmented"] == 1


# ---- counters, flows, the loop, start()

def test_counters_dict(net):
    c = net.counters()
    for name in COUNTERS:
        assert c[name] == 0
    for proto, cap in (("tcp", 512), ("udp", 256), ("icmp", 64)):
        assert c["flows_" + proto] == 0 and c["capacity_" + proto] == cap


def test_flows_readable(net):
    net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(sport=40000, dport=80))
    net.from_wan(IP(src=CLIENT, dst=WAN_ADDR) / UDP(sport=5555, dport=6000))
    net.ms += 3000
    net.r.poll()
    lines = net.r.flows()
    assert ("tcp %s:40000 -> %s:80 as %s:40000 -> %s:80 idle 3s"
            % (HOST1, SERVER, WAN_ADDR, SERVER)) in lines
    assert ("udp %s:5555 -> %s:6000 as %s:5555 -> %s:7000 idle 3s"
            % (CLIENT, WAN_ADDR, CLIENT, HOST2)) in lines
    assert len(lines) == 2


def test_poll_drains_a_bounded_batch(net):
    for i in range(40):
        net.lan.inject(raw(IP(src=HOST1, dst=SERVER) / UDP(sport=1000 + i, dport=53)))
    assert net.r.poll() == router.BATCH
    assert net.lan.pending() == 40 - router.BATCH
    assert net.r.poll() == 40 - router.BATCH
    assert net.r.poll() == 0


class FlakyLink(MemoryLink):
    def __init__(self, *a):
        super().__init__(*a)
        self.fail = 1

    def send(self, buf, n):
        if self.fail:
            self.fail -= 1
            raise OSError(105, "ENOBUFS")
        super().send(buf, n)


def test_run_survives_link_errors_and_stops():
    cfg = config.validate(config.defaults())[0]
    lan, wan = MemoryLink("lan"), FlakyLink("wan")
    waits = []

    def wait(ms):
        waits.append(ms)
        if len(waits) == 1:
            lan.inject(raw(IP(src=HOST1, dst=SERVER) / UDP(sport=2, dport=53)))
        if len(waits) == 3:
            r.stop()

    r = Router(cfg, lan, wan, wait=wait)
    lan.inject(raw(IP(src=HOST1, dst=SERVER) / UDP(sport=1, dport=53)))
    r.run()
    assert not r.is_running()
    c = r.counters()
    assert c["errors"] == 1 and "ENOBUFS" in r.last_error
    assert [IP(b).sport for b in wan.take_all()] == [2]
    assert waits == [router.WAIT_MS] * 3


def test_a_call_made_as_the_router_stops_before_its_loop_ran_is_answered():
    """The runner marks a router running before its thread is up; stopped in between, its
    loop never looks at the call waiting for it: the caller runs it (it waited 5 s and
    failed)."""
    cfg = config.validate(config.defaults())[0]
    r = Router(cfg, MemoryLink("lan"), MemoryLink("wan"), wait=lambda ms: None)
    r.mark_running()
    got = []
    caller = threading.Thread(target=lambda: got.append(r.call(lambda: "answered")))
    t0 = time.monotonic()
    caller.start()
    while r._job is None and caller.is_alive():
        time.sleep(0.001)
    r.stop()
    r.run()          # the thread starts late: sees the stop, returns
    caller.join(10)
    assert got == ["answered"] and time.monotonic() - t0 < 2


def test_start_runs_once_and_reports_config_problems(tmp_path, capsys, monkeypatch):
    path = tmp_path / "natrouter.json"
    path.write_text('{"mtu": 100}')
    started = []
    board = types.SimpleNamespace(
        CONFIG_PATH=str(path),
        open_links=lambda cfg: (MemoryLink("lan", cfg["mtu"]), MemoryLink("wan", cfg["mtu"])),
        wait=lambda ms: None,
        start=started.append)
    runner = Runner()
    r = runner.start(board)
    assert runner.router is r and r.is_running() and started == [runner._loop]
    assert "mtu" in capsys.readouterr().out
    assert r.lan.mtu == 1500  # the default replaced the bad value
    assert runner.start(board) is r and len(started) == 1  # no second router
    r.stop()
    r2 = runner.start(board)
    assert r2 is not r and runner._next is r2 and len(started) == 1  # the same thread's
    r2.stop()


def test_each_router_runs_on_a_thread_made_before_it_that_ends_with_it(tmp_path):
    """On an ESP32 a thread's stack comes from ESP-IDF's heap: made before the router it
    takes back the room the last one left, before MicroPython's heap can grow into it;
    ended with its router, its stale frames keep nothing of it (that port's collector
    reads another thread's stack whole)."""
    events, threads = [], []

    def start(fn):
        events.append("thread")
        threads.append(threading.Thread(target=fn, daemon=True))
        threads[-1].start()

    def open_links(cfg):
        events.append("links")
        return MemoryLink("lan", cfg["mtu"]), MemoryLink("wan", cfg["mtu"])

    board = types.SimpleNamespace(CONFIG_PATH=str(tmp_path / "natrouter.json"),
                                  open_links=open_links, wait=lambda ms: time.sleep(0.001),
                                  start=start)
    runner = Runner()
    r1 = runner.start(board)
    ran_on = [r1.call(threading.current_thread)]
    r2 = runner.restart(r1.cfg)
    ran_on.append(r2.call(threading.current_thread))
    r3 = runner.restart(r2.cfg)
    ran_on.append(r3.call(threading.current_thread))
    assert events == ["thread", "links"] * 3 and ran_on == threads
    assert [t.is_alive() for t in threads] == [False, False, True] and r3.is_running()
    assert r1.table is None and r2.table is None      # released
    runner.stop()
    threads[2].join(5)
    assert not threads[2].is_alive() and runner.router is None


# ---- the port generator alone

class FakeTable:
    """Every port in `free` is free; nothing has a mapping or an owner."""

    def __init__(self, free):
        self.free = free
        self.asked = []

    def is_port_free(self, proto, src, dst, src_port, dst_port):
        self.asked.append((proto, src, dst, src_port, dst_port))
        return (dst_port if proto != nat.ICMP else src_port) in self.free

    def mapping(self, proto, ip, port):
        return None

    def owner(self, proto, ip, port):
        return None

    def owned(self, proto, hi, lo, port):
        return False

    def recently_freed(self, proto, port):
        return False


def test_portgen_asks_for_the_reply_key():
    t = FakeTable(free={40000})
    gen = PortGen(t).prepare(nat.TCP, nat.ip(SERVER), 443, nat.ip(WAN_ADDR), 40000)
    assert gen() == 40000
    assert t.asked == [(nat.TCP, nat.ip(SERVER), nat.ip(WAN_ADDR), 443, 40000)]
    t = FakeTable(free={40009})
    gen = PortGen(t).prepare(nat.ICMP, nat.ip(SERVER), 40009, nat.ip(WAN_ADDR), 40009)
    assert gen() == 40009
    assert t.asked[0][:4] == (nat.ICMP, nat.ip(SERVER), nat.ip(WAN_ADDR), 40009)


def test_portgen_finds_the_last_free_port_then_gives_up():
    # Whether a random probe or the walk finds the only free port, it comes once (the
    # probe finds it in about 3% of rounds: many rounds see both ways).
    for _ in range(300):
        t = FakeTable(free={517})
        gen = PortGen(t).prepare(nat.UDP, 1, 53, 2, 700)
        assert gen() == 517  # crowded low range
        assert gen() is None  # the range holds no other
    t = FakeTable(free=set())
    gen = PortGen(t, 50000, 50100).prepare(nat.UDP, 1, 53, 2, 50050)
    assert gen() is None


def test_portgen_offers_each_port_once_for_a_flow():
    # The table asks again when a port will not do; the same port is never offered twice,
    # the preferred one included, and every free port of the range comes in the end.
    for free in (set(range(50000, 50011)), {50003, 50007}, {50005}):
        t = FakeTable(free=free)
        gen = PortGen(t, 50000, 50010).prepare(nat.UDP, 1, 53, 2, 50005)
        offered = []
        for _ in range(40):
            p = gen()
            if p is None:
                break
            offered.append(p)
        assert sorted(offered) == sorted(free) and len(set(offered)) == len(offered)
        if 50005 in free:
            assert offered[0] == 50005  # the client's own port first
