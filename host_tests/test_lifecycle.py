"""Flow lifecycle and NAT behaviour by the RFCs at the router (issue 10), on CPython with
scapy: endpoint-independent mapping, port preservation and no overloading, the freed-port
hold, timeouts from the configuration, hairpinning, fairness under a flood, ICMP errors
from inside routers. The engine's own rules (timeouts, TCP states, room in a full table)
run on every runtime in host_tests/upy/table_cases.py and review_cases.py; filtering
modes are in test_router.py; real traffic in test_vboard_nat.py."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.packet import raw

import nat
from test_router import HOST1, HOST2, SERVER, WAN_ADDR, Net, changed

OTHER = "203.0.113.77"


@pytest.fixture
def net():
    return Net()


def later(net, seconds):
    net.ms += seconds * 1000


def leaves(net, pkt):
    """The one packet that leaves the WAN for pkt sent from the LAN."""
    lan_out, wan_out = net.from_lan(pkt)
    assert lan_out == [] and len(wan_out) == 1, (lan_out, wan_out)
    return wan_out[0]


# ---- mapping: RFC 4787 REQ-1..4, RFC 5382 REQ-1, RFC 5508 REQ-1

@pytest.mark.parametrize("l4", [UDP, TCP])
def test_one_inside_endpoint_one_outside_port_whatever_the_destination(net, l4):
    a = leaves(net, IP(src=HOST1, dst=SERVER) / l4(sport=4000, dport=53))
    b = leaves(net, IP(src=HOST1, dst=OTHER) / l4(sport=4000, dport=3478))
    c = leaves(net, IP(src=HOST1, dst=SERVER) / l4(sport=4000, dport=54))
    assert a[l4].sport == b[l4].sport == c[l4].sport == 4000  # preserved, and kept


def test_another_host_never_shares_an_outside_port(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    # HOST2 from the same port, to another server: its reply key would be free, but
    # port 4000 is HOST1's (REQ-3: no port overloading).
    other = leaves(net, IP(src=HOST2, dst=OTHER) / UDP(sport=4000, dport=53))
    assert other[UDP].sport != 4000
    again = leaves(net, IP(src=HOST2, dst=SERVER) / UDP(sport=4000, dport=9))
    assert again[UDP].sport == other[UDP].sport  # HOST2's own mapping, kept


def test_echo_ids_map_independently_of_the_destination(net):
    # RFC 5508 3.1: the query id mapping does not depend on the external host
    a = leaves(net, IP(src=HOST1, dst=SERVER) / ICMP(type=8, id=40077))
    b = leaves(net, IP(src=HOST1, dst=OTHER) / ICMP(type=8, id=40077))
    assert a[ICMP].id == b[ICMP].id == 40077


def test_a_freed_port_rests_two_minutes(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=5000, dport=53))
    net.r.table.remove_connections(nat.ip(HOST1))
    # RFC 6888 REQ-8: not handed out again for 120 s where possible
    first = leaves(net, IP(src=HOST2, dst=SERVER) / UDP(sport=5000, dport=53))
    assert first[UDP].sport != 5000
    net.r.table.remove_connections(nat.ip(HOST2))
    later(net, 121)
    again = leaves(net, IP(src=HOST2, dst=SERVER) / UDP(sport=5000, dport=53))
    assert again[UDP].sport == 5000  # rested: preserved again


# ---- timeouts from the configuration: RFC 4787 REQ-5/6, RFC 5382 REQ-5, RFC 5508 REQ-2

def test_a_udp_mapping_survives_125_s_idle_and_expires_after_its_timeout(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    later(net, 125)
    lan_out, _ = net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(sport=53, dport=4000))
    assert len(lan_out) == 1
    later(net, 301)
    assert net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(sport=53, dport=4000)) == ([], [])


def test_configured_timeouts_apply_and_change_live(net):
    n = Net(nat_cfg={"timeouts": {"udp": 600, "tcp_established": 7440, "tcp_transitory": 240,
                                  "icmp": 60}})
    leaves(n, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    later(n, 500)
    assert len(n.from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(sport=53, dport=4000))[0]) == 1
    cfg = dict(n.r.cfg, nat=dict(n.r.cfg["nat"], timeouts=dict(n.r.cfg["nat"]["timeouts"], udp=120)))
    n.r.reconfigure(cfg)
    later(n, 121)
    assert n.from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(sport=53, dport=4000)) == ([], [])


def test_unsolicited_syn_gets_no_answer_even_to_a_mapped_port(net):
    # RFC 5382 REQ-4: no RST, no ICMP. Address-dependent filtering: a stranger's SYN.
    leaves(net, IP(src=HOST1, dst=SERVER) / TCP(sport=4000, dport=80, flags="S"))
    before = net.counters()
    assert net.from_wan(IP(src=OTHER, dst=WAN_ADDR) / TCP(sport=5, dport=4000, flags="S")) == ([], [])
    assert net.from_wan(IP(src=OTHER, dst=WAN_ADDR) / TCP(sport=5, dport=4999, flags="S")) == ([], [])
    assert changed(before, net.counters()) == {"rx_wan": 2, "dropped_filtered": 1,
                                               "dropped_unsolicited": 1}


# ---- hairpinning: RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508 REQ-7

def test_udp_hairpin_shows_the_senders_outside_address(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=3478))  # HOST1's mapping
    lan_out, wan_out = net.from_lan(IP(src=HOST2, dst=WAN_ADDR) / UDP(sport=5000, dport=4000) / b"hi")
    assert wan_out == [] and len(lan_out) == 1
    p = lan_out[0]
    assert (p.src, p[UDP].sport, p.dst, p[UDP].dport) == (WAN_ADDR, 5000, HOST1, 4000)
    # HOST1 answers the outside address it saw; HOST2 sees HOST1's outside address
    lan_out, _ = net.from_lan(IP(src=HOST1, dst=WAN_ADDR) / UDP(sport=4000, dport=5000) / b"yo")
    assert [(q.src, q[UDP].sport, q.dst, q[UDP].dport) for q in lan_out] == [
        (WAN_ADDR, 4000, HOST2, 5000)]
    # HOST2's mapping is its outside port from then on, out to the WAN too
    out = leaves(net, IP(src=HOST2, dst=SERVER) / UDP(sport=5000, dport=3478))
    assert out[UDP].sport == 5000
    assert net.counters()["hairpinned"] == 2


def test_tcp_hairpin_to_a_port_forward(net):
    lan_out, wan_out = net.from_lan(IP(src=HOST2, dst=WAN_ADDR) / TCP(sport=5000, dport=8080, flags="S"))
    assert wan_out == [] and [(p.src, p[TCP].sport, p.dst, p[TCP].dport) for p in lan_out] == [
        (WAN_ADDR, 5000, HOST1, 80)]
    lan_out, _ = net.from_lan(IP(src=HOST1, dst=WAN_ADDR) / TCP(sport=80, dport=5000, flags="SA"))
    assert [(p.src, p[TCP].sport, p.dst) for p in lan_out] == [(WAN_ADDR, 8080, HOST2)]


def test_icmp_error_about_a_hairpinned_packet_is_hairpinned_too(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=3478))
    lan_out, _ = net.from_lan(IP(src=HOST2, dst=WAN_ADDR) / UDP(sport=5000, dport=4000) / b"x")
    delivered = lan_out[0]
    err = IP(src=HOST1, dst=WAN_ADDR) / ICMP(type=3, code=3) / raw(delivered)[:28]
    lan_out, wan_out = net.from_lan(err)
    assert wan_out == [] and len(lan_out) == 1
    e = lan_out[0]
    assert (e.src, e.dst, e[ICMP].type) == (WAN_ADDR, HOST2, 3)
    assert (e[IPerror].src, e[IPerror].dst, e[UDPerror].sport, e[UDPerror].dport) == (
        HOST2, WAN_ADDR, 5000, 4000)  # as HOST2 sent it


def test_ping_of_the_wan_address_from_the_lan_is_still_answered(net):
    lan_out, _ = net.from_lan(IP(src=HOST1, dst=WAN_ADDR) / ICMP(type=8, id=3))
    assert [(p.src, p[ICMP].type) for p in lan_out] == [(WAN_ADDR, 0)]


def test_nothing_mapped_at_that_port_is_dropped(net):
    before = net.counters()
    assert net.from_lan(IP(src=HOST2, dst=WAN_ADDR) / UDP(sport=5000, dport=4999)) == ([], [])
    assert changed(before, net.counters()) == {"rx_lan": 1, "dropped_to_router": 1}


# ---- fairness under pressure

def test_a_lan_host_flooding_syns_cannot_evict_an_established_flow():
    n = Net(table={"tcp": 64, "udp": 16, "icmp": 8})
    leaves(n, IP(src=HOST1, dst=SERVER) / TCP(sport=4000, dport=80, flags="S"))
    n.from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=80, dport=4000, flags="SA"))
    for i in range(500):  # HOST2: SYNs from random ports, never answered
        n.lan.inject(raw(IP(src=HOST2, dst=OTHER) / TCP(sport=10000 + i, dport=80, flags="S")))
        if i % 32 == 31:
            while n.r.poll():
                pass
            n.wan.take_all()
    while n.r.poll():
        pass
    n.wan.take_all()
    assert n.r.table.count(nat.TCP) == 64
    out = leaves(n, IP(src=HOST1, dst=SERVER) / TCP(sport=4000, dport=80, flags="A"))
    assert out[TCP].sport == 4000
    lan_out, _ = n.from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=80, dport=4000, flags="A"))
    assert len(lan_out) == 1


# ---- ICMP errors from the inside: RFC 5508 4.2.2, REQ-5

def test_an_inside_routers_error_leaves_from_the_public_address(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    reply = IP(src=SERVER, dst=HOST1, ttl=1) / UDP(sport=53, dport=4000)  # as delivered
    err = IP(src="192.168.4.254", dst=SERVER) / ICMP(type=11, code=0) / raw(reply)[:28]
    out = leaves(net, err)
    assert (out.src, out.dst) == (WAN_ADDR, SERVER)
    assert (out[IPerror].src, out[IPerror].dst, out[UDPerror].dport) == (SERVER, WAN_ADDR, 4000)


def test_bad_icmp_errors_are_dropped_and_counted(net):
    leaves(net, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    sent = IP(src=WAN_ADDR, dst=SERVER, ttl=3) / UDP(sport=4000, dport=53)
    bad_sum = bytearray(raw(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / raw(sent)[:28]))
    bad_sum[22] ^= 0xFF  # the ICMP checksum
    before = net.counters()
    for pkt in (bytes(bad_sum),                                                  # bad checksum
                IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / (b"garbage" * 5),  # no quote
                IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3)
                / raw(IP(src=WAN_ADDR, dst=SERVER) / UDP(sport=4999, dport=53))[:28]):  # no flow
        assert net.from_wan(pkt) == ([], [])
    assert changed(before, net.counters()) == {"rx_wan": 3, "dropped_malformed": 2,
                                               "dropped_icmp_error": 1}
