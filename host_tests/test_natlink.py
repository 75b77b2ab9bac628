"""natlink, the C core between lwIP and the router (boards/natlink/), against real lwIP:
Debian's liblwip 2.1.3 with its tcpip thread and in-memory Ethernet netifs
(boards/natlink/host/harness.c, host_tests/natlink_harness.py). scapy builds every
frame fed in and reads every frame lwIP sends: an oracle independent of the C code.

Debian's lwIP asserts the core lock in etharp_output() and aborts the process when it
is called from another thread, so every test that sends also checks that natlink's
output runs in lwIP's thread."""
import os
import select
import threading
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, ICMPerror, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw, raw

import natlink_harness as nh

_why = nh.unavailable()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

LAN, WAN, OTHER = nh.LAN, nh.WAN, nh.OTHER
LAN_MAC, LAN_ADDR = nh.NETIFS[LAN][0], nh.NETIFS[LAN][1]
WAN_MAC, WAN_ADDR, GW = nh.NETIFS[WAN][0], nh.NETIFS[WAN][1], nh.NETIFS[WAN][3]
GW_MAC = "02:00:00:00:64:01"
HOST, HOST_MAC = "192.168.4.2", "02:00:00:00:04:02"
SERVER = "203.0.113.5"
BCAST = "ff:ff:ff:ff:ff:ff"

# What the Python config would hand over: low ports minus the board's own services
# (TCP 22, 80; UDP 67, 68), port forwards (TCP 8080, UDP 6000), the NAT range below
# lwIP's ephemeral ports (0xC000-0xFFFF).
TCP_RANGES = [(1, 21), (23, 79), (81, 1023), (8080, 8080), (20000, 29999)]
UDP_RANGES = [(1, 66), (69, 1023), (6000, 6000), (20000, 29999)]
ICMP_RANGES = [(20000, 29999)]
NAT_PORT = 25000
LWIP_PORT = 50000       # in lwIP's own ephemeral range: never claimed


def from_lan(pkt, dst=LAN_MAC, src=HOST_MAC):
    return Ether(dst=dst, src=src) / pkt


def from_wan(pkt, dst=WAN_MAC, src=GW_MAC):
    return Ether(dst=dst, src=src) / pkt


def arp_reply(side, ip, mac):
    """An ARP reply addressed to the netif: lwIP learns ip -> mac from it."""
    me_mac, me_ip = nh.NETIFS[side][0], nh.NETIFS[side][1]
    return Ether(dst=me_mac, src=mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=me_mac, pdst=me_ip)


def readable(fd, timeout):
    return bool(select.select([fd], [], [], timeout)[0])


@pytest.fixture
def h():
    h = nh.get()
    if h.running():
        h.stop()
    for idx in nh.NETIFS:
        h.count_only(idx, False)
    assert h.start(WAN_ADDR, TCP_RANGES, UDP_RANGES, ICMP_RANGES) == 0
    h.sync()
    h.clear()
    h.drain_efd()
    yield h
    h.stop()
    h.sync()


# ---------------------------------------------------------------------------
# The claim rules: (netif, frame, claimed?). A claimed frame's bare IPv4 packet must
# come out of that link's ring byte for byte; a passed one reaches lwIP untouched.

def quote_udp(src=WAN_ADDR, sport=NAT_PORT, **ip):
    return IPerror(src=src, dst=SERVER, **ip) / UDPerror(sport=sport, dport=53)


def truncated_quote(n):
    """The first n bytes of a UDP packet the router sent from the WAN address."""
    return Raw(raw(IP(src=WAN_ADDR, dst=SERVER) / UDP(sport=NAT_PORT, dport=53) / (b"x" * 8))[:n])


CASES = [
    # rule 1: to forward
    ("lan_to_internet_tcp", LAN, from_lan(IP(src=HOST, dst=SERVER) / TCP(sport=40000, dport=80)), True),
    ("lan_to_internet_udp", LAN, from_lan(IP(src=HOST, dst=SERVER) / UDP(sport=40000, dport=53)), True),
    ("lan_to_internet_ping", LAN, from_lan(IP(src=HOST, dst=SERVER) / ICMP(id=1)), True),
    ("lan_to_internet_gre", LAN, from_lan(IP(src=HOST, dst=SERVER, proto=47) / b"gre!"), True),
    ("lan_ip_options_kept", LAN, from_lan(IP(src=HOST, dst=SERVER, options=b"\x01\x01\x01\x00") / UDP()), True),
    ("wan_inbound_to_inside_host", WAN, from_wan(IP(src=SERVER, dst=HOST) / TCP(dport=22)), True),
    ("wan_to_unknown_wan_subnet_addr", WAN, from_wan(IP(src=SERVER, dst="198.51.100.77") / UDP()), True),
    ("wan_to_other_subnets_broadcast", WAN, from_wan(IP(src=SERVER, dst="192.168.5.255") / UDP()), True),
    ("lan_to_remote_dhcp_server", LAN, from_lan(IP(src=HOST, dst=SERVER) / UDP(sport=68, dport=67)), True),
    ("lan_forward_fragment", LAN, from_lan(IP(src=HOST, dst=SERVER, frag=185, proto=17) / b"frag-body"), True),
    # the board's own addresses and what lwIP keeps
    ("lan_to_lan_addr_udp", LAN, from_lan(IP(src=HOST, dst=LAN_ADDR) / UDP(sport=40000, dport=53)), False),
    ("lan_ping_lan_addr", LAN, from_lan(IP(src=HOST, dst=LAN_ADDR) / ICMP(id=NAT_PORT)), False),
    ("wan_to_lan_addr", WAN, from_wan(IP(src=SERVER, dst=LAN_ADDR) / TCP(dport=80)), False),
    ("wan_to_unwrapped_netif_addr", WAN, from_wan(IP(src=SERVER, dst="10.0.0.1") / UDP(dport=NAT_PORT)), False),
    ("limited_broadcast", LAN, from_lan(IP(src=HOST, dst="255.255.255.255") / UDP(dport=9), dst=BCAST), False),
    ("limited_broadcast_unicast_mac", LAN, from_lan(IP(src=HOST, dst="255.255.255.255") / UDP(dport=9)), False),
    ("lan_directed_broadcast", LAN, from_lan(IP(src=HOST, dst="192.168.4.255") / UDP(dport=9)), False),
    ("unwrapped_netif_directed_broadcast", WAN, from_wan(IP(src=SERVER, dst="10.0.0.255") / UDP(dport=9)), False),
    ("multicast_mdns", LAN, from_lan(IP(src=HOST, dst="224.0.0.251") / UDP(dport=5353), dst="01:00:5e:00:00:fb"), False),
    ("multicast_239", LAN, from_lan(IP(src=HOST, dst="239.1.2.3") / UDP(dport=9), dst="01:00:5e:01:02:03"), False),
    ("this_network_0_8", LAN, from_lan(IP(src=HOST, dst="0.1.2.3") / UDP(dport=9)), False),
    ("link_broadcast_to_forward", LAN, from_lan(IP(src=HOST, dst=SERVER) / UDP(dport=9), dst=BCAST), False),
    ("dhcp_reply_to_offered_addr", WAN, from_wan(IP(src=GW, dst="198.51.100.99") / UDP(sport=67, dport=68)), False),
    # rule 2: to the WAN address
    ("wan_addr_tcp_nat_range", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=443, dport=NAT_PORT)), True),
    ("wan_addr_tcp_port_forward", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(dport=8080)), True),
    ("wan_addr_tcp_low_port", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(dport=443)), True),
    ("wan_addr_tcp_board_ssh", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(dport=22)), False),
    ("wan_addr_tcp_board_http", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(dport=80)), False),
    ("wan_addr_tcp_lwip_ephemeral", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(dport=LWIP_PORT)), False),
    ("wan_addr_udp_nat_range", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(dport=NAT_PORT)), True),
    ("wan_addr_udp_port_forward", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(dport=6000)), True),
    ("wan_addr_udp_dhcp_client", WAN, from_wan(IP(src=GW, dst=WAN_ADDR) / UDP(sport=67, dport=68)), False),
    ("wan_addr_udp_lwip_ephemeral", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(dport=LWIP_PORT)), False),
    ("wan_addr_udp_ports_after_options", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR, options=b"\x01\x01\x01\x01") / UDP(dport=LWIP_PORT)), False),
    ("wan_addr_tcp_header_cut", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR, proto=6) / Raw(raw(TCP(dport=NAT_PORT))[:12])), False),
    ("wan_addr_udp_header_cut", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR, proto=17) / Raw(raw(UDP(dport=NAT_PORT))[:6])), False),
    ("wan_addr_other_protocol", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR, proto=47) / b"gre!"), False),
    ("hairpin_lan_to_wan_addr_forward_port", LAN, from_lan(IP(src=HOST, dst=WAN_ADDR) / TCP(dport=8080)), True),
    ("hairpin_lan_to_wan_addr_nat_udp", LAN, from_lan(IP(src=HOST, dst=WAN_ADDR) / UDP(dport=NAT_PORT)), True),
    ("lan_to_wan_addr_board_ssh", LAN, from_lan(IP(src=HOST, dst=WAN_ADDR) / TCP(dport=22)), False),
    ("lan_ping_wan_addr", LAN, from_lan(IP(src=HOST, dst=WAN_ADDR) / ICMP(type=8, id=NAT_PORT)), False),
    ("wan_addr_echo_request", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=8, id=NAT_PORT)), False),
    ("wan_addr_echo_reply_in_range", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=0, id=NAT_PORT)), True),
    ("wan_addr_echo_reply_out_of_range", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=0, id=7)), False),
    ("wan_addr_timestamp_reply", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=14, id=NAT_PORT)), True),
    ("wan_addr_info_reply", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=16, id=NAT_PORT)), True),
    ("wan_addr_mask_reply", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=18, id=NAT_PORT)), True),
    ("wan_addr_timestamp_request", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=13, id=NAT_PORT)), False),
    ("wan_addr_router_advert", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=9)), False),
    ("wan_addr_icmp_header_cut", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR, proto=1) / b"\x00\x00\x00\x00\x61\xa8"), False),
    ("wan_addr_fragment_first", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR, flags="MF") / UDP(dport=LWIP_PORT) / bytes(16)), True),
    ("wan_addr_fragment_later", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR, frag=3, proto=17) / bytes(16)), True),
    ("wan_addr_fragment_of_ping", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR, flags="MF") / ICMP(type=8, id=7) / bytes(16)), True),
    # rule 3: ICMP errors about what the router sent from the WAN address
    ("error_port_unreach_udp_in_range", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / quote_udp()), True),
    ("error_port_unreach_udp_out_of_range", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / quote_udp(sport=LWIP_PORT)), False),
    ("error_quoting_another_source", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / quote_udp(src=HOST)), False),
    ("error_time_exceeded_tcp", WAN,
     from_wan(IP(src="198.51.100.9", dst=WAN_ADDR) / ICMP(type=11)
              / IPerror(src=WAN_ADDR, dst=SERVER) / TCPerror(sport=NAT_PORT, dport=443)), True),
    ("error_time_exceeded_tcp_board_port", WAN,
     from_wan(IP(src="198.51.100.9", dst=WAN_ADDR) / ICMP(type=11)
              / IPerror(src=WAN_ADDR, dst=SERVER) / TCPerror(sport=22, dport=443)), False),
    ("error_quoting_echo_in_range", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=1)
              / IPerror(src=WAN_ADDR, dst=SERVER) / ICMPerror(type=8, id=NAT_PORT)), True),
    ("error_quoting_echo_out_of_range", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=1)
              / IPerror(src=WAN_ADDR, dst=SERVER) / ICMPerror(type=8, id=7)), False),
    ("error_source_quench", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=4) / quote_udp()), True),
    ("error_redirect", WAN, from_wan(IP(src=GW, dst=WAN_ADDR) / ICMP(type=5, gw="198.51.100.9") / quote_udp()), True),
    ("error_parameter_problem", WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=12) / quote_udp()), True),
    ("error_quote_ip_plus_8_bytes", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / truncated_quote(28)), True),
    ("error_quote_shorter_than_8_bytes", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3) / truncated_quote(27)), False),
    ("error_quoting_later_fragment", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=3, code=3)
              / IPerror(src=WAN_ADDR, dst=SERVER, frag=10, proto=17) / Raw(b"\x61\xa8\x00\x35" + bytes(4))), False),
    ("error_hairpinned_from_lan", LAN,
     from_lan(IP(src=HOST, dst=WAN_ADDR) / ICMP(type=3, code=3) / quote_udp()), True),
    # not IPv4, or malformed: lwIP's business
    ("arp_request", LAN, from_lan(ARP(op=1, hwsrc=HOST_MAC, psrc=HOST, pdst=LAN_ADDR), dst=BCAST), False),
    ("ipv6", LAN, from_lan(IPv6(src="fe80::1", dst="2001:db8::1") / UDP(), dst="02:00:00:00:04:01"), False),
    ("vlan_tagged_ipv4", LAN, from_lan(Dot1Q(vlan=5) / IP(src=HOST, dst=SERVER) / UDP()), False),
    ("runt_ipv4_frame", LAN, Ether(dst=LAN_MAC, src=HOST_MAC, type=0x800) / Raw(bytes(19)), False),
    ("ten_byte_frame", LAN, Raw(bytes(10)), False),
    ("ihl_below_5", LAN, from_lan(IP(src=HOST, dst=SERVER, ihl=4) / UDP()), False),
    ("version_6_in_ipv4_frame", LAN, from_lan(IP(src=HOST, dst=SERVER, version=6) / UDP()), False),
    ("total_length_beyond_frame", LAN, from_lan(IP(src=HOST, dst=SERVER, len=1000) / UDP()), False),
    ("total_length_below_header", LAN, from_lan(IP(src=HOST, dst=SERVER, len=12) / UDP()), False),
    ("bad_header_checksum", LAN, from_lan(IP(src=HOST, dst=SERVER, chksum=0x1234) / UDP()), False),
    ("bad_header_checksum_to_wan_addr", WAN,
     from_wan(IP(src=SERVER, dst=WAN_ADDR, chksum=0x1234) / UDP(dport=NAT_PORT)), False),
]


@pytest.mark.parametrize("split", [0, 20], ids=["one_pbuf", "chained_pbufs"])
@pytest.mark.parametrize("side,frame,claimed", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_claim_rules(h, side, frame, claimed, split):
    data = raw(frame)
    before = [h.counters(link) for link in (LAN, WAN)]
    h.inject(side, data, split)
    after = [h.counters(link) for link in (LAN, WAN)]
    other = WAN if side == LAN else LAN
    assert after[other] == before[other]
    assert after[side]["claimed"] - before[side]["claimed"] == int(claimed)
    assert after[side]["passed"] - before[side]["passed"] == int(not claimed)
    assert after[side]["rx_drops"] == before[side]["rx_drops"]
    if claimed:
        assert h.recv(side) == raw(frame[IP]), "not the bare IPv4 packet scapy built"
        assert h.recv(side) is None
    else:
        assert h.pending(side) == 0
    h.sync()
    assert h.rx_outstanding() == 0, "an injected pbuf was not freed"


def test_padding_is_not_part_of_the_packet(h):
    pkt = IP(src=HOST, dst=SERVER) / UDP(sport=1, dport=2)
    frame = raw(from_lan(pkt)) + bytes(60 - 14 - len(raw(pkt)))     # Ethernet minimum
    assert len(frame) == 60
    h.inject(LAN, frame)
    assert h.recv(LAN) == raw(pkt)


def test_wan_address_change_moves_rules_2_and_3(h):
    h.set_wan("198.51.100.3")
    h.inject(WAN, from_wan(IP(src=SERVER, dst="198.51.100.3") / UDP(dport=NAT_PORT)))
    h.inject(WAN, from_wan(IP(src=SERVER, dst="198.51.100.3") / UDP(dport=LWIP_PORT)))
    # .2 is still the netif's own address: lwIP's, whatever the port
    h.inject(WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(dport=NAT_PORT)))
    c = h.counters(WAN)
    assert (c["claimed"], c["passed"]) == (1, 2)
    assert IP(h.recv(WAN)).dst == "198.51.100.3"


# ---------------------------------------------------------------------------
# The router's own DHCP server on the LAN (lan_dhcp): its requests are claimed there

def dhcp(dst, src="0.0.0.0", **ip):
    return IP(src=src, dst=dst, **ip) / UDP(sport=68, dport=67) / (b"\x01" + bytes(239))


DHCP_CASES = [
    ("discover_broadcast", LAN, from_lan(dhcp("255.255.255.255"), dst=BCAST), True),
    ("renewal_to_lan_addr", LAN, from_lan(dhcp(LAN_ADDR, src=HOST)), True),
    ("relayed_to_remote_server", LAN, from_lan(dhcp(SERVER, src=HOST)), True),   # rule 1
    ("to_lan_directed_broadcast", LAN, from_lan(dhcp("192.168.4.255"), dst=BCAST), False),
    ("to_unwrapped_netif_addr", LAN, from_lan(dhcp("10.0.0.1", src=HOST)), False),
    ("first_fragment", LAN, from_lan(dhcp("255.255.255.255", flags="MF"), dst=BCAST), False),
    ("client_port_not_server_port", LAN,
     from_lan(IP(src=HOST, dst="255.255.255.255") / UDP(sport=67, dport=68), dst=BCAST), False),
    ("on_the_wan", WAN, from_wan(dhcp("255.255.255.255"), dst=BCAST), False),
    ("to_the_wan_addr", WAN, from_wan(dhcp(WAN_ADDR, src=GW)), False),
]


@pytest.mark.parametrize("lan_dhcp", [True, False], ids=["router_serves_dhcp", "lwip_keeps_dhcp"])
@pytest.mark.parametrize("side,frame,claimed", [pytest.param(*c[1:], id=c[0]) for c in DHCP_CASES])
def test_dhcp_requests_on_the_lan_are_claimed_when_the_router_serves_dhcp(h, side, frame, claimed,
                                                                           lan_dhcp):
    assert h.set_claims(TCP_RANGES, UDP_RANGES, ICMP_RANGES, lan_dhcp=lan_dhcp) == 0
    before = h.counters(side)["claimed"]
    h.inject(side, raw(frame))
    relayed = IP(raw(frame[IP])).dst == SERVER   # forwarded whatever lan_dhcp says
    want = claimed and (lan_dhcp or relayed)
    assert h.counters(side)["claimed"] - before == int(want)
    if want:
        assert h.recv(side) == raw(frame[IP])
    h.sync()
    assert h.rx_outstanding() == 0


# ---------------------------------------------------------------------------
# Claims that change while natlink runs (natlink_set_claims)

def test_claims_change_while_running(h):
    to_9000 = from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=443, dport=9000))
    h.inject(WAN, to_9000)
    assert h.counters(WAN)["claimed"] == 0                   # not in TCP_RANGES: lwIP's
    assert h.set_claims(TCP_RANGES + [(9000, 9000)], UDP_RANGES, ICMP_RANGES) == 0
    h.inject(WAN, to_9000)                                   # a port forward added
    assert h.counters(WAN)["claimed"] == 1 and h.recv(WAN) == raw(to_9000[IP])
    assert h.set_claims(TCP_RANGES, UDP_RANGES, ICMP_RANGES) == 0
    h.inject(WAN, to_9000)                                   # and removed
    assert h.counters(WAN)["claimed"] == 1 and h.pending(WAN) == 0
    # refused whole: more ranges than natlink holds, or a range upside down
    assert h.set_claims([(1, 2)] * (h.max_ranges + 1)) == -1
    assert h.set_claims(TCP_RANGES, [(10, 9)]) == -1
    h.inject(WAN, from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(dport=NAT_PORT)))
    assert h.counters(WAN)["claimed"] == 2, "a refused change must leave the claims as they were"
    h.sync()
    assert h.rx_outstanding() == 0


def test_claims_rewritten_while_a_driver_classifies(h):
    """A driver thread injects while the claims flip thousands of times: each frame is
    claimed or passed exactly once, nothing is dropped or leaked."""
    frames = [raw(from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=443, dport=port)))
              for port in (9000, 9100)]
    a = (TCP_RANGES + [(9000, 9000)], UDP_RANGES, ICMP_RANGES)
    b = ([(9100, 9100)] * 8, UDP_RANGES, ICMP_RANGES)
    n = 20000
    done = threading.Event()

    def driver():
        for i in range(n):
            while h.pending(WAN) >= h.rx_slots:
                h.recv_all(WAN)
            h.inject(WAN, frames[i & 1])
        done.set()

    t = threading.Thread(target=driver)
    t.start()
    flips = 0
    while not done.is_set() and flips < 200000:
        assert h.set_claims(*(a if flips & 1 else b)) == 0
        flips += 1
    t.join(60)
    assert not t.is_alive()
    c = h.counters(WAN)
    assert c["claimed"] + c["passed"] == n and c["rx_drops"] == 0 and flips > 0
    h.recv_all(WAN)
    h.sync()
    assert h.rx_outstanding() == 0


# ---------------------------------------------------------------------------
# A netif its driver removed and added back (ESP-IDF, when an AP's settings change)

def test_a_netif_added_back_by_its_driver_is_wrapped_again(h):
    out = from_lan(IP(src=HOST, dst=SERVER) / UDP(sport=40000, dport=53))
    h.readd(LAN)                         # netif_add() gave it tcpip_input again
    assert h.input_is_lwip(LAN) and not h.input_is_lwip(WAN)
    h.inject(LAN, out)
    assert h.counters(LAN)["claimed"] == 0, "lwIP has the LAN: nothing reaches the router"
    assert h.rehook() == 1               # the LAN wrapped again, the WAN never lost it
    assert not h.input_is_lwip(LAN) and h.rehook() == 0
    h.inject(LAN, out)
    assert h.counters(LAN)["claimed"] == 1 and h.recv(LAN) == raw(out[IP])
    assert h.stop() == 0 and h.input_is_lwip(LAN) and h.input_is_lwip(WAN)
    assert h.rehook() == -1              # not running: nothing to wrap
    h.sync()
    assert h.rx_outstanding() == 0


# ---------------------------------------------------------------------------
# The receive ring

def test_full_ring_drops_the_newest_counts_and_frees(h):
    n = h.rx_slots + 5
    for i in range(n):
        h.inject(LAN, from_lan(IP(src=HOST, dst=SERVER, id=i) / UDP()))
    c = h.counters(LAN)
    assert (c["claimed"], c["rx_drops"], h.pending(LAN)) == (n, 5, h.rx_slots)
    assert h.drain_efd() == 1, "one wake-up: only the first packet found the ring empty"
    assert [IP(p).id for p in h.recv_all(LAN)] == list(range(h.rx_slots))
    assert h.counters(LAN)["received"] == h.rx_slots
    h.sync()
    assert h.rx_outstanding() == 0


def test_recv_into_a_short_buffer_drops_that_packet(h):
    h.inject(LAN, from_lan(IP(src=HOST, dst=SERVER, id=1) / UDP() / bytes(100)))
    h.inject(LAN, from_lan(IP(src=HOST, dst=SERVER, id=2) / UDP()))
    assert h.recv(LAN, cap=64) == -1
    assert IP(h.recv(LAN)).id == 2
    assert h.counters(LAN)["rx_drops"] == 1


def test_wakeup_fd_is_edge_triggered_per_empty_ring(h):
    fd = h.efd
    h.inject(LAN, from_lan(ARP(op=1, hwsrc=HOST_MAC, psrc=HOST, pdst=LAN_ADDR), dst=BCAST))
    h.sync()
    assert not readable(fd, 0.05), "a frame for lwIP must not wake the router"
    h.inject(WAN, from_wan(IP(src=SERVER, dst=HOST) / UDP()))
    assert readable(fd, 1.0)
    assert h.drain_efd() == 1
    h.inject(WAN, from_wan(IP(src=SERVER, dst=HOST) / UDP()))
    assert not readable(fd, 0.05), "the ring was not empty: no second wake-up"
    assert len(h.recv_all(WAN)) == 2
    h.inject(LAN, from_lan(IP(src=HOST, dst=SERVER) / UDP()))
    assert readable(fd, 1.0)


# ---------------------------------------------------------------------------
# Output through lwIP: ARP, framing, next hop

def take_one(h, idx):
    h.sync()
    frames = h.take_all(idx)
    assert len(frames) == 1, [Ether(f).summary() for f in frames]
    return Ether(frames[0])


def assert_arp_request(f, side, target):
    mac, addr = nh.NETIFS[side][0], nh.NETIFS[side][1]
    assert ARP in f and f.dst == BCAST and f.src == mac
    assert (f[ARP].op, f[ARP].pdst, f[ARP].psrc, f[ARP].hwsrc) == (1, target, addr, mac)


def assert_ipv4_frame(f, side, dst_mac, pkt):
    assert (f.dst, f.src, f.type) == (dst_mac, nh.NETIFS[side][0], 0x0800)
    assert raw(f.payload) == pkt


@pytest.mark.parametrize("side,dst,hop", [
    (LAN, "192.168.4.50", "192.168.4.50"),      # on-link
    (WAN, "198.51.100.7", "198.51.100.7"),      # on-link
    (WAN, SERVER, GW),                          # off-link: the gateway
], ids=["lan_on_link", "wan_on_link", "wan_via_gateway"])
def test_send_resolves_next_hop_with_arp_then_leaves_with_learnt_mac(h, side, dst, hop):
    hop_mac = "02:00:00:00:99:%02x" % int(hop.split(".")[3])
    h.arp_flush(side)
    pkt = raw(IP(src=WAN_ADDR, dst=dst, ttl=63) / UDP(sport=NAT_PORT, dport=53) / b"payload")
    assert h.send(side, pkt) == 0
    assert_arp_request(take_one(h, side), side, hop)
    assert h.tx_free() == h.tx_slots - 1, "lwIP's ARP queue holds the slot"
    h.inject(side, arp_reply(side, hop, hop_mac))
    assert_ipv4_frame(take_one(h, side), side, hop_mac, pkt)
    c = h.counters(side)
    assert (c["sent"], c["tx_errors"]) == (1, 0)
    assert h.tx_free() == h.tx_slots and h.bad_frees() == 0


def test_packets_queued_on_arp_leave_in_order(h):
    h.arp_flush(LAN)
    pkts = [raw(IP(src=SERVER, dst="192.168.4.51", id=i) / UDP()) for i in range(3)]
    assert [h.send(LAN, p) for p in pkts] == [0, 0, 0]
    assert_arp_request(take_one(h, LAN), LAN, "192.168.4.51")
    assert h.tx_free() == h.tx_slots - 3
    h.inject(LAN, arp_reply(LAN, "192.168.4.51", "02:00:00:00:04:51"))
    h.sync()
    frames = [Ether(f) for f in h.take_all(LAN)]
    assert [raw(f.payload) for f in frames] == pkts
    assert all(f.dst == "02:00:00:00:04:51" for f in frames)
    assert h.tx_free() == h.tx_slots


def test_slot_held_for_an_unanswered_arp_comes_back_when_lwip_gives_up(h):
    """lwIP frees a packet queued on a pending ARP entry from its ARP timer after
    ARP_MAXPENDING (5) seconds: the slot must come back through that path too."""
    h.arp_flush(LAN)
    assert h.send(LAN, raw(IP(src=SERVER, dst="192.168.4.52") / UDP())) == 0
    h.sync()
    assert h.tx_free() == h.tx_slots - 1
    deadline = time.monotonic() + 15
    while h.tx_free() != h.tx_slots and time.monotonic() < deadline:
        time.sleep(0.2)
    assert h.tx_free() == h.tx_slots and h.bad_frees() == 0
    frames = [Ether(f) for f in h.take_all(LAN)]
    assert frames and all(ARP in f and f[ARP].pdst == "192.168.4.52" for f in frames), \
        "only ARP requests left; the packet never did"


@pytest.mark.parametrize("dst,mac", [
    ("255.255.255.255", BCAST),
    ("192.168.4.255", BCAST),
    ("224.0.0.251", "01:00:5e:00:00:fb"),
], ids=["limited_broadcast", "directed_broadcast", "multicast"])
def test_send_broadcast_and_multicast_without_arp(h, dst, mac):
    pkt = raw(IP(src=LAN_ADDR, dst=dst) / UDP(sport=5353, dport=5353))
    assert h.send(LAN, pkt) == 0
    assert_ipv4_frame(take_one(h, LAN), LAN, mac, pkt)


def test_send_failures_are_counted_and_free_the_slot(h):
    h.inject(LAN, arp_reply(LAN, HOST, HOST_MAC))
    # LAN has no gateway: an off-link destination has no route
    assert h.send(LAN, raw(IP(src=WAN_ADDR, dst=SERVER) / UDP())) == 0
    # larger than the netif's MTU: fragmenting is the router's job
    h.set_mtu(LAN, 576)
    try:
        assert h.send(LAN, raw(IP(src=SERVER, dst=HOST) / UDP() / bytes(600))) == 0
        h.sync()
    finally:
        h.set_mtu(LAN, 1500)
    assert h.take_all(LAN) == []
    c = h.counters(LAN)
    assert (c["sent"], c["tx_errors"]) == (0, 2)
    assert h.tx_free() == h.tx_slots
    # refused at once: not IPv4, too short, too long, no such link
    ok = raw(IP(src=SERVER, dst=HOST) / UDP())
    assert h.send(LAN, raw(IPv6() / UDP())) == -1
    assert h.send(LAN, ok[:19]) == -1
    assert h.send(LAN, raw(IP(src=SERVER, dst=HOST) / UDP() / bytes(h.mtu))) == -1
    assert h.send(2, ok) == -1
    assert h.counters(LAN) == c


def test_send_never_waits_for_lwip_and_refuses_when_slots_run_out(h):
    """With lwIP's thread stalled on its core lock, natlink_send still returns at once:
    it fills every slot, then refuses and counts; the queue leaves once lwIP runs."""
    h.inject(LAN, arp_reply(LAN, HOST, HOST_MAC))
    h.sync()
    pkts = [raw(IP(src=SERVER, dst=HOST, id=i) / UDP()) for i in range(h.tx_slots + 3)]
    h.core_lock()
    try:
        results = [h.send(LAN, p) for p in pkts]
        free_while_stalled = h.tx_free()
    finally:
        h.core_unlock()
    assert results == [0] * h.tx_slots + [-1] * 3
    assert free_while_stalled == 0
    h.sync()
    frames = [Ether(f) for f in h.take_all(LAN)]
    assert [raw(f.payload) for f in frames] == pkts[:h.tx_slots]
    c = h.counters(LAN)
    assert (c["sent"], c["tx_full"], c["tx_errors"]) == (h.tx_slots, 3, 0)
    assert h.tx_free() == h.tx_slots


# ---------------------------------------------------------------------------
# lwIP keeps serving the board while natlink is installed

def test_lwip_still_answers_arp_and_ping_for_its_own_addresses(h):
    peer, peer_mac = "192.168.4.60", "02:00:00:00:04:60"
    h.inject(LAN, from_lan(ARP(op=1, hwsrc=peer_mac, psrc=peer, pdst=LAN_ADDR), dst=BCAST, src=peer_mac))
    f = take_one(h, LAN)
    assert f.dst == peer_mac and (f[ARP].op, f[ARP].hwsrc, f[ARP].psrc, f[ARP].pdst) == (2, LAN_MAC, LAN_ADDR, peer)
    for side, src, src_mac, me in ((LAN, peer, peer_mac, LAN_ADDR), (WAN, GW, GW_MAC, WAN_ADDR)):
        h.inject(side, Ether(dst=nh.NETIFS[side][0], src=src_mac) / ARP(op=1, hwsrc=src_mac, psrc=src, pdst=me))
        h.sync()
        h.take_all(side)
        # an echo *request*, even with an id in the claimed range: lwIP answers it
        h.inject(side, Ether(dst=nh.NETIFS[side][0], src=src_mac)
                 / IP(src=src, dst=me) / ICMP(type=8, id=NAT_PORT, seq=3) / b"are you there")
        r = take_one(h, side)
        assert r.dst == src_mac and (r[IP].src, r[IP].dst) == (me, src)
        assert (r[ICMP].type, r[ICMP].id, r[ICMP].seq, raw(r[ICMP].payload)) == (0, NAT_PORT, 3, b"are you there")
    assert h.counters(LAN)["claimed"] == h.counters(WAN)["claimed"] == 0


def test_stop_restores_lwip_and_start_validates_its_config(h):
    assert not h.input_is_lwip(LAN) and not h.input_is_lwip(WAN) and h.input_is_lwip(OTHER)
    assert h.start(WAN_ADDR, TCP_RANGES) == -1, "already running"
    assert h.stop() == 0
    assert h.input_is_lwip(LAN) and h.input_is_lwip(WAN) and not h.running()
    h.inject(LAN, from_lan(IP(src=HOST, dst=SERVER) / UDP()))
    assert h.counters(LAN)["claimed"] == 0 and h.pending(LAN) == 0
    assert h.send(LAN, raw(IP(src=SERVER, dst=HOST) / UDP())) == -1
    assert h.start(WAN_ADDR, lan=LAN, wan=LAN) == -1
    assert h.start(WAN_ADDR, tcp=[(1, 2)] * (h.max_ranges + 1)) == -1
    assert h.start(WAN_ADDR, udp=[(10, 9)]) == -1
    assert h.input_is_lwip(LAN) and h.input_is_lwip(WAN)
    assert h.start(WAN_ADDR, TCP_RANGES, UDP_RANGES, ICMP_RANGES) == 0
    assert not h.input_is_lwip(LAN)
    h.inject(LAN, from_lan(IP(src=HOST, dst=SERVER) / UDP()))
    assert h.counters(LAN)["claimed"] == 1
    h.sync()
    assert h.rx_outstanding() == 0


# ---------------------------------------------------------------------------
# An IP-only netif (PPP: lwIP calls ip4_input() itself, natlink's IPv4 input hook first)

PPP, PPP_ADDR, PPP_PEER = nh.PPP, *nh.IP_NETIFS[nh.PPP]


@pytest.fixture
def ppp(h):
    """natlink with the PPP netif as its LAN."""
    h.stop()
    h.sync()
    assert h.start(WAN_ADDR, TCP_RANGES, UDP_RANGES, ICMP_RANGES, lan=PPP, wan=WAN) == 0
    h.sync()
    h.clear()
    yield h


def test_a_ppp_lan_claims_bare_ipv4_packets_and_leaves_its_own_to_lwip(ppp):
    h = ppp
    out = IP(src=PPP_PEER, dst=SERVER) / UDP(sport=4000, dport=53) / b"query"
    h.inject_ip(PPP, raw(out))                      # to forward: claimed, no header to strip
    assert h.recv(LAN) == raw(out)
    ping = IP(src=PPP_PEER, dst=PPP_ADDR) / ICMP(type=8, id=7, seq=1) / b"hi"
    h.inject_ip(PPP, raw(ping))                     # lwIP's own: it answers on the PPP link
    h.sync()
    reply = IP(h.take(PPP))
    assert (reply.src, reply.dst, reply[ICMP].type, reply[ICMP].id) == (PPP_ADDR, PPP_PEER, 0, 7)
    bad = bytearray(raw(out))
    bad[10] ^= 0xFF                                 # a bad header checksum: lwIP's to drop
    h.inject_ip(PPP, bad)
    assert h.recv(LAN) is None
    c = h.counters(LAN)
    assert (c["claimed"], c["passed"]) == (1, 2)
    h.sync()
    assert h.rx_outstanding() == 0


def test_a_ppp_lan_sends_bare_packets_through_its_output(ppp):
    h = ppp
    back = IP(src=SERVER, dst=PPP_PEER) / UDP(sport=53, dport=4000) / b"answer"
    assert h.send(LAN, raw(back)) == 0
    h.sync()
    assert h.take(PPP) == raw(back)                 # no Ethernet header, no ARP
    assert h.counters(LAN)["sent"] == 1 and h.tx_free() == h.tx_slots


# ---------------------------------------------------------------------------
# pbuf accounting under load

def test_both_drivers_at_once_while_the_consumer_forwards_both_ways(h):
    """Two driver threads (LAN, WAN) inject concurrently (each waits for room in its
    ring, so none is dropped); the consumer forwards every claimed packet out of the
    other link. Every packet read leaves, every pbuf and slot comes back."""
    h.inject(LAN, arp_reply(LAN, HOST, HOST_MAC))
    h.inject(WAN, arp_reply(WAN, GW, GW_MAC))
    h.sync()
    h.count_only(LAN, True, HOST_MAC, 0)
    h.count_only(WAN, True, GW_MAC, 0)
    n = 20000
    frames = {LAN: raw(from_lan(IP(src=HOST, dst=SERVER) / UDP(sport=40000, dport=53) / bytes(8))),
              WAN: raw(from_wan(IP(src=SERVER, dst=HOST) / UDP(sport=53, dport=40000) / bytes(8)))}

    def driver(side):
        for _ in range(n):
            while h.pending(side) >= h.rx_slots:    # its ring's only producer: no drop
                time.sleep(0.0001)
            h.inject(side, frames[side])

    threads = [threading.Thread(target=driver, args=(side,)) for side in (LAN, WAN)]
    for t in threads:
        t.start()
    forwarded = {LAN: 0, WAN: 0}
    while any(t.is_alive() for t in threads) or h.pending(LAN) or h.pending(WAN):
        for side, out in ((LAN, WAN), (WAN, LAN)):
            while (p := h.recv(side)) is not None:
                while h.tx_free() == 0:
                    time.sleep(0.0001)
                assert h.send(out, p) == 0
                forwarded[side] += 1
    for t in threads:
        t.join()
    h.sync()
    for side, out in ((LAN, WAN), (WAN, LAN)):
        c = h.counters(side)
        assert (c["claimed"], c["received"], c["rx_drops"]) == (n, n, 0)
        assert forwarded[side] == n
        assert h.counters(out)["sent"] == forwarded[side]
        stats = h.out_stats(out)
        assert stats["ipv4"] == forwarded[side] and stats["mismatches"] == 0
    assert h.rx_outstanding() == 0
    assert h.tx_free() == h.tx_slots and h.bad_frees() == 0


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_million_packets_through_the_ring_and_out_free_every_pbuf(h):
    """A driver thread feeds the WAN netif in bursts; the consumer sleeps on the
    eventfd (woken exactly once per burst: the ring starts each burst empty), reads
    each claimed packet and sends it out through the LAN netif; lwIP's thread frames
    it. Every 1000th frame is a ping for lwIP itself. Debian builds lwIP with
    LWIP_STATS 0 and MEMP_MEM_MALLOC (no pools to count), so pbufs are counted where
    they are made: the driver's custom pbufs (allocs vs frees) and natlink's TX slots,
    the only pbufs on the forwarding path; RSS catches anything else that leaks."""
    h.inject(LAN, arp_reply(LAN, HOST, HOST_MAC))
    h.inject(WAN, arp_reply(WAN, GW, GW_MAC))
    h.sync()
    n, every = 1_000_000, 1000
    fwd = from_wan(IP(src=SERVER, dst=HOST) / UDP(sport=53, dport=40000) / bytes(18))
    ping = from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=8, id=7) / b"ping")
    h.count_only(LAN, True, HOST_MAC, 14 + len(raw(fwd[IP])))
    h.count_only(WAN, True)
    allocs0, rss0 = h.rx_allocs(), _rss()
    w0, l0 = h.counters(WAN), h.counters(LAN)
    rc, r = h.pump(n, fwd, ping, every)
    h.sync()
    lan_out, wan_out = h.out_stats(LAN), h.out_stats(WAN)
    cw = {k: v - w0[k] for k, v in h.counters(WAN).items()}
    cl = {k: v - l0[k] for k, v in h.counters(LAN).items()}
    assert rc == 0, r
    assert r["lost_wakeups"] == r["odd_wakeups"] == 0, "each burst must wake the consumer once"
    assert h.rx_allocs() - allocs0 == n + n // every
    assert h.rx_outstanding() == 0, "driver pbufs not freed"
    assert h.tx_free() == h.tx_slots and h.bad_frees() == 0, "TX slots not returned once each"
    assert (cw["claimed"], cw["received"], cw["rx_drops"], cw["passed"]) == (n, n, 0, n // every)
    assert (cl["sent"], cl["tx_errors"], cl["tx_full"]) == (n, 0, 0)
    assert lan_out["ipv4"] == n and lan_out["mismatches"] == 0
    assert wan_out["ipv4"] == n // every, "lwIP answered every ping"
    assert _rss() - rss0 < 32 << 20
