"""tools/dictnat.py, the benchmark's baseline, is a real NAT: its translations match
scapy's rebuild of the expected packet byte for byte, on CPython and on the unix port."""
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import dictnat
import nat
from oracle import (PROPERTY, PortGen, first_fragment, hexdiff, icmp_error, icmp_query,
                    ip_options, quote_of, rewritten, tcp_packet, udp_packet, wire,
                    word_for_zero_checksum)
from runtimes import run_unix, unix_binary

INSIDE, REMOTE, XL = "192.168.4.2", "198.51.100.7", "203.0.113.1"


def ip(a):
    return nat.ip(a)


def parsed(pkt):
    p = dictnat.Packet()
    assert p.parse(wire(pkt)) == dictnat.OK
    return p


def add(table, pkt, port, **kw):
    return table.add(parsed(pkt), ip(XL), PortGen(port), **kw)


def translated(table, pkt):
    buf = wire(pkt)
    p = dictnat.Packet()
    assert p.parse(buf) == dictnat.OK
    return table.translate(p), buf, p


def assert_translates(table, pkt, expected):
    status, buf, p = translated(table, pkt)
    assert status == dictnat.OK
    assert buf == wire(expected), hexdiff(buf, wire(expected))
    return p


def assert_refused(table, pkt, status):
    got, buf, _ = translated(table, pkt)
    assert got == status
    assert buf == wire(pkt), hexdiff(buf, wire(pkt))


def check_round_trip(out, reply, xl_port, ttl):
    """`out` leaves as XL:xl_port; `reply`, the far end's answer to that, comes back to
    the inside host. Both as scapy rebuilds them."""
    t = dictnat.Table(tcp=4, udp=4, icmp=4)
    assert add(t, out, xl_port) == dictnat.OK
    p = assert_translates(t, out, rewritten(out, src=XL, sport=xl_port, ttl=ttl - 1))
    assert (p.src, p.sport, p.ttl) == (ip(XL), xl_port, ttl - 1)
    assert_translates(t, reply, rewritten(reply, dst=INSIDE, dport=out.sport, ttl=ttl - 1))


@PROPERTY
@given(sport=st.integers(1, 65535), dport=st.integers(1, 65535), xl_port=st.integers(1, 65535),
       ttl=st.integers(2, 255), payload=st.binary(max_size=64), options=st.integers(0, 3),
       udp=st.booleans())
def test_tcp_and_udp_match_scapy(sport, dport, xl_port, ttl, payload, options, udp):
    make = udp_packet if udp else tcp_packet
    kw = dict(ttl=ttl, options=ip_options(options))
    out = make(INSIDE, sport, REMOTE, dport, payload, **kw)
    reply = make(REMOTE, dport, XL, xl_port, payload[::-1], **kw)
    check_round_trip(out, reply, xl_port, ttl)


@PROPERTY
@given(ident=st.integers(0, 65535), xl_id=st.integers(0, 65535), ttl=st.integers(2, 255),
       payload=st.binary(max_size=64), kind=st.sampled_from([(8, 0), (13, 14), (17, 18)]))
def test_icmp_queries_match_scapy(ident, xl_id, ttl, payload, kind):
    out = icmp_query(INSIDE, REMOTE, ident, icmp_type=kind[0], payload=payload, ttl=ttl)
    reply = icmp_query(REMOTE, XL, xl_id, icmp_type=kind[1], payload=payload, ttl=ttl)
    t = dictnat.Table()
    assert add(t, out, xl_id) == dictnat.OK
    assert_translates(t, out, rewritten(out, src=XL, ident=xl_id, ttl=ttl - 1))
    assert_translates(t, reply, rewritten(reply, dst=INSIDE, ident=ident, ttl=ttl - 1))


def test_udp_without_checksum_stays_without():
    out = udp_packet(INSIDE, 5353, REMOTE, 53, b"query", checksum=False)
    reply = udp_packet(REMOTE, 53, XL, 40000, b"answer", checksum=False)
    check_round_trip(out, reply, 40000, 64)


def test_udp_checksum_computing_to_zero_is_sent_as_all_ones():
    # Choose the payload word that makes the *translated* packet's sum all ones.
    want = udp_packet(XL, 40000, REMOTE, 53, b"\0\0")
    payload = word_for_zero_checksum(want)
    out = udp_packet(INSIDE, 5353, REMOTE, 53, payload)
    t = dictnat.Table()
    assert add(t, out, 40000) == dictnat.OK
    status, buf, _ = translated(t, out)
    assert status == dictnat.OK and buf[26:28] == b"\xff\xff"
    assert buf == wire(rewritten(out, src=XL, sport=40000, ttl=63))


def test_redirect():
    out = tcp_packet(INSIDE, 40001, REMOTE, 80, b"GET /")
    t = dictnat.Table()
    status = t.add(parsed(out), ip(XL), PortGen(41000), dictnat.REDIRECT,
                   redirect=(ip("10.1.2.3"), 8080))
    assert status == dictnat.OK
    assert_translates(t, out, rewritten(out, src=XL, sport=41000, dst="10.1.2.3", dport=8080,
                                        ttl=63))
    reply = tcp_packet("10.1.2.3", 8080, XL, 41000, b"200 OK")
    assert_translates(t, reply, rewritten(reply, src=REMOTE, sport=80, dst=INSIDE,
                                          dport=40001, ttl=63))


def test_refusals_leave_the_buffer_untouched():
    out = tcp_packet(INSIDE, 40000, REMOTE, 443)
    t = dictnat.Table()
    assert_refused(t, out, dictnat.UNTRANSLATED)  # no flow yet
    assert add(t, out, 50000) == dictnat.OK
    assert_refused(t, tcp_packet(INSIDE, 40000, REMOTE, 444), dictnat.UNTRANSLATED)
    assert_refused(t, udp_packet(INSIDE, 40000, REMOTE, 443), dictnat.UNTRANSLATED)
    assert_refused(t, tcp_packet(INSIDE, 40000, REMOTE, 443, ttl=1), dictnat.TTL_EXCEEDED)
    # Outside its limits: fragments and ICMP errors.
    assert_refused(t, first_fragment(tcp_packet(INSIDE, 40000, REMOTE, 443, b"x" * 40), 24),
                   dictnat.UNTRANSLATED)
    error = icmp_error(REMOTE, XL, 3, 3, quote_of(rewritten(out, src=XL, sport=50000)))
    assert_refused(t, error, dictnat.UNTRANSLATED)


@pytest.mark.parametrize("damage", ["version", "ihl", "length", "checksum", "tcp_offset",
                                    "short"])
def test_malformed(damage):
    buf = wire(tcp_packet(INSIDE, 40000, REMOTE, 443, b"data"))
    n = len(buf)
    if damage == "version":
        buf[0] = 0x65
    elif damage == "ihl":
        buf[0] = 0x44
    elif damage == "length":
        n -= 1
    elif damage == "checksum":
        buf[10] ^= 1
    elif damage == "tcp_offset":
        buf[32] = 0x40
    else:
        n = 19
    assert dictnat.Packet().parse(buf, n) == dictnat.MALFORMED


@pytest.mark.parametrize("pkt", [
    tcp_packet("127.0.0.1", 1, REMOTE, 2),
    udp_packet(INSIDE, 1, "224.0.0.251", 5353),
    udp_packet(INSIDE, 68, "255.255.255.255", 67),
    udp_packet("169.254.1.1", 1, REMOTE, 2),
    icmp_query(INSIDE, REMOTE, 7, icmp_type=3),  # an unreachable, not a query
    tcp_packet(INSIDE, 1, REMOTE, 2, proto=47),  # GRE
])
def test_cannot_nat(pkt):
    assert add(dictnat.Table(), pkt, 50000) == dictnat.CANNOT_NAT


def test_overlap_and_re_add():
    t = dictnat.Table()
    a = tcp_packet(INSIDE, 40000, REMOTE, 443)
    assert add(t, a, 50000) == dictnat.OK
    assert add(t, a, 50001) == dictnat.OK             # exactly this flow: OK, no new flow
    assert t.count(dictnat.TCP) == 1
    assert t.add(parsed(a), ip("203.0.113.2"), PortGen(50001)) == dictnat.OVERLAP
    b = tcp_packet("192.168.4.3", 40000, REMOTE, 443)
    gen = PortGen(repeat=50000)                        # always the taken port
    assert t.add(parsed(b), ip(XL), gen) == dictnat.OVERLAP
    assert gen.calls == dictnat.MAX_TRIES
    assert t.add(parsed(b), ip(XL), PortGen()) == dictnat.OVERLAP   # port_gen gave None
    assert add(t, b, 50000 + 1) == dictnat.OK


def test_a_full_table_reuses_the_least_recently_used_flow():
    t = dictnat.Table(tcp=2)
    flows = [tcp_packet(INSIDE, 40000 + i, REMOTE, 443) for i in range(3)]
    assert add(t, flows[0], 50000) == dictnat.OK
    assert add(t, flows[1], 50001) == dictnat.OK
    assert translated(t, flows[0])[0] == dictnat.OK    # flow 1 is now the oldest
    assert add(t, flows[2], 50002) == dictnat.OK
    assert t.count(dictnat.TCP) == 2
    assert translated(t, flows[0])[0] == dictnat.OK
    assert translated(t, flows[1])[0] == dictnat.UNTRANSLATED
    assert translated(t, tcp_packet(REMOTE, 443, XL, 50001))[0] == dictnat.UNTRANSLATED
    assert translated(t, tcp_packet(REMOTE, 443, XL, 50002))[0] == dictnat.OK


UPY_SCRIPT = """
import binascii
import dictnat
t = dictnat.Table()
p = dictnat.Packet()
for out, reply, port in CASES:
    out, reply = bytearray(out), bytearray(reply)
    assert p.parse(out) == 0
    assert t.add(p, XL, lambda: port) == 0
    for buf in (out, reply):
        assert p.parse(buf) == 0
        print(t.translate(p), binascii.hexlify(buf).decode())
"""


def test_same_bytes_on_the_unix_port():
    if unix_binary() is None:
        pytest.skip("the MicroPython unix port is not installed")
    cases = [
        (tcp_packet(INSIDE, 40000, REMOTE, 443, b"x" * 1001),
         tcp_packet(REMOTE, 443, XL, 50000, b"y"), 50000),
        (udp_packet(INSIDE, 5353, REMOTE, 53, b"q" * 33),
         udp_packet(REMOTE, 53, XL, 50001, b"a"), 50001),
        (icmp_query(INSIDE, REMOTE, 7, payload=b"p"),
         icmp_query(REMOTE, XL, 50002, icmp_type=0), 50002),
    ]
    raw = [(bytes(o), bytes(r), port) for o, r, port in cases]
    code = "CASES = %r\nXL = %d\n%s" % (raw, ip(XL), UPY_SCRIPT)
    got = run_unix(code, path=(Path(dictnat.__file__).parent,)).split()
    want = []
    t = dictnat.Table()
    for out, reply, port in cases:
        assert add(t, out, port) == dictnat.OK
        for pkt in (out, reply):
            status, buf, _ = translated(t, pkt)
            want += [str(status), buf.hex()]
    assert got == want
