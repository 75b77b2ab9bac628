"""Fuzz: mutated packets of established flows, ICMP errors quoting garbage, random bytes.
parse and translate never raise, return only defined status codes, leave the buffer
untouched unless translate returned OK, and a translation keeps valid checksums valid."""
import random

from hypothesis import given, strategies as st
from scapy.layers.inet import ICMP

import nat
from oracle import (ERROR_KINDS, PROPERTY, engine, establish, first_fragment,  # noqa: F401
                    fix_ip_checksum, icmp_error, icmp_query, ip_options, new_packet, new_table,
                    quote_of, rewritten, sum16, tcp_packet, udp_packet, wire)

L, L2, F, RI = "192.168.4.2", "192.168.4.3", "192.168.4.20", "192.168.4.1"
W, X, C, R = "203.0.113.7", "198.51.100.10", "198.51.100.77", "198.51.100.1"

PARSE_STATUSES = {nat.OK, nat.MALFORMED}
# Choice: translate may also answer MALFORMED (e.g. an ICMP error whose quote is bad);
# it is a defined status code, and the buffer must then be untouched too.
TRANSLATE_STATUSES = {nat.OK, nat.UNTRANSLATED, nat.TTL_EXCEEDED, nat.MALFORMED}
ERROR_TYPES = (3, 4, 5, 11, 12)


# (packet reaching the router, translated port, mode, redirect target)
FLOWS = [
    (tcp_packet(L, 40000, X, 443, b"GET / HTTP/1.0\r\n",
                tcp_options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]), 61000,
     nat.NAT, None),
    (udp_packet(L, 5353, X, 53, b"\x12\x34query"), 61001, nat.NAT, None),
    (udp_packet(L2, 5353, X, 53, b"nocsum", checksum=False), 61002, nat.NAT, None),
    (icmp_query(L, X, 0x0101, payload=b"ping" * 4, options=ip_options(2)), 0x2222,
     nat.NAT, None),
    (tcp_packet(C, 51000, W, 80, b"hello"), 62000, nat.REDIRECT, (F, 8080)),
    (udp_packet(C, 51000, W, 69, b"tftp", options=ip_options(1)), 62001, nat.REDIRECT,
     (F, 69)),
]


def _xl(mode):
    return W if mode == nat.NAT else RI


def _corpus():
    """Packets that hit the flows: both directions, IP and TCP options, a first
    fragment, TTL 1, ICMP errors quoting them in full and truncated."""
    corpus = []
    for pkt, port, mode, redirect in FLOWS:
        xl = _xl(mode)
        target = {"dst": redirect[0], "dport": redirect[1]} if redirect else {}
        left = rewritten(pkt, src=xl, sport=port, ttl=pkt.ttl - 1, **target)
        reply = rewritten(left, src=left.dst, dst=left.src, sport=_dport(left),
                          dport=_sport(left))
        if ICMP in reply:
            reply[ICMP].type = 0
        corpus += [pkt, reply, rewritten(pkt, ttl=1)]
        if pkt.proto == 17:
            corpus.append(first_fragment(pkt, 8))
        elif pkt.proto == 6:   # the whole TCP header, rounded up to 8 bytes
            corpus.append(first_fragment(pkt, ((bytes(pkt.payload)[12] >> 4) * 4 + 7) // 8 * 8))
        for icmp_type, code, fields in ERROR_KINDS[::3]:
            for how in (None, "short"):
                corpus.append(icmp_error(R, xl, icmp_type, code, quote_of(left, how), **fields))
        corpus.append(icmp_error(R, xl, 11, 0, quote_of(left, (bytes(left)[0] & 15) * 4 + 12)))
    return [bytes(p) for p in corpus]


def _sport(p):
    return p[ICMP].id if ICMP in p else p.payload.sport


def _dport(p):
    return p[ICMP].id if ICMP in p else p.payload.dport


CORPUS = _corpus()
_tables = {}


def table(engine):
    """The table of core `engine` holding FLOWS (made once per core)."""
    if engine not in _tables:
        t = new_table(tcp=8, udp=8, icmp=8)
        for pkt, port, mode, redirect in FLOWS:
            establish(t, pkt, _xl(mode), port, mode, redirect)
        _tables[engine] = t
    return _tables[engine]


# ---------------------------------------------------------------- checksum validity


def _l4_valid(buf, n):
    """Whether the packet's transport checksum verifies; None when it cannot be told
    (malformed, fragment, other protocol)."""
    if n < 20 or buf[0] >> 4 != 4:
        return None
    hl = (buf[0] & 15) * 4
    tl = buf[2] << 8 | buf[3]
    if hl < 20 or tl < hl + 8 or tl > n or (buf[6] & 0x3F) | buf[7]:
        return None
    seg = bytes(buf[hl:tl])
    proto = buf[9]
    if proto == 1:
        return sum16(seg) == 0xFFFF
    if proto not in (6, 17):
        return None
    if proto == 17 and seg[6:8] == b"\0\0":
        return True
    pseudo = bytes(buf[12:20]) + bytes([0, proto]) + len(seg).to_bytes(2, "big")
    return sum16(pseudo + seg) == 0xFFFF


def _inner_ip_valid(buf, n):
    """For an ICMP error: whether the quoted IPv4 header's checksum verifies, else None."""
    if _l4_valid(buf, n) is None or buf[9] != 1:
        return None
    at = (buf[0] & 15) * 4 + 8
    tl = buf[2] << 8 | buf[3]
    if buf[at - 8] not in ERROR_TYPES or at + 20 > tl:
        return None
    ihl = (buf[at] & 15) * 4
    if ihl < 20 or at + ihl > tl:
        return None
    return sum16(bytes(buf[at:at + ihl])) == 0xFFFF


# ---------------------------------------------------------------- the check


def check(table, packet, buf, n):
    """Parse and translate buf[:n], placed between guard bytes and seen through a
    memoryview, and check every invariant."""
    frame = bytearray(b"\xC5" * 5) + buf + bytearray(b"\x5C" * 7)
    view = memoryview(frame)[5:5 + len(buf)]
    status = packet.parse(view, n)
    assert status in PARSE_STATUSES
    before = bytes(frame)
    if status != nat.OK:
        # Choice (not in the contract): translating an unparsed packet does nothing.
        assert table.translate(packet) != nat.OK
        assert bytes(frame) == before
        return status, None
    ttl, length = packet.ttl, packet.length
    l4 = _l4_valid(view, n)
    inner = _inner_ip_valid(view, n)
    result = table.translate(packet)
    assert result in TRANSLATE_STATUSES, result
    if result != nat.OK:
        assert bytes(frame) == before, "status %s changed the buffer" % nat.status_name(result)
        return status, result
    assert frame[:5] == before[:5] and frame[5 + n:] == before[5 + n:], "wrote beyond n"
    assert (packet.ttl, packet.length) == (ttl - 1, length)
    again = new_packet()
    assert again.parse(view, n) == nat.OK, "the translated IP header no longer verifies"
    assert again.ttl == ttl - 1
    if l4:
        assert _l4_valid(view, n), "a valid transport/ICMP checksum became invalid"
    if inner:
        assert _inner_ip_valid(view, n), "a valid quoted IP header checksum became invalid"
    return status, result


# ---------------------------------------------------------------- mutations


def _set16(buf, at, v):
    if at + 1 < len(buf):
        buf[at] = v >> 8 & 0xFF
        buf[at + 1] = v & 0xFF


def _fix_icmp(buf):
    """Make the (outer) ICMP checksum verify, so a mutated quote is looked at."""
    if len(buf) < 28 or buf[9] != 1:
        return
    hl = (buf[0] & 15) * 4
    tl = min(buf[2] << 8 | buf[3], len(buf))
    if hl < 20 or hl + 4 > tl:
        return
    _set16(buf, hl + 2, 0)
    _set16(buf, hl + 2, 0xFFFF - sum16(bytes(buf[hl:tl])))


def _fix_inner(buf):
    hl = (buf[0] & 15) * 4 if buf else 0
    if hl >= 20 and len(buf) >= hl + 28:
        fix_ip_checksum(buf, hl + 8)


def mutate(buf, op, a, b):
    """Apply one mutation; `a` and `b` are random numbers it interprets."""
    size = len(buf)
    if op == "byte" and size:
        buf[a % size] = b & 0xFF
    elif op == "flip" and size:
        buf[a % size] ^= 1 << (b % 8)
    elif op == "total_length":
        _set16(buf, 2, b & 0xFFFF if a % 3 == 0 else max(0, size + (b % 9) - 4))
    elif op == "ihl" and size:
        buf[0] = (buf[0] & 0xF0) | (b & 15)
    elif op == "version" and size:
        buf[0] = ((b & 15) << 4) | (buf[0] & 15)
    elif op == "ttl" and size > 8:
        buf[8] = b % 3
    elif op == "checksum":
        _set16(buf, 10, b & 0xFFFF)
    elif op == "frag" and size > 7:
        _set16(buf, 6, b & 0x3FFF)
    elif op == "truncate":
        del buf[a % (size + 1):]
    elif op == "extend":
        buf += bytes((a + i * b) & 0xFF for i in range(b % 40))
    elif op == "garbage_quote" and size > 28:
        hl = max(20, (buf[0] & 15) * 4)
        rng = random.Random(a)
        for i in range(hl + 8, size):
            if rng.random() < 0.3:
                buf[i] = rng.randrange(256)
    elif op == "fix_ip" and size >= 20:
        fix_ip_checksum(buf)
    elif op == "fix_icmp":
        _fix_icmp(buf)
    elif op == "fix_inner":
        _fix_inner(buf)
    return buf


OPS = ("byte", "flip", "total_length", "ihl", "version", "ttl", "checksum", "frag", "truncate",
       "extend", "garbage_quote", "fix_ip", "fix_icmp", "fix_inner")

mutation = st.tuples(st.sampled_from(OPS), st.integers(0, 2**16), st.integers(0, 2**16))


@PROPERTY
@given(base=st.integers(0, len(CORPUS) - 1), ops=st.lists(mutation, max_size=6),
       fix=st.sampled_from(["none", "ip", "all"]), short=st.integers(0, 8))
def test_mutated_packets_of_known_flows(engine, base, ops, fix, short):
    buf = bytearray(CORPUS[base])
    for op in ops:
        mutate(buf, *op)
    if fix == "all":   # quote first, then ICMP, then the outer header: each covers the last
        _fix_inner(buf)
        _fix_icmp(buf)
    if fix != "none" and len(buf) >= 20:
        fix_ip_checksum(buf)
    n = max(0, len(buf) - short) if short < 4 else len(buf)
    check(table(engine), new_packet(), buf, n)


@PROPERTY
@given(data=st.binary(max_size=120), fix=st.booleans())
def test_random_bytes(engine, data, fix):
    buf = bytearray(data)
    if fix and len(buf) >= 20:
        buf[0] = 0x40 | (buf[0] & 15)
        fix_ip_checksum(buf)
    check(table(engine), new_packet(), buf, len(buf))


@PROPERTY
@given(quote=st.binary(min_size=0, max_size=80), error=st.sampled_from(ERROR_KINDS),
       valid_inner=st.booleans(), to=st.sampled_from([W, RI]))
def test_icmp_errors_quoting_garbage(engine, quote, error, valid_inner, to):
    icmp_type, code, fields = error
    buf = wire(icmp_error(R, to, icmp_type, code, quote, **fields))
    if valid_inner:
        if len(buf) > 28:
            buf[28] = 0x40 | (buf[28] & 15)
        _fix_inner(buf)
        _fix_icmp(buf)
        fix_ip_checksum(buf)
    check(table(engine), new_packet(), buf, len(buf))


def test_seeded_mutation_sweep(engine):
    """Many cheap mutations without hypothesis: every corpus packet, every operation."""
    rng = random.Random(20261125)
    packet = new_packet()
    seen = {}
    for i in range(12000):
        buf = bytearray(CORPUS[i % len(CORPUS)])
        for _ in range(rng.randrange(1, 4)):
            mutate(buf, rng.choice(OPS), rng.randrange(2**16), rng.randrange(2**16))
        if rng.random() < 0.7:
            _fix_inner(buf)
            _fix_icmp(buf)
            if len(buf) >= 20:
                fix_ip_checksum(buf)
        n = len(buf) - rng.randrange(3) if buf and rng.random() < 0.2 else len(buf)
        key = check(table(engine), packet, buf, max(0, n))
        seen[key] = seen.get(key, 0) + 1
    # The sweep must reach every outcome, or it is not exercising the engine.
    for want in [(nat.MALFORMED, None), (nat.OK, nat.OK), (nat.OK, nat.UNTRANSLATED),
                 (nat.OK, nat.TTL_EXCEEDED)]:
        assert seen.get(want, 0) > 50, seen


def test_corpus_translates(engine):
    """The unmutated corpus: the sweeps start from packets the table does translate."""
    outcomes = [check(table(engine), new_packet(), bytearray(raw), len(raw))[1] for raw in CORPUS]
    assert outcomes.count(nat.OK) >= len(CORPUS) - 6   # all but the TTL 1 copies
    assert outcomes.count(nat.TTL_EXCEEDED) == 6
