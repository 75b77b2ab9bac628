# The fixed-size flow table: one array('H') of slots and one of bucket heads per
# protocol, allocated in the constructor and never grown (layout: consts.py; the index
# on them: flows.py). translate() is the per-packet path; everything else here is the
# slow path.
from array import array
from collections import namedtuple

from . import core
from .consts import (ICMP, TCP, UDP, OK, UNTRANSLATED, OVERLAP, CANNOT_NAT, MALFORMED,
                     NAT, REDIRECT, F_OK, F_KIND, F_SPORT, F_DPORT, K_OTHER, K_TCP, K_UDP,
                     K_QUERY, K_ERROR, REQUEST_TYPES, F_TYPE, H_MASK, H_CAP, H_USED, H_NOW_HI, H_NOW_LO, H_SEED,
                     HDR, S_KEY1, S_TIME_HI, S_TIME_LO, S_FLAGS, SLOT, FL_USED, FL_REDIRECT,
                     NONE, MAX_FLOWS, KEY_SRC_HI, KEY_SRC_LO, KEY_DST_HI, KEY_DST_LO,
                     KEY_SPORT, KEY_DPORT, KEY_WORDS)
from .flows import acquire, chain, clear, find, release, slots_in_use, touch
from .clock import Clock
from .addr import unroutable

Ports = namedtuple("Ports", ("tcp", "udp", "icmp"))

_KIND_OF = {TCP: K_TCP, UDP: K_UDP, ICMP: K_QUERY}
_PROTO_OF = (None, TCP, UDP, ICMP)


def _halves(n):
    return n >> 16, n & 0xFFFF


def _word_addr(hi, lo):
    return hi << 16 | lo


def _new_tables(cap, seed):
    if not isinstance(cap, int) or not 1 <= cap <= MAX_FLOWS:
        raise ValueError("flow table capacity must be 1..%d, got %r" % (MAX_FLOWS, cap))
    buckets = 1
    while buckets < 2 * cap:  # two chain entries per flow: about one per bucket
        buckets <<= 1
    mem = _words(HDR + cap * SLOT, 0)
    heads = _words(buckets, NONE)
    mem[H_MASK] = buckets - 1
    mem[H_CAP] = cap
    mem[H_SEED] = seed & 0xFFFF
    clear(mem, heads)
    return mem, heads


def _words(n, fill):
    try:
        return array("H", [fill]) * n  # CPython: exactly n words
    except TypeError:  # MicroPython's arrays do not repeat; this one allocates exactly
        return array("H", bytes((fill & 0xFF,)) * (2 * n))


def _key(mem, s, d):
    k = HDR + s * SLOT + d * KEY_WORDS
    return (_word_addr(mem[k + KEY_SRC_HI], mem[k + KEY_SRC_LO]),
            _word_addr(mem[k + KEY_DST_HI], mem[k + KEY_DST_LO]),
            mem[k + KEY_SPORT], mem[k + KEY_DPORT])


class Table:
    """Table(tcp=512, udp=256, icmp=64): capacities in flows, fixed at construction.

    clock: a callable giving monotonic seconds (small ints); tick() reads it. The
    per-packet path uses the time of the last tick(), so a router ticks once per loop.
    pure=True uses the pure-Python core even where the viper core exists.

    mems, heads: each protocol's arrays, indexed by packet kind (K_TCP, K_UDP, K_QUERY),
    for the per-packet primitives (nat/README.md)."""

    def __init__(self, tcp=512, udp=256, icmp=64, clock=None, pure=False):
        seed = _seed()
        tcp_t = _new_tables(tcp, seed)
        udp_t = _new_tables(udp, seed >> 3)
        icmp_t = _new_tables(icmp, seed >> 5)
        self.mems = (None, tcp_t[0], udp_t[0], icmp_t[0])
        self.heads = (None, tcp_t[1], udp_t[1], icmp_t[1])
        self._clock = clock or Clock()
        self._translate = (core.python if pure else core).translate
        self.tick()

    # ---- per packet

    def translate(self, p):
        if not p.writable and p.fields[F_OK] and p.fields[F_KIND] != K_OTHER:
            # Checked before any byte changes: viper's ptr8 would write into bytes.
            raise TypeError("the packet's buffer is read-only")
        return self._translate(p.buf, p.fields, self.mems, self.heads)

    # ---- slow path

    def tick(self):
        """Read the clock; flows touched from now on are stamped with this time.
        Allocates nothing while the clock's values are small ints: a router calls it
        once per loop."""
        now = self._clock()
        hi = (now >> 16) & 0xFFFF
        lo = now & 0xFFFF
        mems = self.mems
        for kind in range(K_TCP, K_QUERY + 1):
            mems[kind][H_NOW_HI] = hi
            mems[kind][H_NOW_LO] = lo

    def now(self):
        return _word_addr(self.mems[1][H_NOW_HI], self.mems[1][H_NOW_LO])

    def add(self, p, xl_host, port_gen, mode=NAT, redirect=None):
        if mode not in (NAT, REDIRECT):
            raise ValueError("mode must be nat.NAT or nat.REDIRECT, got %r" % (mode,))
        _check_addr("xl_host", xl_host)
        if mode == REDIRECT:
            if not (isinstance(redirect, tuple) and len(redirect) == 2):
                raise ValueError("REDIRECT needs redirect=(final_ip, final_port)")
            _check_addr("redirect ip", redirect[0])
            _check_port("redirect port", redirect[1])
        f = p.fields
        if not f[F_OK]:
            return MALFORMED
        kind = f[F_KIND]
        if kind in (K_OTHER, K_ERROR) or (kind == K_QUERY and mode == REDIRECT):
            return CANNOT_NAT
        if kind == K_QUERY and not (REQUEST_TYPES >> f[F_TYPE]) & 1:
            return CANNOT_NAT  # only an outgoing request opens a query flow
        src, dst = p.src, p.dst
        if unroutable(src) or unroutable(dst):
            return CANNOT_NAT
        sport, dport = f[F_SPORT], f[F_DPORT]
        final, final_port = (dst, dport) if mode == NAT else redirect
        if kind != K_QUERY and 0 in (sport, dport, final_port):
            return CANNOT_NAT  # port 0 is reserved (RFC 6335): it never opens a flow
        mem, heads = self.mems[kind], self.heads[kind]
        sh, sl = _halves(src)
        dh, dl = _halves(dst)
        fh, fl = _halves(final)
        xh, xl = _halves(xl_host)
        ent = find(mem, heads, sh, sl, dh, dl, sport, dport)
        if ent != NONE:
            k = HDR + (ent >> 1) * SLOT + S_KEY1
            same = (ent & 1 == 0 and mem[k + KEY_SRC_HI] == fh and mem[k + KEY_SRC_LO] == fl
                    and mem[k + KEY_DST_HI] == xh and mem[k + KEY_DST_LO] == xl
                    and (kind == K_QUERY or mem[k + KEY_SPORT] == final_port))
            if not same:
                return OVERLAP
            self.tick()
            touch(mem, ent >> 1)
            return OK
        for _ in range(100):
            port = port_gen()
            if port is None:
                return OVERLAP
            _check_port("port_gen()", port)
            if port == 0 and kind != K_QUERY:
                continue  # never a translated port
            rp = port if kind == K_QUERY else final_port  # ICMP: the id answers for both
            if (find(mem, heads, fh, fl, xh, xl, rp, port) == NONE
                    and (fh, fl, xh, xl, rp, port) != (sh, sl, dh, dl, sport, dport)):
                self.tick()
                self._insert(mem, heads, (sh, sl, dh, dl, sport, dport),
                             (fh, fl, xh, xl, rp, port), mode)
                return OK
        return OVERLAP

    def _insert(self, mem, heads, key0, key1, mode):
        s = acquire(mem, heads)
        base = HDR + s * SLOT
        for i in range(KEY_WORDS):
            mem[base + i] = key0[i]
            mem[base + S_KEY1 + i] = key1[i]
        mem[base + S_FLAGS] = FL_USED | (FL_REDIRECT if mode == REDIRECT else 0)
        mem[base + S_TIME_HI] = mem[H_NOW_HI]
        mem[base + S_TIME_LO] = mem[H_NOW_LO]
        chain(mem, heads, s * 2)
        chain(mem, heads, s * 2 + 1)

    def remove_connections(self, ip):
        _check_addr("ip", ip)
        hi, lo = _halves(ip)
        freed = ([], [], [])
        for kind in (K_TCP, K_UDP, K_QUERY):
            mem, heads = self.mems[kind], self.heads[kind]
            for s in slots_in_use(mem):
                base = HDR + s * SLOT
                if mem[base + KEY_SRC_HI] == hi and mem[base + KEY_SRC_LO] == lo:
                    freed[kind - 1].append(mem[base + S_KEY1 + KEY_DPORT])
                    release(mem, heads, s)
        return Ports(*freed)

    def remove_redirects(self, proto, dst=None, dport=None, final=None):
        """Remove the REDIRECT flows of proto (nat.TCP or nat.UDP) opened to dst:dport
        and/or leading to the host final (None: any): a port forward's flows when the
        forward goes, an inside host's when its connections go. Returns how many."""
        kind = self._kind(proto)
        want = []  # (word offset in the slot, value)
        for what, a, at in (("dst", dst, KEY_DST_HI), ("final", final, S_KEY1 + KEY_SRC_HI)):
            if a is not None:
                _check_addr(what, a)
                want += [(at, a >> 16), (at + 1, a & 0xFFFF)]
        if dport is not None:
            _check_port("dport", dport)
            want.append((KEY_DPORT, dport))
        mem, heads = self.mems[kind], self.heads[kind]
        gone = 0
        for s in slots_in_use(mem):
            base = HDR + s * SLOT
            if mem[base + S_FLAGS] & FL_REDIRECT and all(mem[base + at] == v for at, v in want):
                release(mem, heads, s)
                gone += 1
        return gone

    def is_port_free(self, proto, src, dst, src_port, dst_port):
        kind = _KIND_OF.get(proto)
        if kind is None:
            raise ValueError("proto must be nat.TCP, nat.UDP or nat.ICMP, got %r" % (proto,))
        _check_addr("src", src)
        _check_addr("dst", dst)
        _check_port("src_port", src_port)
        if kind == K_QUERY:
            dst_port = src_port  # an ICMP query is keyed by its id alone
        else:
            _check_port("dst_port", dst_port)
        mem, heads = self.mems[kind], self.heads[kind]
        sh, sl = _halves(src)
        dh, dl = _halves(dst)
        return (find(mem, heads, sh, sl, dh, dl, src_port, dst_port) == NONE
                and find(mem, heads, dh, dl, sh, sl, dst_port, src_port) == NONE)

    def reset(self):
        for kind in (K_TCP, K_UDP, K_QUERY):
            clear(self.mems[kind], self.heads[kind])

    # ---- for the router's status and the REPL

    def capacity(self, proto):
        return self.mems[self._kind(proto)][H_CAP]

    def count(self, proto):
        return self.mems[self._kind(proto)][H_USED]

    def flows(self):
        """(proto, src, sport, dst, dport, xl_host, xl_port, final_ip, final_port, idle_s)
        for every flow, most recently used first within each protocol."""
        now = self.now()
        for kind in (K_TCP, K_UDP, K_QUERY):
            mem = self.mems[kind]
            for s in slots_in_use(mem):
                src, dst, sport, dport = _key(mem, s, 0)
                final, xl_host, final_port, xl_port = _key(mem, s, 1)
                base = HDR + s * SLOT
                used = _word_addr(mem[base + S_TIME_HI], mem[base + S_TIME_LO])
                yield (_PROTO_OF[kind], src, sport, dst, dport, xl_host, xl_port, final,
                       final_port, now - used)

    def _kind(self, proto):
        kind = _KIND_OF.get(proto)
        if kind is None:
            raise ValueError("proto must be nat.TCP, nat.UDP or nat.ICMP, got %r" % (proto,))
        return kind


def _check_addr(what, a):
    if not isinstance(a, int) or not 0 <= a <= 0xFFFFFFFF:
        raise ValueError("%s must be an IPv4 address as an int (nat.ip('a.b.c.d')), got %r"
                         % (what, a))


def _check_port(what, port):
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError("%s must be a port 0..65535, got %r" % (what, port))


def _seed():
    # Per-table hash seed, so chain lengths are not predictable from outside.
    try:
        from os import urandom
        r = urandom(2)
        return r[0] << 8 | r[1]
    except Exception:  # no urandom (the WASI build): the clock is unpredictable enough
        pass
    try:
        from time import ticks_us
        return ticks_us() & 0xFFFF
    except ImportError:
        from time import perf_counter_ns
        return perf_counter_ns() & 0xFFFF
