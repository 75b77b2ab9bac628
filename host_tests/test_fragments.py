"""firmware/fragments.py: later IPv4 fragments across the NAT and fragmenting, in fixed
memory (RFC 4787 REQ-13, REQ-14; RFC 791). scapy is the oracle: it fragments the
datagrams, builds what the engine should make of them whole, and reassembles what comes
out. The first fragment goes through a real nat.Table, the rest through the tracker, as
the router will wire it (Router below). host_tests/upy/fragments_cases.py runs the same
paths on the MicroPython unix port and the 32-bit WASI build under heap_lock."""
import copy
import random

import pytest
from hypothesis import given, strategies as st
from scapy.layers.inet import (ICMP, IP, UDP, IPOption_NOP, IPOption_Router_Alert,
                               IPOption_RR, defragment, fragment as scapy_fragment)
from scapy.packet import Raw

from forward import fragments
import fragments_cases
import nat
from forward.fragments import BAD, DF_SET, DROPPED, HELD, READY, Fragments, fragment
from oracle import PROPERTY, PortGen, rewritten, wire
from runtimes import run_unix, run_wasi

L, L2 = "192.168.4.2", "192.168.4.3"      # inside hosts
W = "203.0.113.7"                         # the router's public address
X, Y = "198.51.100.10", "198.51.100.20"   # outside hosts
EVIL = "198.51.100.66"
XL_PORT, XL_ID = 61000, 0x7001
LAN, WAN = 0, 1


class Clock:
    """A fake ticks_ms."""

    def __init__(self):
        self.now = 1000

    def __call__(self):
        return self.now


class Router:
    """The router's part as it will be wired: a first fragment is noted, translated by
    the engine, sent, recorded (first()) and its held fragments sent (next_ready());
    a later one goes to later(). `sent` collects what leaves, per link."""

    def __init__(self, frags=None, **kw):
        self.clock = Clock()
        self.fr = frags if frags is not None else Fragments(ms=self.clock, **kw)
        self.t = nat.Table(tcp=16, udp=16, icmp=16)
        self.p = nat.Packet()
        self.sent = {LAN: [], WAN: []}
        self.out = bytearray(1500)

    def add(self, pkt, xl):
        p = nat.Packet()
        assert p.parse(wire(pkt)) == nat.OK
        assert self.t.add(p, nat.ip(W), PortGen(xl)) == nat.OK

    def arrive(self, pkt, side_out):
        """One packet from the link opposite `side_out`; returns later()'s verdict, or
        for a first fragment how many held ones it released."""
        buf = wire(pkt)
        p = self.p
        assert p.parse(buf) == nat.OK
        if p.fields[nat.consts.F_FRAG] & nat.consts.FRAG_OFFSET:
            v = self.fr.later(buf, len(buf))
            if v == READY:
                self.sent[self.fr.side].append(bytes(buf[:p.length]))
            return v
        self.fr.note(buf)
        status = self.t.translate(p)
        assert status == nat.OK, nat.status_name(status)
        self.sent[side_out].append(bytes(buf[:p.length]))
        k = self.fr.first(buf, p.length, side_out)
        for _ in range(k):
            n = self.fr.next_ready(self.out)
            assert n > 0
            self.sent[self.fr.side].append(bytes(self.out[:n]))
        assert self.fr.next_ready(self.out) == 0
        return k


def reassemble(pieces):
    """scapy's reassembly of the pieces (bytes), which must make exactly one datagram.
    scapy reassembles when it meets the piece without MF, so that one goes last."""
    pkts = sorted((IP(bytes(b)) for b in pieces), key=lambda q: (not q.flags.MF, q.frag))
    for q in pkts:  # every piece's header checksum as scapy computes it
        again = q.copy()
        again.chksum = None
        assert IP(bytes(again)).chksum == q.chksum, "bad header checksum"
    whole = defragment(pkts)
    assert len(whole) == 1, "did not reassemble to one datagram: %r" % (whole,)
    return bytes(whole[0])


def datagram(kind, size, ident=0x4242, ttl=64, options=()):
    data = Raw(bytes((i * 7 + 3) & 0xFF for i in range(size)))
    ip = IP(src=L, dst=X, id=ident, ttl=ttl, options=list(options))
    if kind == "udp":
        return IP(bytes(ip / UDP(sport=40000, dport=443) / data))
    return IP(bytes(ip / ICMP(type=8, id=0x0101, seq=1) / data))


def reply(kind, size, ident=0x5151):
    data = Raw(bytes((i * 5 + 1) & 0xFF for i in range(size)))
    ip = IP(src=X, dst=W, id=ident)
    if kind == "udp":
        return IP(bytes(ip / UDP(sport=443, dport=XL_PORT) / data))
    return IP(bytes(ip / ICMP(type=0, id=XL_ID, seq=1) / data))


# (name, the datagram, where it goes, what the engine would make of it whole)
def crossings():
    udp_out, echo_out = datagram("udp", 4000), datagram("icmp", 3000)
    udp_in, echo_in = reply("udp", 4000), reply("icmp", 3000)
    return {
        "udp-out": (udp_out, WAN, rewritten(udp_out, src=W, sport=XL_PORT, ttl=63)),
        "echo-out": (echo_out, WAN, rewritten(echo_out, src=W, ident=XL_ID, ttl=63)),
        "udp-in": (udp_in, LAN, rewritten(udp_in, dst=L, dport=40000, ttl=63)),
        "echo-in": (echo_in, LAN, rewritten(echo_in, dst=L, ident=0x0101, ttl=63)),
    }


def with_flows(router):
    router.add(datagram("udp", 10), XL_PORT)
    router.add(datagram("icmp", 10), XL_ID)
    return router


def orders(n):
    yield "in-order", list(range(n))
    yield "reversed", list(range(n))[::-1]
    for seed in range(4):
        order = list(range(n))
        random.Random(seed).shuffle(order)
        yield "shuffled-%d" % seed, order


ORDERS = [name for name, _ in orders(3)]


# ---------------------------------------------------------------- across the NAT

@pytest.mark.parametrize("fragsize", [1480, 552])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", ["udp-out", "echo-out", "udp-in", "echo-in"])
def test_datagram_crosses_in_any_order(name, order, fragsize):
    pkt, side, want = crossings()[name]
    pieces = scapy_fragment(pkt, fragsize)
    assert len(pieces) >= 3
    sequence = dict(orders(len(pieces)))[order]
    r = with_flows(Router())
    for i in sequence:
        r.arrive(pieces[i], side)
    got = r.sent[side]
    assert not r.sent[1 - side], "a piece went out of the wrong link"
    assert len(got) == len(pieces)
    assert reassemble(got) == bytes(want)
    c = r.fr.counters()
    later = len(pieces) - 1
    assert c["frag_rewritten"] + c["frag_released"] == later and c["frag_held"] == c["frag_released"], c
    # every piece left as the engine would send it: only addresses, TTL, checksums
    # (and in the first, the port or id) changed
    for b in got:
        q = IP(b)
        assert q.ttl == 63 and (q.src, q.dst) == (want.src, want.dst)


def test_later_fragment_rewritten_exactly():
    """The incremental header checksum (RFC 1624) is the one scapy computes afresh."""
    pkt = datagram("udp", 4000)
    pieces = scapy_fragment(pkt, 1480)
    r = with_flows(Router())
    r.arrive(pieces[0], WAN)
    for piece in pieces[1:]:
        buf = wire(piece)
        assert r.fr.later(buf, len(buf)) == READY and r.fr.side == WAN
        want = copy.deepcopy(piece)
        want.src, want.ttl, want.chksum = W, 63, None
        assert bytes(buf) == bytes(want)


def test_first_of_an_unfragmented_packet_records_nothing():
    r = with_flows(Router())
    pkt = datagram("udp", 100)
    assert r.arrive(pkt, WAN) == 0
    assert r.fr.counters()["frag_firsts"] == 0 and r.fr.counters()["frag_entries"] == 0


def test_fragments_of_different_datagrams_stay_apart():
    """Same addresses and protocol, another IP id: another datagram (RFC 791 2.3)."""
    r = with_flows(Router())
    a = scapy_fragment(datagram("udp", 4000, ident=1), 1480)
    b = scapy_fragment(datagram("udp", 4000, ident=2), 1480)
    r.arrive(a[0], WAN)
    assert r.arrive(b[1], WAN) == HELD
    assert r.arrive(a[1], WAN) == READY
    assert r.arrive(b[0], WAN) == 1


def test_ttl_of_later_fragments():
    r = with_flows(Router())
    pieces = scapy_fragment(datagram("udp", 4000, ttl=2), 1480)
    r.arrive(pieces[0], WAN)
    assert r.arrive(pieces[1], WAN) == READY and IP(r.sent[WAN][-1]).ttl == 1
    last = copy.deepcopy(pieces[2])
    last.ttl, last.chksum = 1, None
    assert r.arrive(last, WAN) == DROPPED
    assert r.fr.counters()["frag_dropped_ttl"] == 1


def test_later_fragment_of_a_datagram_whose_first_expired_at_the_engine():
    """The first fragment with TTL 1 is the engine's TTL_EXCEEDED: never first(); its
    later fragments wait and time out, nothing leaves."""
    r = with_flows(Router())
    pieces = scapy_fragment(datagram("udp", 4000, ttl=1), 1480)
    for piece in pieces[1:]:
        assert r.arrive(piece, WAN) == DROPPED   # TTL 1: dropped on arrival
    assert r.sent == {LAN: [], WAN: []}


@pytest.mark.parametrize("what", ["tiny-tcp", "ping-of-death", "odd-length-with-mf", "offset-0",
                                  "bad-checksum", "length-past-n", "short"])
def test_hostile_later_fragments_dropped(what):
    fr = Fragments(ms=Clock())
    if what == "tiny-tcp":   # RFC 1858 3.2: offset 8 bytes of a TCP datagram
        q = IP(src=X, dst=W, proto=6, flags="MF", frag=1) / Raw(bytes(16))
    elif what == "ping-of-death":
        q = IP(src=X, dst=W, proto=17, frag=8189) / Raw(bytes(100))
    elif what == "odd-length-with-mf":
        q = IP(src=X, dst=W, proto=17, flags="MF", frag=10) / Raw(bytes(13))
    elif what == "offset-0":
        q = IP(src=X, dst=W, proto=17, flags="MF") / Raw(bytes(16))
    else:
        q = IP(src=X, dst=W, proto=17, flags="MF", frag=10) / Raw(bytes(16))
    buf = wire(q)
    n = len(buf)
    if what == "bad-checksum":
        buf[10] ^= 1
    elif what == "length-past-n":
        n -= 1
    elif what == "short":
        n = 19
    assert fr.later(buf, n) == DROPPED
    assert fr.counters()["frag_dropped_malformed"] == 1
    # the same fragment made sound is held
    if what in ("bad-checksum", "length-past-n", "short"):
        assert fr.later(wire(q), len(wire(q))) == HELD


def test_overlapping_and_duplicate_fragments_pass_as_they_are():
    """The router does not reassemble: overlaps are the destination's to judge; only a
    TCP offset of 8 bytes is refused (RFC 1858)."""
    r = with_flows(Router())
    pkt = datagram("udp", 4000)
    pieces = scapy_fragment(pkt, 1480)
    r.arrive(pieces[0], WAN)
    overlap = IP(bytes(pieces[1]))
    overlap.frag -= 1
    overlap.chksum = None
    for q in (pieces[1], pieces[1], overlap, pieces[2]):
        assert r.arrive(q, WAN) == READY
    assert len(r.sent[WAN]) == 5


# ---------------------------------------------------------------- fragment()

def split(pkt_bytes, mtu, out_size=None):
    sent = []
    buf = bytearray(pkt_bytes)
    out = bytearray(out_size if out_size is not None else mtu)
    got = fragment(buf, len(buf), mtu, out, lambda b, n: sent.append(bytes(b[:n])))
    assert got == (len(sent) if got > 0 else got)
    assert bytes(buf) == bytes(pkt_bytes), "the packet itself was changed"
    return got, sent


@pytest.mark.parametrize("mtu", [68, 576, 1001, 1280, 1500])
@pytest.mark.parametrize("kind", ["udp", "icmp"])
def test_fragment_reassembles_to_the_packet(kind, mtu):
    pkt = bytes(datagram(kind, 4000))
    got, pieces = split(pkt, mtu)
    assert got == len(pieces) > 1
    assert all(len(b) <= mtu for b in pieces)
    for b in pieces[:-1]:
        q = IP(b)
        assert q.flags.MF and len(q.payload) % 8 == 0
    assert not IP(pieces[-1]).flags.MF
    assert [IP(b).frag * 8 for b in pieces] == sorted(IP(b).frag * 8 for b in pieces)
    assert reassemble(pieces) == pkt


def test_fragment_copies_only_copied_options():
    """RFC 791 3.1: the first piece keeps every option, the others only those whose
    copied flag is set (Router Alert, type 0x94, yes; Record Route, type 7, no)."""
    opts = [IPOption_RR(routers=["10.9.8.7"]), IPOption_NOP(), IPOption_Router_Alert()]
    pkt = bytes(datagram("udp", 3000, options=opts))
    hl = (pkt[0] & 15) * 4
    _got, pieces = split(pkt, 576)
    assert pieces[0][:hl][20:] == pkt[20:hl]
    for b in pieces[1:]:
        q = IP(b)
        assert q.ihl == 6 and bytes(b[20:24]) == bytes(IPOption_Router_Alert())
    assert reassemble(pieces) == pkt


def with_options(opts, size=3000):
    """A UDP datagram whose header carries the option bytes `opts` (padded with EOL)."""
    raw = bytearray(bytes(datagram("udp", size)))
    opts = bytes(opts) + bytes(-len(opts) % 4)
    raw[20:20] = opts
    raw[0] = 0x40 | (20 + len(opts)) // 4
    raw[2:4] = len(raw).to_bytes(2, "big")
    q = IP(bytes(raw))
    q.chksum = None
    out = bytes(q)
    assert len(out) == len(raw) and out[20:20 + len(opts)] == opts
    return out


@pytest.mark.parametrize("opts, later_opts", [
    # a copied option of 3 bytes, a not copied one, then EOL: padded to 4 bytes
    (b"\x82\x03\x00" + b"\x07\x03\x04" + b"\x00" + b"\x94\x04\x00\x00", b"\x82\x03\x00\x00"),
    # a broken list (length 1): nothing is copied after it
    (b"\x94\x04\x00\x00" + b"\x82\x01\x00\x00", b"\x94\x04\x00\x00"),
    # an option running past the header: the same
    (b"\x01\x82\x09\x00", b""),
])
def test_fragment_option_lists(opts, later_opts):
    pkt = with_options(opts)
    hl = (pkt[0] & 15) * 4
    _got, pieces = split(pkt, 576)
    assert pieces[0][20:hl] == pkt[20:hl]
    for b in pieces[1:]:
        assert (b[0] & 15) * 4 == 20 + len(later_opts)
        assert bytes(b[20:20 + len(later_opts)]) == later_opts
    assert reassemble(pieces) == pkt


def test_fragment_refuses_df():
    pkt = datagram("udp", 4000)
    pkt.flags = "DF"
    pkt.chksum = None
    got, pieces = split(bytes(pkt), 1500)
    assert got == DF_SET and pieces == []


def test_fragment_refragments_a_fragment():
    """Offsets are added to the fragment's own; MF stays on the last piece of a
    fragment that had it (RFC 791 3.2)."""
    pkt = bytes(datagram("udp", 4000))
    pieces = []
    for frag in scapy_fragment(IP(pkt), 1480):
        got, again = split(bytes(frag), 576)
        assert got == len(again) >= 2 and all(len(b) <= 576 for b in again)
        assert bool(IP(again[-1]).flags.MF) == bool(frag.flags.MF)
        assert IP(again[0]).frag == frag.frag
        pieces += again
    assert reassemble(pieces) == pkt


def test_fragment_a_translated_packet_from_the_receive_buffer():
    """What the router will do (REQ-13): a DF=0 packet longer than the WAN MTU,
    translated by the engine in place, split as it leaves."""
    r = with_flows(Router())
    pkt = datagram("udp", 2000)
    buf = wire(pkt)
    assert r.p.parse(buf) == nat.OK and r.t.translate(r.p) == nat.OK
    sent = []
    got = fragment(buf, len(buf), 1400, bytearray(1500), lambda b, n: sent.append(bytes(b[:n])))
    assert got == 2
    assert reassemble(sent) == bytes(rewritten(pkt, src=W, sport=XL_PORT, ttl=63))


def test_fragment_that_fits_is_sent_unchanged():
    pkt = wire(datagram("udp", 100))
    seen = []
    assert fragment(pkt, len(pkt), 1500, bytearray(0), lambda b, n: seen.append((b is pkt, n))) == 1
    assert seen == [(True, len(pkt))]


@pytest.mark.parametrize("what", ["short", "mtu-too-small", "past-64k", "bad-checksum"])
def test_fragment_refuses_what_it_cannot_split(what):
    pkt = datagram("udp", 2000)
    mtu = 1500
    if what == "past-64k":
        pkt.frag = 8100
        pkt.chksum = None
    buf = wire(pkt)
    n = len(buf)
    if what == "short":
        n = 12
    elif what == "mtu-too-small":
        mtu = 27
    elif what == "bad-checksum":
        buf[10] ^= 0x55
    sent = []
    assert fragment(buf, n, mtu, bytearray(1500), lambda b, k: sent.append(k)) == BAD
    assert sent == []


def test_fragment_never_writes_past_a_short_out_buffer():
    pkt = bytes(datagram("udp", 4000))
    _got, pieces = split(pkt, 1500, out_size=600)
    assert all(len(b) <= 600 for b in pieces) and reassemble(pieces) == pkt


# ---------------------------------------------------------------- bounds

def bogus(src, ident, size=1200, offset=16, proto=17):
    q = IP(src=src, dst=W, id=ident & 0xFFFF, proto=proto, flags="MF", frag=offset)
    return wire(q / Raw(bytes(size)))


def held_by(fr, src):
    """(entries, blocks) the source owns (white box)."""
    key = bytes(int(x) for x in src.split("."))
    entries = blocks = 0
    for e in range(fr._n):
        at = e * fragments._EW
        if fr._w[at] and bytes(fr._key[e * fragments._KB:e * fragments._KB + 4]) == key:
            entries += 1
            blocks += fr._w[at + fragments._W_BLOCKS]
    return entries, blocks


def test_flood_from_one_source_cannot_take_everything():
    r = with_flows(Router())
    fr = r.fr
    rng = random.Random(1)
    for i in range(10000):
        buf = bogus(EVIL, i, size=8 * rng.randrange(1, 180))
        assert fr.later(buf, len(buf)) in (HELD, DROPPED)
        entries, blocks = held_by(fr, EVIL)
        assert entries <= 4 and blocks * 64 <= 4096
    # another source's datagram, first fragment last, still crosses
    pkt, side, want = crossings()["udp-in"]
    pieces = scapy_fragment(pkt, 1480)
    for piece in pieces[::-1]:
        r.arrive(piece, side)
    assert reassemble(r.sent[LAN]) == bytes(want)
    c = fr.counters()
    assert c["frag_evicted"] > 0 and c["frag_released"] == 2, c


def test_flood_from_many_sources_evicts_the_waiting_not_the_translated():
    """A spoofed flood (a new source each fragment) evicts datagrams still waiting for
    their first fragment, oldest first; a datagram whose first was translated keeps its
    entry, and one that arrives back to back with its first gets through the flood."""
    r = with_flows(Router())
    fr = r.fr
    pkt, side, want = crossings()["udp-out"]
    pieces = scapy_fragment(pkt, 552)
    r.arrive(pieces[0], WAN)                 # translated: its entry is known
    later_pieces = pieces[1:]
    for i in range(3000):
        buf = bogus("198.51.%d.%d" % (100 + i // 250, 1 + i % 250), i, size=64)
        assert fr.later(buf, len(buf)) == HELD   # there is always a waiting one to evict
    for piece in later_pieces:
        assert r.arrive(piece, WAN) == READY
    assert reassemble(r.sent[WAN]) == bytes(want)
    # reversed, one flood fragment between each of its own
    pkt, side, want = crossings()["udp-in"]
    pieces = scapy_fragment(pkt, 552)
    for j, piece in enumerate(pieces[::-1]):
        buf = bogus("198.51.200.%d" % (1 + j), 9000 + j, size=64)
        fr.later(buf, len(buf))
        r.arrive(piece, side)
    assert reassemble(r.sent[LAN]) == bytes(want)


def test_known_datagrams_fill_the_table_then_a_waiting_one_is_dropped_not_them():
    r = with_flows(Router(entries=4, per_source=4))
    firsts = []
    for i in range(4):
        pieces = scapy_fragment(datagram("udp", 3000, ident=100 + i), 1480)
        r.arrive(pieces[0], WAN)
        firsts.append(pieces)
    buf = bogus(Y, 7)
    assert r.fr.later(buf, len(buf)) == DROPPED
    assert r.fr.counters()["frag_dropped_no_room"] == 1
    for pieces in firsts:
        assert r.arrive(pieces[1], WAN) == READY


def test_per_source_bytes_share():
    fr = Fragments(ms=Clock(), hold_bytes=8192, per_source_bytes=2048)
    # 1220-byte fragments take 20 blocks of 64: one fits a 32-block share, two do not
    a, b = bogus(EVIL, 1), bogus(EVIL, 2)
    assert fr.later(a, len(a)) == HELD
    assert fr.later(b, len(b)) == HELD        # evicts the source's own older one
    assert fr.counters()["frag_evicted"] == 1
    again = bogus(EVIL, 2, offset=200)        # same datagram: its own share is full
    assert fr.later(again, len(again)) == DROPPED
    assert fr.counters()["frag_dropped_share"] == 1
    huge = bogus(EVIL, 3, size=2400)          # more than a share on its own
    assert fr.later(huge, len(huge)) == DROPPED
    other = bogus(Y, 4)
    assert fr.later(other, len(other)) == HELD


def test_full_pool_evicts_the_oldest_waiting_datagram():
    """Sources each within their share fill the pool; the next one's fragment takes the
    room of the datagram that has waited longest, whatever its place in the table."""
    fr = Fragments(ms=Clock(), entries=8, hold_bytes=4096, per_source=8,
                   per_source_bytes=4096)
    srcs = ["198.51.100.%d" % i for i in (1, 2, 3, 4)]
    for i, src in enumerate(srcs[:3]):            # 20 blocks each: 60 of 64
        buf = bogus(src, i)
        assert fr.later(buf, len(buf)) == HELD
    buf = bogus(srcs[3], 3)
    assert fr.later(buf, len(buf)) == HELD
    assert [held_by(fr, src)[0] for src in srcs] == [0, 1, 1, 1]
    buf = bogus(srcs[1], 1, offset=300)   # B's second: the oldest other one, C, goes
    assert fr.later(buf, len(buf)) == HELD
    assert [held_by(fr, src) for src in srcs] == [(0, 0), (1, 40), (0, 0), (1, 20)]
    buf = bogus(srcs[0], 9)               # A again: B's datagram is the oldest now
    assert fr.later(buf, len(buf)) == HELD
    assert [held_by(fr, src)[0] for src in srcs] == [1, 0, 0, 1]
    assert fr.counters()["frag_evicted"] == 4   # A's, C's, B's two
    check_invariants(fr)


def test_pool_held_by_translated_datagrams_is_not_taken():
    """Held fragments already released to the router (their first fragment came) are
    not evicted for an unverified one: that one is dropped, its new entry freed; when
    the translated datagram expires unsent, its fragments go too."""
    r = with_flows(Router(hold_bytes=2048, per_source_bytes=2048))
    fr = r.fr
    pieces = scapy_fragment(datagram("udp", 3000), 1480)
    assert r.arrive(pieces[1], WAN) == HELD              # 24 of 32 blocks
    buf = wire(pieces[0])
    r.p.parse(buf)
    fr.note(buf)
    assert r.t.translate(r.p) == nat.OK
    assert fr.first(buf, len(buf), WAN) == 1             # ready, not yet taken
    other = bogus(Y, 5)
    assert fr.later(other, len(other)) == DROPPED
    c = fr.counters()
    assert c["frag_dropped_no_room"] == 1 and c["frag_entries"] == 1, c
    check_invariants(fr)
    r.clock.now += 5000
    fr.expire()
    assert fr.next_ready(bytearray(1500)) == 0
    assert fr.counters()["frag_dropped_timeout"] == 1
    check_invariants(fr)


def test_memory_stays_fixed_on_cpython():
    """The tracker's buffers are the constructor's, same objects and sizes, after
    thousands of fragments (the unix port's gc.mem_free check is in fragments_cases)."""
    r = with_flows(Router())
    fr = r.fr
    before = {k: (id(v), len(v)) for k, v in vars(fr).items() if hasattr(v, "__len__")}
    rng = random.Random(2)
    for i in range(5000):
        buf = bogus("198.51.100.%d" % rng.randrange(1, 20), i, size=8 * rng.randrange(1, 100))
        fr.later(buf, len(buf))
        r.clock.now += rng.randrange(0, 50)
    after = {k: (id(v), len(v)) for k, v in vars(fr).items() if hasattr(v, "__len__")}
    assert before == after
    check_invariants(fr)


def test_timeouts_release_entries_and_pool():
    r = with_flows(Router(timeout_ms=3000))
    fr = r.fr
    for i in range(16):
        buf = bogus("198.51.100.%d" % (i + 1), i, size=256)
        assert fr.later(buf, len(buf)) == HELD
    assert fr.counters()["frag_entries"] == 16
    r.clock.now += 3000
    pkt, side, _want = crossings()["udp-out"]
    pieces = scapy_fragment(pkt, 1480)
    r.arrive(pieces[2], side)      # any call drops what has expired on its way
    c = fr.counters()
    assert c["frag_dropped_timeout"] == 16 and c["frag_evicted"] == 0 and c["frag_entries"] == 1, c
    # a translated datagram's entry expires too: its later fragments then wait
    r.arrive(pieces[0], side)
    r.clock.now += 3000
    assert r.arrive(pieces[1], side) == HELD
    fr.expire()
    assert fr.counters()["frag_entries"] == 1
    r.clock.now += 3000
    fr.expire()
    assert fr.counters()["frag_entries"] == 0 and fr.counters()["frag_held_bytes"] == 0


def test_clock_wrap():
    """ticks_ms wraps (2**30 on MicroPython): ages use ticks_diff."""
    clock = Clock()
    clock.now = (1 << 30) - 100
    fr = Fragments(ms=clock, timeout_ms=1000)
    buf = bogus(EVIL, 1)
    assert fr.later(buf, len(buf)) == HELD
    clock.now = 500            # 600 ms later, across the wrap
    fr.expire()
    assert fr.counters()["frag_entries"] == 1
    clock.now = 900
    fr.expire()
    assert fr.counters()["frag_entries"] == 0


def test_next_ready_with_a_short_buffer_drops_and_counts():
    r = with_flows(Router())
    pieces = scapy_fragment(datagram("udp", 4000), 1480)
    r.arrive(pieces[1], WAN)
    buf = wire(pieces[0])
    r.p.parse(buf)
    r.fr.note(buf)
    assert r.t.translate(r.p) == nat.OK
    assert r.fr.first(buf, len(buf), WAN) == 1
    assert r.fr.next_ready(bytearray(100)) == 0
    assert r.fr.counters()["frag_dropped_too_big"] == 1 and r.fr.counters()["frag_held_bytes"] == 0


# ---------------------------------------------------------------- hostile input

def check_invariants(fr):
    """The pool and the entries agree (white box): every block is free or in exactly
    one held fragment of a live entry; counts and the ready total match."""
    nb = fr._blocks
    seen = set()
    b = fr._free
    while b != fragments._NONE:
        assert b not in seen and b < nb
        seen.add(b)
        b = fr._bnext[b]
    assert len(seen) == fr._nfree
    ready = 0
    for e in range(fr._n):
        at = e * fragments._EW
        w = fr._w
        count = blocks = 0
        r = w[at + fragments._W_HEAD]
        last = fragments._NONE
        while r != fragments._NONE:
            assert w[at] != fragments._FREE, "a free entry holds fragments"
            need = (fr._rlen[r] + 63) // 64
            b = r
            for k in range(need):
                assert b not in seen and b < nb
                seen.add(b)
                b = fr._bnext[b]
            assert b == fragments._NONE
            count += 1
            blocks += need
            last = r
            r = fr._rnext[r]
        assert w[at + fragments._W_TAIL] == last
        if w[at]:
            assert w[at + fragments._W_COUNT] == count and w[at + fragments._W_BLOCKS] == blocks
            if w[at] >= fragments._KNOWN:
                ready += count
        else:
            assert count == 0
    assert len(seen) == nb, "blocks lost"
    assert fr._ready == ready


_SAMPLE = [bytes(p) for p in scapy_fragment(datagram("udp", 4000), 552)]


@st.composite
def hostile_packet(draw):
    """A fragment of a real datagram with fields set to anything, its header checksum
    fixed or not, cut anywhere, or plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return bytearray(draw(st.binary(max_size=120)))
    buf = bytearray(draw(st.sampled_from(_SAMPLE)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.sampled_from([0, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 19]))
        buf[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        hl = (buf[0] & 15) * 4
        if 20 <= hl <= len(buf):
            buf[10] = buf[11] = 0
            s = sum(buf[i] << 8 | buf[i + 1] for i in range(0, hl, 2))
            while s > 0xFFFF:
                s = (s & 0xFFFF) + (s >> 16)
            buf[10], buf[11] = (s ^ 0xFFFF) >> 8, (s ^ 0xFFFF) & 0xFF
    cut = draw(st.integers(0, len(buf)))
    return buf[:cut] if draw(st.integers(0, 3)) == 0 else buf


OPS = st.lists(st.tuples(st.sampled_from(["later", "first", "next", "split", "tick"]),
                         hostile_packet(), st.integers(-5, 1600), st.integers(0, 1600)),
               min_size=1, max_size=40)


@PROPERTY
@given(ops=OPS, entries=st.integers(1, 6), hold=st.integers(64, 6000),
       share=st.integers(0, 6000), per_source=st.integers(0, 4))
def test_hostile_input_never_raises_nor_writes_out_of_bounds(ops, entries, hold, share,
                                                            per_source):
    """Every buffer is exactly as long as given: a write past its end would raise
    IndexError here, as it would corrupt memory in C. After every call the pool and the
    entries still agree."""
    clock = Clock()
    fr = Fragments(entries=entries, hold_bytes=hold, per_source=per_source,
                   per_source_bytes=share, ms=clock, timeout_ms=1000)
    for op, buf, n, size in ops:
        if n < 0 or n > len(buf):
            n = len(buf)
        if op == "later":
            assert fr.later(buf, n) in (READY, HELD, DROPPED)
        elif op == "first":
            if len(buf) >= 20:
                fr.note(buf)
            fr.first(buf, n, size & 0xFF)
        elif op == "next":
            assert 0 <= fr.next_ready(bytearray(size)) <= size
        elif op == "split":
            out = bytearray(size)
            emitted = []
            got = fragment(buf, n, max(size, 1), out, lambda b, k: emitted.append(k))
            assert got in (DF_SET, BAD) or got == len(emitted)
            assert all(k <= max(size, 1) or got == 1 for k in emitted)
        else:
            clock.now += size
        check_invariants(fr)


@PROPERTY
@given(order=st.permutations(range(8)), dup=st.lists(st.integers(0, 7), max_size=3))
def test_any_order_with_duplicates_reassembles(order, dup):
    """REQ-14 as a property: any order of a datagram's 8 fragments, some repeated."""
    pkt, side, want = crossings()["udp-in"]
    pieces = scapy_fragment(pkt, 552)
    assert len(pieces) == 8
    r = with_flows(Router())
    for i in list(order) + dup:
        r.arrive(pieces[i], side)
    got = r.sent[side]
    assert len(got) == 8 + len(dup)
    uniq = {b[4:8] + b[20:]: b for b in got}   # duplicates are the destination's to drop
    assert reassemble(list(uniq.values())) == bytes(want)


@pytest.mark.parametrize("kw", [{"entries": 0}, {"entries": 5000}, {"hold_bytes": 63},
                                {"hold_bytes": 64 * 0xFFFF}])
def test_sizes_out_of_range_refused(kw):
    with pytest.raises(ValueError):
        Fragments(**kw)


# ---------------------------------------------------------------- MicroPython

_runs = {}


def upy(runtime):
    if runtime not in _runs:
        code = ("import fragments_cases\nfragments_cases.main(mem=%s)" %
                ("True" if runtime == "unix" else "False"))
        try:
            if runtime == "cpython":
                import contextlib
                import io
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    fragments_cases.main(runs=3)
                out = out.getvalue()
            else:
                out = (run_unix if runtime == "unix" else run_wasi)(code)
        except Exception as e:
            _runs[runtime] = e
            raise
        assert out.rstrip().endswith("DONE"), out
        lines = {}
        for line in out.splitlines():
            parts = line.split(None, 2)
            if parts and parts[0] in ("CASE", "ALLOC", "MEM"):
                lines[(parts[0], parts[1])] = parts[2] if len(parts) > 2 else ""
        _runs[runtime] = (lines, out)
    if isinstance(_runs[runtime], Exception):
        raise _runs[runtime]
    return _runs[runtime]


@pytest.mark.parametrize("runtime", ["cpython", "unix", "wasi"])
@pytest.mark.parametrize("case", [c.__name__ for c in fragments_cases.CASES])
def test_cases_on_each_runtime(runtime, case):
    lines, out = upy(runtime)
    assert lines.get(("CASE", case)) == "ok", out


@pytest.mark.parametrize("runtime", ["unix", "wasi"])
@pytest.mark.parametrize("case", fragments_cases.ALLOC_NAMES)
def test_per_fragment_calls_allocate_nothing(runtime, case):
    lines, out = upy(runtime)
    got = lines.get(("ALLOC", case))
    if case.startswith("probe-"):   # the check's control: an allocation must be seen
        assert got is not None and got.startswith("ALLOC"), out
    else:
        assert got == "ok", "%s on %s: %s\n%s" % (case, runtime, got, out)


def test_memory_fixed_on_the_unix_port():
    lines, out = upy("unix")
    assert int(lines[("MEM", "growth")]) == 0, out
    assert int(lines[("MEM", "probe-grow")]) > 0, out     # the check sees growth
    assert 8192 < int(lines[("MEM", "constructor")]) < 12 * 1024, out

