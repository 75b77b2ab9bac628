# fragments.py on MicroPython (the unix port, the 32-bit WASI build) and CPython, without
# scapy: host_tests/test_fragments.py runs main() on each and checks the lines it prints.
#
#   CASE <name> ok|FAIL <detail>   behaviour: datagrams across a real nat.Table, in any
#                                  order; fragment(); bounds
#   ALLOC <name> ok|ALLOC <runs>   a per-fragment call run under micropython.heap_lock()
#                                  (ALLOC: it raised MemoryError); probe-* must say ALLOC
#   MEM <name> <bytes>             (mem=True: the unix port, gc.collect() allowed) heap
#                                  used by a Fragments() at default sizes, and growth over
#                                  thousands of fragments (probe-grow must grow)
#   DONE
#
# Nothing is printed while the heap is locked (print allocates).
from array import array

from heaplock import heap_lock, heap_unlock
import nat
from forward.fragments import BAD, DF_SET, DROPPED, HELD, READY, Fragments, fragment
from pktlib import ICMP, UDP, ipv4, ones_sum, put16, valid

L = "192.168.4.2"
W = "203.0.113.7"
X = "198.51.100.10"
XL_PORT = 61000
XL_ID = 0x7001
LAN, WAN = 0, 1   # the router's link ids

# ---- a fake millisecond clock: one array cell, read by a function made once
_now = array("I", [1000])


def ms():
    return _now[0]


# ---- building and checking (allocates; never under the lock)

def datagram(proto, src, dst, size, ident=0x4242, ttl=64, sport=40000, dport=443):
    """A whole UDP datagram or ICMP echo request with `size` bytes of payload."""
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    h = bytearray(8)
    if proto == UDP:
        put16(h, 0, sport)
        put16(h, 2, dport)
        put16(h, 4, 8 + size)
    else:
        h[0] = 8
        put16(h, 4, sport)
        put16(h, 6, 1)
    return ipv4(proto, src, dst, bytes(h) + data, ttl, ident)


def split(pkt, mtu):
    """pkt's fragments as fragments.fragment() makes them (list of bytes)."""
    pieces = []

    def emit(b, n):
        pieces.append(bytes(b[:n]))
    buf = bytearray(pkt)
    got = fragment(buf, len(buf), mtu, bytearray(mtu), emit)
    assert got == len(pieces) and got > 1, (got, len(pieces))
    return pieces


def frag_word(b):
    return b[6] << 8 | b[7]


def reassemble(pieces):
    """The datagram the pieces make (bytes) checked the way a host would (RFC 791 3.2):
    one id/src/dst/proto, header checksums right, every byte covered exactly once, the
    last piece's MF clear. Raises AssertionError otherwise."""
    first = None
    spans = []
    end = -1
    for b in pieces:
        hl = (b[0] & 15) * 4
        assert ones_sum(b[:hl]) == 0xFFFF, "bad header checksum"
        assert (b[2] << 8 | b[3]) == len(b), "length field"
        fw = frag_word(b)
        off = (fw & 0x1FFF) * 8
        if off == 0:
            first = b
        if not fw & 0x2000:
            end = off + len(b) - hl
        spans.append((off, b[hl:]))
    assert first is not None and end > 0, "no first or no last piece"
    for b in pieces:
        assert b[4:6] == first[4:6] and b[9] == first[9] and b[12:20] == first[12:20], \
            "pieces of different datagrams"
    spans.sort(key=lambda s: s[0])
    data = b""
    for off, d in spans:
        assert off == len(data), "hole or overlap at %d" % off
        data += d
    assert len(data) == end, "length"
    hl = (first[0] & 15) * 4
    h = bytearray(first[:hl])
    put16(h, 2, hl + len(data))
    h[6] = h[7] = 0
    h[10] = h[11] = 0
    put16(h, 10, ~ones_sum(h) & 0xFFFF)
    return bytes(h) + data


def expected(pkt, src=None, dst=None, port_at=None, port=None, ttl=63):
    """pkt as the engine would translate it whole: addresses, port or id, TTL, every
    checksum computed afresh (pktlib)."""
    hl = (pkt[0] & 15) * 4
    proto = pkt[9]
    l4 = bytearray(pkt[hl:])
    if port_at is not None:
        put16(l4, port_at, port)
    b = ipv4(proto, src or _int(pkt, 12), dst or _int(pkt, 16), bytes(l4), ttl,
             pkt[4] << 8 | pkt[5])
    return bytes(b)


def _int(b, at):
    return b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]


class Nat:
    """The router's part, as it will be wired: note, translate, first, next_ready for a
    first fragment; later() for the rest. Collects what it sends, per link."""

    def __init__(self, frags):
        self.t = nat.Table(tcp=8, udp=8, icmp=8)
        self.p = nat.Packet()
        self.fr = frags
        self.sent = {LAN: [], WAN: []}
        self.out = bytearray(1500)

    def add(self, pkt, xl):
        assert self.p.parse(bytearray(pkt)) == nat.OK
        assert self.t.add(self.p, nat.ip(W), lambda: xl) == nat.OK

    def arrive(self, pkt, side_out):
        buf = bytearray(pkt)
        p = self.p
        assert p.parse(buf) == nat.OK, "parse"
        fw = frag_word(buf)
        if fw & 0x1FFF:
            v = self.fr.later(buf, len(buf))
            if v == READY:
                self.sent[self.fr.side].append(bytes(buf[:p.length]))
            return v
        self.fr.note(buf)
        st = self.t.translate(p)
        assert st == nat.OK, nat.status_name(st)
        self.sent[side_out].append(bytes(buf[:p.length]))
        k = self.fr.first(buf, p.length, side_out)
        for _ in range(k):
            n = self.fr.next_ready(self.out)
            assert n, "first() promised more"
            self.sent[self.fr.side].append(bytes(self.out[:n]))
        assert self.fr.next_ready(self.out) == 0
        return k


def orders(n):
    fwd = list(range(n))
    rev = fwd[::-1]
    mixed = [fwd[(i * 5 + 2) % n] for i in range(n)] if n % 5 else rev
    return (("in-order", fwd), ("reversed", rev), ("shuffled", mixed))


# ---- behaviour cases: each returns None or raises AssertionError

def case_datagrams():
    """A 4000-byte UDP datagram out and its reply in, a 3000-byte echo out, in order,
    reversed, shuffled: what leaves reassembles to the datagram the engine would make of
    the whole packet."""
    out_udp = datagram(UDP, L, X, 4000)
    in_udp = datagram(UDP, X, W, 4000, ident=0x5151, sport=443, dport=XL_PORT)
    out_echo = datagram(ICMP, L, X, 3000, ident=0x6161, sport=0x0101)
    for name, order in orders(3):
        for label, pkt, side, want in (
                ("udp-out", out_udp, WAN, expected(out_udp, src=W, port_at=0, port=XL_PORT)),
                ("udp-in", in_udp, LAN, expected(in_udp, dst=L, port_at=2, port=40000)),
                ("echo-out", out_echo, WAN, expected(out_echo, src=W, port_at=4, port=XL_ID))):
            r = Nat(Fragments(ms=ms))
            r.add(out_udp, XL_PORT)
            r.add(out_echo, XL_ID)
            pieces = split(pkt, 1500)
            verdicts = [r.arrive(pieces[i], side) for i in order]
            got = r.sent[side]
            assert not r.sent[1 - side], "%s %s: sent the wrong way" % (label, name)
            assert len(got) == len(pieces), "%s %s: %d of %d pieces (%r)" % (
                label, name, len(got), len(pieces), verdicts)
            whole = reassemble(got)
            assert whole == want, "%s %s: reassembled datagram differs" % (label, name)
            assert valid(whole)


def case_fragment_splits():
    """fragment(): pieces within the MTU reassemble to the packet; DF refused; a
    fragment re-fragmented keeps its offsets and MF."""
    pkt = datagram(UDP, L, X, 4000)
    for mtu in (68, 576, 1006, 1500):
        pieces = split(pkt, mtu)
        assert max(len(b) for b in pieces) <= mtu, mtu
        assert reassemble(pieces) == pkt, mtu
    df = bytearray(pkt)
    df[6] |= 0x40
    put16(df, 10, 0)
    put16(df, 10, ~ones_sum(df[:20]) & 0xFFFF)
    sent = []
    assert fragment(df, len(df), 1500, bytearray(1500), lambda b, n: sent.append(n)) == DF_SET
    assert not sent
    again = []
    for b in split(pkt, 1500):
        again += split(b, 576) if len(b) > 576 else [b]
    assert max(len(b) for b in again) <= 576
    assert reassemble(again) == pkt
    # it fits: sent as it is, from the packet's own buffer
    small = bytearray(datagram(UDP, L, X, 100))
    seen = []
    got = fragment(small, len(small), 1500, bytearray(0), lambda b, n: seen.append(b is small))
    assert got == 1
    assert seen == [True]
    assert fragment(bytearray(10), 10, 1500, bytearray(1500), lambda b, n: None) == BAD


def case_flood_one_source():
    """10000 bogus later fragments from one source: another source's datagram, its
    first fragment last, still gets through."""
    fr = Fragments(ms=ms)
    r = Nat(fr)
    r.add(datagram(UDP, L, X, 10), XL_PORT)
    bogus = bytearray(datagram(UDP, "198.51.100.66", W, 1200))
    bogus[6] = 0x20
    bogus[7] = 0x10
    orig = bytes(bogus)
    for i in range(10000):
        bogus[:] = orig
        put16(bogus, 4, i)
        _fix(bogus)
        fr.later(bogus, len(bogus))
    c = fr.counters()
    assert c["frag_entries"] <= 4, c
    assert c["frag_held_bytes"] <= 4096, c
    pkt = datagram(UDP, L, X, 4000)
    pieces = split(pkt, 1500)
    for i in (2, 1, 0):
        r.arrive(pieces[i], WAN)
    assert len(r.sent[WAN]) == 3, fr.counters()
    assert reassemble(r.sent[WAN]) == expected(pkt, src=W, port_at=0, port=XL_PORT)


def case_timeout():
    """Held fragments expire; their entry and pool room come back."""
    fr = Fragments(ms=ms, timeout_ms=3000)
    pkt = datagram(UDP, L, X, 4000)
    pieces = split(pkt, 1500)
    assert fr.later(bytearray(pieces[1]), len(pieces[1])) == HELD
    _now[0] += 2999
    fr.expire()
    assert fr.counters()["frag_held_bytes"] > 0
    _now[0] += 1
    fr.expire()
    c = fr.counters()
    assert c["frag_dropped_timeout"] == 1 and c["frag_held_bytes"] == 0 and c["frag_entries"] == 0, c


def case_ttl():
    fr = Fragments(ms=ms)
    r = Nat(fr)
    r.add(datagram(UDP, L, X, 10), XL_PORT)
    pieces = [bytearray(b) for b in split(datagram(UDP, L, X, 4000, ttl=2), 1500)]
    r.arrive(pieces[0], WAN)
    assert fr.later(pieces[1], len(pieces[1])) == READY and pieces[1][8] == 1
    assert ones_sum(pieces[1][:20]) == 0xFFFF
    pieces[2][8] = 1
    _fix(pieces[2])
    assert fr.later(pieces[2], len(pieces[2])) == DROPPED
    assert fr.counters()["frag_dropped_ttl"] == 1


def _fix(b):
    hl = (b[0] & 15) * 4
    b[10] = b[11] = 0
    put16(b, 10, ~ones_sum(b[:hl]) & 0xFFFF)


CASES = (case_datagrams, case_fragment_splits, case_flood_one_source, case_timeout, case_ttl)


# ---- heap_lock: every per-fragment path

def locked(fn, runs):
    """Runs fn() `runs` times with the heap locked; how many runs raised MemoryError."""
    failed = 0
    for _ in range(runs):
        heap_lock()
        try:
            fn()
        except MemoryError:
            failed += 1
        heap_unlock()
    return failed


class Steps:
    """Per-fragment calls, each prepared unlocked (setup) and run locked (a bound method,
    made once: making one allocates)."""

    def __init__(self):
        self.fr = Fragments(ms=ms, entries=8, hold_bytes=4096)
        self.r = Nat(self.fr)
        self.r.add(datagram(UDP, L, X, 10), XL_PORT)
        big = datagram(UDP, L, X, 4000)
        self.pieces = [bytearray(b) for b in split(big, 1500)]
        self.orig = [bytes(b) for b in self.pieces]
        self.out = bytearray(1500)
        self.small = bytearray(64)
        self.frag_out = bytearray(576)
        self.sent = array("I", [0])
        self.emit = self._emit
        self.bogus = bytearray(datagram(UDP, "198.51.100.66", W, 104))
        self.bogus[6] = 0x20
        self.bogus[7] = 0x10
        _fix(self.bogus)
        self.count = array("H", [0])
        self.v = array("i", [0] * 8)

    def _emit(self, b, n):
        self.sent[0] += 1

    def restore(self, i):
        b, o = self.pieces[i], self.orig[i]
        for j in range(len(o)):
            b[j] = o[j]

    # ---- the steps (locked)

    def later_piece2(self):
        self.v[0] = self.fr.later(self.pieces[2], len(self.pieces[2]))

    def later_piece1(self):
        self.v[0] = self.fr.later(self.pieces[1], len(self.pieces[1]))

    def first(self):
        # as the router does it: note, translate (the engine), first, next_ready
        fr = self.fr
        b = self.pieces[0]
        p = self.r.p
        p.parse(b, len(b))
        fr.note(b)
        self.v[1] = self.r.t.translate(p)
        self.v[2] = fr.first(b, len(b), WAN)
        self.v[3] = fr.next_ready(self.out)

    def next_ready_small(self):
        self.v[0] = self.fr.next_ready(self.small)

    def flood(self):
        # bogus later fragments, a new id each: entries, share, eviction, drops
        self._bump(4, 1)
        self.v[0] = self.fr.later(self.bogus, len(self.bogus))

    def flood_sources(self):
        # ... from a new source each (spoofed): eviction of the oldest waiting datagram
        self._bump(14, 7)
        self.v[0] = self.fr.later(self.bogus, len(self.bogus))

    def _bump(self, at, by):
        b = self.bogus
        old = b[at] << 8 | b[at + 1]
        new = (old + by) & 0xFFFF
        b[at] = new >> 8
        b[at + 1] = new & 0xFF
        s = ((b[10] << 8 | b[11]) ^ 0xFFFF) + (old ^ 0xFFFF) + new
        s = (s & 0xFFFF) + (s >> 16)
        s = ((s & 0xFFFF) + (s >> 16)) ^ 0xFFFF
        b[10] = s >> 8
        b[11] = s & 0xFF

    def split_packet(self):
        b = self.pieces[0]
        self.v[0] = fragment(b, len(b), 576, self.frag_out, self.emit)

    def expire(self):
        _now[0] += 10000
        self.fr.expire()

    def round(self):
        # a datagram in the worst order after the last one timed out, plus a flood
        _now[0] += 6000
        self.later_piece2()
        self.first()
        self.later_piece1()
        self.v[5] = self.v[0]
        self.flood()
        self.flood_sources()
        self.count[0] += 1

    def probe_allocating(self):
        self.v[0] = len(bytearray(8))

    # ---- setups (unlocked)

    def fresh(self):
        self.fr.clear()
        for i in range(3):
            self.restore(i)

    def held(self):
        self.fresh()
        self.later_piece2()
        self.restore(2)

    def known(self):
        self.fresh()
        self.first()
        self.restore(0)

    def known_with_held(self):
        self.fresh()
        self.later_piece2()
        self.fr.note(self.pieces[0])
        self.r.p.parse(self.pieces[0], len(self.pieces[0]))
        self.r.t.translate(self.r.p)
        self.fr.first(self.pieces[0], len(self.pieces[0]), WAN)

    def broken(self):
        self.restore(1)
        self.pieces[1][0] = 0x46   # a header length the checksum does not cover

    def again(self):
        for i in range(3):
            self.restore(i)


ALLOC_NAMES = ("later-held", "first-releases", "later-ready", "later-dropped",
               "next-ready-too-small", "flood-one-source", "flood-many-sources", "fragment",
               "expire", "round", "probe-allocating")


def alloc_cases(runs):
    s = Steps()
    v = s.v
    c = s.fr._c
    cases = (
        # name, setup, step, check after each run
        ("later-held", s.fresh, s.later_piece2, lambda: v[0] == HELD),
        ("first-releases", s.held, s.first, lambda: v[1] == nat.OK and v[2] == 1 and v[3] > 0),
        ("later-ready", s.known, s.later_piece1, lambda: v[0] == READY),
        ("later-dropped", s.broken, s.later_piece1, lambda: v[0] == DROPPED),
        ("next-ready-too-small", s.known_with_held, s.next_ready_small,
         lambda: v[0] == 0 and c[10] > 0),
        ("flood-one-source", None, s.flood, lambda: v[0] == HELD),
        ("flood-many-sources", None, s.flood_sources, lambda: v[0] == HELD),
        ("fragment", s.again, s.split_packet, lambda: v[0] == 3),
        ("expire", s.held, s.expire, lambda: s.fr.counters()["frag_held_bytes"] == 0),
        ("round", s.again, s.round,
         lambda: v[2] == 1 and v[3] > 0 and v[5] == READY and v[0] == HELD),
        ("probe-allocating", None, s.probe_allocating, None),
    )
    assert tuple(case[0] for case in cases) == ALLOC_NAMES
    results = []
    for name, setup, step, check in cases:
        failed = 0
        ok = True
        for _ in range(runs):
            if setup is not None:
                setup()
            failed += locked(step, 1)
            if check is not None and not check():
                ok = False
                break
        results.append((name, ("ALLOC %d" % failed) if failed else ("ok" if ok else
                                                                     "FAIL %r" % list(v))))
    return results


def memory(rounds):
    """(heap bytes a Fragments() takes at default sizes, growth over `rounds` rounds of
    5 fragments each, the probe's growth)."""
    import gc
    gc.collect()
    f0 = gc.mem_free()
    fr = Fragments()
    gc.collect()
    made = f0 - gc.mem_free()
    s = Steps()
    for _ in range(3):  # warm up
        s.again()
        s.round()
    gc.collect()
    f0 = gc.mem_free()
    for _ in range(rounds):
        s.again()
        s.round()
    gc.collect()
    grew = f0 - gc.mem_free()
    keep = []
    gc.collect()
    f0 = gc.mem_free()
    for _ in range(rounds):
        keep.append(bytearray(4))
    gc.collect()
    probe = f0 - gc.mem_free()
    assert fr is not None and len(keep) == rounds
    return made, grew, probe, s.fr.counters()


def main(mem=False, runs=50, rounds=1000):
    import sys
    for case in CASES:
        _now[0] = 1000
        try:
            case()
            print("CASE %s ok" % case.__name__)
        except Exception as e:
            print("CASE %s FAIL %r" % (case.__name__, e))
            if hasattr(sys, "print_exception"):
                sys.print_exception(e, sys.stdout)
            else:
                import traceback
                traceback.print_exception(e, file=sys.stdout)
    _now[0] = 1000
    for name, result in alloc_cases(runs):
        print("ALLOC %s %s" % (name, result))
    if mem:
        made, grew, probe, c = memory(rounds)
        print("MEM rounds %d held %d released %d evicted %d timeout %d" % (
            rounds, c["frag_held"], c["frag_released"], c["frag_evicted"], c["frag_dropped_timeout"]))
        print("MEM constructor %d" % made)
        print("MEM growth %d" % grew)
        print("MEM probe-grow %d" % probe)
    print("DONE")
