"""Adversarial review of the engine (firmware/nat/): corners the contract, property and
fuzz suites leave out. scapy is the oracle for every expected byte; cases that need
MicroPython to show live in host_tests/upy/review_cases.py and run here on the unix port
(viper core and pure twin) and the 32-bit WASI build."""
import re
import sys

import pytest
from hypothesis import given, strategies as st
from scapy.layers.inet import ICMP

import nat
from runtimes import UPY_TESTS, MicroPythonError, run_unix, run_wasi

# The scripts of upy/ import each other by plain name, as on MicroPython.
if str(UPY_TESTS) not in sys.path:
    sys.path.insert(0, str(UPY_TESTS))
import review_cases  # noqa: E402
from oracle import (PROPERTY, assert_refused, assert_translates, engine,  # noqa: F401
                    establish, icmp_error, icmp_query, new_packet, new_table, parsed,
                    quote_of, rewritten, sum16, tcp_packet, udp_packet, wire,
                    word_for_zero_checksum)

L = "192.168.4.2"
W = "203.0.113.7"
X = "198.51.100.10"
R = "198.51.100.1"
C, F, RI = "198.51.100.77", "192.168.4.20", "192.168.4.1"


@pytest.fixture
def table():
    return new_table(tcp=8, udp=8, icmp=8)


def _sent(pkt, port, ttl=3):
    """What the router sent for inside packet `pkt` (translated to W:port), `ttl` later."""
    if ICMP in pkt:
        return rewritten(pkt, src=W, ident=port, ttl=ttl)
    return rewritten(pkt, src=W, sport=port, ttl=ttl)


def _extension():
    """An RFC 4884 extension structure: version 2, its checksum, one 8-byte object."""
    ext = bytearray(b"\x20\x00\x00\x00" + b"\x00\x08\x01\x01" + b"\xde\xad\xbe\xef")
    c = 0xFFFF - sum16(ext)
    ext[2:4] = c.to_bytes(2, "big")
    return bytes(ext)


def _inside(kind):
    if kind == "tcp":
        return tcp_packet(L, 40000, X, 443, b"payload" * 3)
    if kind == "udp":
        return udp_packet(L, 5353, X, 53, b"payload" * 3)
    return icmp_query(L, X, 0x0101, payload=b"payload" * 3)


# ---------------------------------------------------------------- RFC 4884


@pytest.mark.parametrize("icmp_type, code", [(3, 3), (11, 0), (12, 0)])
@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp"])
def test_rfc4884_extension_is_left_alone(table, kind, icmp_type, code):
    """A quote zero-padded to 128 bytes, length=32 words, then an extension structure:
    the quote is translated back, the extension is not touched (RFC 5508 REQ-3)."""
    pkt = _inside(kind)
    establish(table, pkt, W, 61000)
    sent, restored = _sent(pkt, 61000), rewritten(pkt, ttl=3)
    pad = lambda q: bytes(q).ljust(128, b"\0")                                  # noqa: E731
    err = icmp_error(R, W, icmp_type, code, pad(sent) + _extension(), ttl=30, length=32)
    want = icmp_error(R, L, icmp_type, code, pad(restored) + _extension(), ttl=29, length=32)
    assert bytes(err)[25] == 32
    assert_translates(table, err, want)


def test_rfc4884_length_ends_the_quote_before_the_tcp_checksum(table):
    """length=7 words: the quote is an IP header and 8 bytes; what follows is extension
    data, and the bytes where the TCP checksum would be must not be rewritten."""
    pkt = _inside("tcp")
    establish(table, pkt, W, 61000)
    sent, restored = bytes(_sent(pkt, 61000)), bytes(rewritten(pkt, ttl=3))
    tail = sent[28:]                       # not quote any more: it stays as it was
    err = icmp_error(R, W, 11, 0, sent[:28] + tail, ttl=30, length=7)
    want = icmp_error(R, L, 11, 0, restored[:28] + tail, ttl=29, length=7)
    assert_translates(table, err, want)


def test_rfc4884_length_beyond_the_message_is_malformed(table):
    pkt = _inside("udp")
    establish(table, pkt, W, 61000)
    quote = bytes(_sent(pkt, 61000))
    words = (len(quote) + 3) // 4 + 1     # one word more than the message holds
    assert_refused(table, icmp_error(R, W, 3, 3, quote, length=words), nat.MALFORMED)


def test_rfc4884_length_is_ignored_for_types_without_it(table):
    # Source quench (4) and redirect (5) have no length field; byte 5 is not one.
    pkt = _inside("udp")
    establish(table, pkt, W, 61000)
    sent, restored = _sent(pkt, 61000), rewritten(pkt, ttl=3)
    err = icmp_error(R, W, 5, 1, quote_of(sent), gw="0.255.0.7")   # byte 5 = 0xFF
    assert bytes(err)[25] == 0xFF
    want = icmp_error(R, L, 5, 1, quote_of(restored), ttl=63, gw="0.255.0.7")
    assert_translates(table, err, want)


# ---------------------------------------------------------------- quotes cut short


def test_quote_cutting_the_tcp_checksum_in_half(table):
    """A quote that ends in the middle of the TCP checksum: everything that is whole is
    translated back; the half checksum byte is left as it came (it cannot be updated
    without the other half), and the ICMP checksum stays right."""
    pkt = _inside("tcp")
    establish(table, pkt, W, 61000)
    sent, restored = bytes(_sent(pkt, 61000)), bytes(rewritten(pkt, ttl=3))
    cut = 20 + 17
    assert sent[36] != restored[36]        # the half checksum byte differs
    err = icmp_error(R, W, 3, 3, sent[:cut], ttl=30)
    want = icmp_error(R, L, 3, 3, restored[:cut - 1] + sent[cut - 1:cut], ttl=29)
    assert_translates(table, err, want)


def test_quoted_udp_whose_checksum_computes_to_zero_comes_back_as_ffff(table):
    # The inside host sent 0xFFFF (RFC 768); the quote must read exactly that again.
    establish(table, udp_packet(L, 5353, X, 53), W, 61000)
    pkt = udp_packet(L, 5353, X, 53, word_for_zero_checksum(udp_packet(L, 5353, X, 53, b"\0\0")))
    assert bytes(pkt)[26:28] == b"\xff\xff"
    sent = bytes(_sent(pkt, 61000))
    assert sent[26:28] not in (b"\0\0", b"\xff\xff")
    err = icmp_error(R, W, 3, 3, sent, ttl=30)
    want = icmp_error(R, L, 3, 3, bytes(rewritten(pkt, ttl=3)), ttl=29)
    assert bytes(want)[28 + 26:28 + 28] == b"\xff\xff"
    assert_translates(table, err, want)


# ---------------------------------------------------------------- wrong checksums in


def _residual(buf):
    """The transport checksum's residual: the one's complement sum over pseudo-header
    (TCP/UDP) and segment, mod 0xFFFF. 0 for a right checksum; a wrong one keeps its
    error through an RFC 1624 update."""
    hl = (buf[0] & 15) * 4
    tl = int.from_bytes(buf[2:4], "big")
    seg = bytes(buf[hl:tl])
    if buf[9] == 1:
        return sum16(seg) % 0xFFFF
    pseudo = bytes(buf[12:20]) + bytes([0, buf[9]]) + len(seg).to_bytes(2, "big")
    return sum16(pseudo + seg) % 0xFFFF


@PROPERTY
@given(kind=st.sampled_from(["tcp", "udp", "icmp"]), error=st.integers(1, 0xFFFE),
       direction=st.sampled_from(["out", "in"]), payload=st.binary(max_size=21))
def test_a_wrong_transport_checksum_stays_exactly_as_wrong(kind, error, direction, payload):
    """The engine neither repairs nor hides a corrupt TCP/UDP/ICMP checksum: the error
    a packet came with is the error it leaves with (a receiver still drops it)."""
    t = new_table(tcp=2, udp=2, icmp=2)
    establish(t, _inside(kind), W, 61000)
    if direction == "out":
        pkt = {"tcp": lambda: tcp_packet(L, 40000, X, 443, payload),
               "udp": lambda: udp_packet(L, 5353, X, 53, payload),
               "icmp": lambda: icmp_query(L, X, 0x0101, payload=payload)}[kind]()
    else:
        pkt = {"tcp": lambda: tcp_packet(X, 443, W, 61000, payload),
               "udp": lambda: udp_packet(X, 53, W, 61000, payload),
               "icmp": lambda: icmp_query(X, W, 61000, icmp_type=0, payload=payload)}[kind]()
    buf = wire(pkt)
    at = 20 + {"tcp": 16, "udp": 6, "icmp": 2}[kind]
    old = int.from_bytes(buf[at:at + 2], "big")
    bad = old ^ error
    if kind == "udp" and bad == 0:
        bad = 1   # 0 would mean "no checksum"
    buf[at:at + 2] = bad.to_bytes(2, "big")
    before = _residual(buf)
    assert before != 0
    p = parsed(buf)
    assert t.translate(p) == nat.OK
    assert _residual(buf) == before


# ---------------------------------------------------------------- Packet and translate


def test_attributes_after_malformed_describe_nothing():
    """After a MALFORMED parse, no attribute still describes the previous packet."""
    p = new_packet()
    assert p.parse(wire(tcp_packet(L, 40000, X, 443))) == nat.OK
    bad = wire(udp_packet(L, 1, X, 2))
    bad[10] ^= 0xFF
    assert p.parse(bad) == nat.MALFORMED
    names = ("src", "dst", "proto", "ttl", "length", "sport", "dport", "icmp_type", "icmp_code")
    assert [getattr(p, n) for n in names] == [None] * len(names)
    assert new_table(tcp=1, udp=1, icmp=1).translate(p) == nat.MALFORMED


@pytest.mark.parametrize("kind", ["tcp", "udp", "icmp", "error"])
def test_translate_called_twice(table, kind):
    """The second translate of the same Packet looks the rewritten packet up: no flow
    is keyed that way, so it is UNTRANSLATED and changes neither buffer nor attributes."""
    pkt = _inside("udp" if kind == "error" else kind)
    establish(table, pkt, W, 61000)
    if kind == "error":
        pkt = icmp_error(R, W, 3, 3, bytes(_sent(pkt, 61000)), ttl=30)
    buf = wire(pkt)
    p = parsed(buf)
    assert table.translate(p) == nat.OK
    once = bytes(buf)
    attrs = (p.src, p.dst, p.ttl, p.sport, p.dport, p.icmp_type)
    assert table.translate(p) == nat.UNTRANSLATED
    assert bytes(buf) == once
    assert (p.src, p.dst, p.ttl, p.sport, p.dport, p.icmp_type) == attrs


def test_readonly_buffer_is_never_written():
    """CPython side of review_cases.case_readonly_buffer_is_never_written."""
    review_cases.case_readonly_buffer_is_never_written()


# ---------------------------------------------------------------- LRU model


op = st.tuples(st.sampled_from(review_cases.OPS), st.integers(0, 3), st.integers(0, 2))


@PROPERTY
@given(ops=st.lists(op, max_size=40), cap=st.integers(1, 4))
def test_expiry_room_and_chains_follow_a_model(engine, ops, cap):
    """add / translate both ways / ICMP errors / remove_connections / reset / waiting /
    expire() against a plain model: statuses, which flow makes room in a full table,
    count(), flows(), and the index invariants after every step."""
    from test_engine_layout import check_invariants
    review_cases.PURE[0] = engine == "pure"
    try:
        review_cases.run_model(ops, cap, check=lambda t: check_invariants(t.mems[2], t.heads[2]))
    finally:
        review_cases.PURE[0] = False


@pytest.mark.parametrize("broken", ["never expires", "never answered"])
def test_room_model_can_fail(monkeypatch, broken):
    # A translate that lets expired flows through, or a room that evicts answered flows
    # first, must be caught by the model.
    if broken == "never expires":
        monkeypatch.setattr(nat.core.python, "timeout", lambda mem, state: 60000)
        ops = [("add", 0, 0), ("wait", 0, 5), ("out", 0, 0)]
    else:
        monkeypatch.setattr(nat.room, "_ST_ANSWERED", 0x8000)
        ops = [("add", 0, 0), ("in", 0, 0), ("add", 2, 1), ("add", 1, 2)]
    review_cases.PURE[0] = True
    try:
        with pytest.raises(AssertionError):
            review_cases.run_model(ops, 2)
    finally:
        review_cases.PURE[0] = False


# ---------------------------------------------------------------- MicroPython


RESULT = re.compile(r"REVIEW_CASES passed=(\d+) failed=(\d+) pure=(\d)")


def _assert_review_cases_pass(out, runs):
    found = RESULT.findall(out)
    assert len(found) == runs, out
    for passed, failed, _ in found:
        assert (int(passed), int(failed)) == (len(review_cases.CASES), 0), out


def _run(runner, code):
    """stdout of `code`; a failing case prints a traceback, which the runners raise on."""
    try:
        return runner(code)
    except MicroPythonError as e:
        return str(e)


def _fast_only(engine):
    # These run MicroPython themselves; the `engine` fixture's pure pass adds nothing.
    if engine == "pure":
        pytest.skip("MicroPython runs are made once, under the fast engine")


@pytest.mark.parametrize("pure", [False, True], ids=["viper", "pure"])
def test_review_cases_unix(engine, pure):
    _fast_only(engine)
    code = "import review_cases\nreview_cases.run_all(%s)" % pure
    _assert_review_cases_pass(_run(run_unix, code), 1)


def test_review_cases_wasi(engine):
    _fast_only(engine)
    _assert_review_cases_pass(_run(run_wasi, "import review_cases\nreview_cases.run_all()"), 1)


def test_review_cases_can_fail(engine):
    _fast_only(engine)
    out = _run(run_unix, "import review_cases\n"
               "def broken():\n    assert 1 == 2, 'expected failure'\n"
               "review_cases.CASES = (broken,)\nreview_cases.run_all()")
    assert "FAIL broken" in out and "passed=0 failed=1" in out
