# The fixed-size flow table: per protocol one array('H') of slots and one of chain heads,
# allocated in the constructor and never grown (layout: consts.py; the index: flows.py;
# room in a full table: room.py). translate() is the per-packet path; everything else
# here is the slow path.
from collections import namedtuple

from . import core
from .consts import (ICMP, TCP, UDP, OK, OVERLAP, CANNOT_NAT, MALFORMED, FULL,
                     NAT, REDIRECT, F_OK, F_KIND, F_WRITABLE, F_SPORT, F_DPORT, F_TYPE, K_OTHER, K_TCP,
                     K_UDP, K_QUERY, K_ERROR, REQUEST_TYPES, H_MASK, H_CAP, H_USED, H_NOW,
                     H_SEED, H_T_EST, H_T_TRANS, H_T_IDLE, H_EMASK, HDR, S_KEY1, S_TIME,
                     S_STATE, SLOT, FL_USED, FL_REDIRECT, ST_ANSWERED, ST_RST, ST_FIN0,
                     ST_FIN1, NONE, MAX_FLOWS,
                     KEY_SRC_HI, KEY_SRC_LO, KEY_DST_HI, KEY_DST_LO, KEY_SPORT, KEY_DPORT,
                     KEY_WORDS)
from .flows import (chain, clear, expired, find, first_at, idle, inside, outside,
                    slots_in_use, sweep, timeout)
from .room import Room
from .clock import Clock
from .addr import unroutable
from compat import urandom, zeros

Ports = namedtuple("Ports", ("tcp", "udp", "icmp"))

# Idle timeouts, seconds (all configurable, set_timeouts()): UDP 300 (RFC 4787 REQ-5:
# never below 120), TCP established 7440 and transitory 240 (RFC 5382 REQ-5, RFC 7857
# 2.1), ICMP queries 60 (RFC 5508 REQ-2).
TIMEOUTS = {"udp": 300, "tcp_established": 7440, "tcp_transitory": 240, "icmp": 60}
_TIMEOUT_MAX = 20000   # the 16-bit clock and the expiry scan need room above it
_JUMP_S = 30000        # a clock step this big: every flow has expired (flush)

_KIND_OF = {TCP: K_TCP, UDP: K_UDP, ICMP: K_QUERY}
_PROTO_OF = (None, TCP, UDP, ICMP)


def _halves(n):
    return n >> 16, n & 0xFFFF


def _word_addr(hi, lo):
    return hi << 16 | lo


def _pow2(n):
    p = 1
    while p < n:
        p <<= 1
    return p


def _shape(cap):
    """(exact buckets, endpoint buckets) of a protocol's table of cap flows."""
    if not isinstance(cap, int) or not 1 <= cap <= MAX_FLOWS:
        raise ValueError("flow table capacity must be 1..%d, got %r" % (MAX_FLOWS, cap))
    # Exact chains: about one entry a bucket (two keys a flow), never over 3 heads a flow.
    buckets = _pow2(2 * cap)
    if buckets > 3 * cap and buckets > 2:
        buckets >>= 1
    ends = _pow2(cap) >> 1 or 1  # endpoint chains: slow path only, two a bucket will do
    return buckets, ends


# What a Table costs beyond its arrays' words: each array's object and its items rounded
# up to the collector's 16-byte blocks, and the Table's own objects (rooms, clock,
# timeouts): 2.4 KB measured on the 64-bit unix port, less on 32 bits.
_ARRAY_OBJECT = 32
_BLOCK = 16
_TABLE_OBJECTS = 2560


def table_bytes(tcp, udp, icmp):
    """Heap bytes Table(tcp, udp, icmp) keeps (an upper bound on MicroPython, 32 or 64
    bits): what a board checks before it makes one."""
    total = _TABLE_OBJECTS
    for cap in (tcp, udp, icmp):
        buckets, ends = _shape(cap)
        for words in (HDR + cap * SLOT, buckets + 2 * ends):
            total += _ARRAY_OBJECT + (2 * words + _BLOCK - 1) // _BLOCK * _BLOCK
    return total


def _new_tables(cap, seed):
    buckets, ends = _shape(cap)
    mem = zeros("H", HDR + cap * SLOT)
    heads = zeros("H", buckets + 2 * ends)
    _shape_into(mem, heads, cap)
    mem[H_SEED] = seed & 0xFFFF
    return mem, heads


def _holds(mem, heads, cap):
    """Whether a protocol's arrays have room for a table of cap flows."""
    buckets, ends = _shape(cap)
    return len(mem) >= HDR + cap * SLOT and len(heads) >= buckets + 2 * ends


def _shape_into(mem, heads, cap):
    """An empty table of cap flows in arrays at least that long (words past its end are
    never read: the header says where everything is)."""
    buckets, ends = _shape(cap)
    mem[H_MASK] = buckets - 1
    mem[H_EMASK] = ends - 1
    mem[H_CAP] = cap
    clear(mem, heads)


def _key(mem, s, d):
    k = HDR + s * SLOT + d * KEY_WORDS
    return (_word_addr(mem[k + KEY_SRC_HI], mem[k + KEY_SRC_LO]),
            _word_addr(mem[k + KEY_DST_HI], mem[k + KEY_DST_LO]),
            mem[k + KEY_SPORT], mem[k + KEY_DPORT])


class Table:
    """Table(tcp=512, udp=256, icmp=64): capacities in flows, fixed at construction.

    clock: a callable giving monotonic seconds (small ints); tick() reads it. The
    per-packet path uses the time of the last tick(), so a router ticks once per loop,
    and calls expire() now and then. share: the percent of a protocol's table one
    inside host may hold when the table is full (room.py). pure=True uses the
    pure-Python core even where the viper core exists.

    mems, heads: each protocol's arrays, indexed by packet kind (K_TCP, K_UDP, K_QUERY),
    for the per-packet primitives (nat/README.md)."""

    def __init__(self, tcp=512, udp=256, icmp=64, clock=None, pure=False, timeouts=None,
                 share=50):
        seed = _seed()
        tcp_t = _new_tables(tcp, seed)
        udp_t = _new_tables(udp, seed >> 3)
        icmp_t = _new_tables(icmp, seed >> 5)
        self.mems = (None, tcp_t[0], udp_t[0], icmp_t[0])
        self.heads = (None, tcp_t[1], udp_t[1], icmp_t[1])
        self._rooms = (None,) + tuple(Room(m, 50) for m in self.mems[1:])
        self.set_share(share)
        self._clock = clock or Clock()
        self._flow = core.python.translate_flow if pure else core.translate_flow
        self._now = None
        self.set_timeouts(**(timeouts or {}))
        self.tick()

    # ---- per packet

    def translate(self, p):
        f = p.fields
        if not f[F_WRITABLE] and f[F_OK] and f[F_KIND] != K_OTHER:
            # Checked before any byte changes: viper's ptr8 would write into bytes.
            raise TypeError("the packet's buffer is read-only")
        if f[F_KIND] == K_ERROR and f[F_OK]:
            return core.translate_error(p._buf, f, self.mems, self.heads)
        return self._flow(p._buf, f, self.mems, self.heads)  # (p.buf: a property, a call)

    # ---- time

    def tick(self):
        """Read the clock; flows used from now on are stamped with this time. Returns
        True when a new second has begun (the router's once-a-second chores). Allocates
        nothing while the clock's values are small ints: a router calls it once per loop."""
        now = self._clock()
        if now == self._now:
            return False
        if self._now is not None and now - self._now > _JUMP_S:
            self.reset()  # the router did not run for hours: every flow has expired
        self._now = now
        mems = self.mems
        for kind in range(K_TCP, K_QUERY + 1):
            mems[kind][H_NOW] = now & 0xFFFF
        return True

    def now(self):
        return self._now

    def set_timeouts(self, udp=None, tcp_established=None, tcp_transitory=None, icmp=None):
        """Idle timeouts in seconds (TIMEOUTS has the defaults); None keeps the current."""
        given = {"udp": udp, "tcp_established": tcp_established,
                 "tcp_transitory": tcp_transitory, "icmp": icmp}
        for name, value in given.items():
            if value is None:
                continue
            if not isinstance(value, int) or not 1 <= value <= _TIMEOUT_MAX:
                raise ValueError("timeout %s must be 1..%d seconds, got %r"
                                 % (name, _TIMEOUT_MAX, value))
        current = getattr(self, "timeouts", TIMEOUTS)
        self.timeouts = {k: current[k] if given[k] is None else given[k] for k in TIMEOUTS}
        t = self.timeouts
        tcp, udp_m, icmp_m = self.mems[K_TCP], self.mems[K_UDP], self.mems[K_QUERY]
        tcp[H_T_EST], tcp[H_T_TRANS], tcp[H_T_IDLE] = (t["tcp_established"],
                                                       t["tcp_transitory"], t["tcp_transitory"])
        udp_m[H_T_EST], udp_m[H_T_IDLE] = 0, t["udp"]
        icmp_m[H_T_EST], icmp_m[H_T_IDLE] = 0, t["icmp"]

    def set_share(self, share):
        """The percent of a full table one inside host may keep (nat/room.py)."""
        if not isinstance(share, int) or not 1 <= share <= 100:
            raise ValueError("share must be a percentage 1..100, got %r" % (share,))
        for room in self._rooms[1:]:
            room.share = share

    def expire(self, count=64):
        """Reclaim the expired flows among the next `count` slots of each protocol (the
        clock hand moves on): bounded work, called now and then. Returns how many went."""
        gone = 0
        for kind in (K_TCP, K_UDP, K_QUERY):
            mem = self.mems[kind]
            for s in sweep(mem, count):
                if mem[HDR + s * SLOT + S_STATE] & FL_USED and expired(mem, s):
                    self._rooms[kind].release(self.heads[kind], s)
                    gone += 1
        return gone

    # ---- flows coming and going

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
        mem, heads, room = self.mems[kind], self.heads[kind], self._rooms[kind]
        sh, sl = _halves(src)
        dh, dl = _halves(dst)
        fh, fl = _halves(final)
        xh, xl = _halves(xl_host)
        ent = find(mem, heads, sh, sl, dh, dl, sport, dport)
        if ent != NONE and expired(mem, ent >> 1):
            room.release(heads, ent >> 1)  # its time is over: made anew below
            ent = NONE
        if ent != NONE:
            k = HDR + (ent >> 1) * SLOT + S_KEY1
            same = (ent & 1 == 0 and mem[k + KEY_SRC_HI] == fh and mem[k + KEY_SRC_LO] == fl
                    and mem[k + KEY_DST_HI] == xh and mem[k + KEY_DST_LO] == xl
                    and (kind == K_QUERY or mem[k + KEY_SPORT] == final_port))
            if not same:
                return OVERLAP
            mem[HDR + (ent >> 1) * SLOT + S_TIME] = mem[H_NOW]
            return OK
        for _ in range(100):
            port = port_gen()
            if port is None:
                return OVERLAP
            _check_port("port_gen()", port)
            if port == 0 and kind != K_QUERY:
                continue  # never a translated port
            rp = port if kind == K_QUERY else final_port  # ICMP: the id answers for both
            key1 = (fh, fl, xh, xl, rp, port)
            if key1 == (sh, sl, dh, dl, sport, dport):
                continue
            taken = find(mem, heads, fh, fl, xh, xl, rp, port)
            if taken != NONE and expired(mem, taken >> 1):
                room.release(heads, taken >> 1)
                taken = NONE
            if taken == NONE:
                return self._insert(kind, (sh, sl, dh, dl, sport, dport), key1, mode)
        return OVERLAP

    def _insert(self, kind, key0, key1, mode):
        mem, heads, room = self.mems[kind], self.heads[kind], self._rooms[kind]
        host = key0[0] << 16 | key0[1] if mode == NAT else key1[0] << 16 | key1[1]
        s = room.slot(heads, host)
        if s == NONE:
            return FULL
        base = HDR + s * SLOT
        for i in range(KEY_WORDS):
            mem[base + i] = key0[i]
            mem[base + S_KEY1 + i] = key1[i]
        mem[base + S_STATE] = FL_USED | (FL_REDIRECT if mode == REDIRECT else 0)
        mem[base + S_TIME] = mem[H_NOW]
        chain(mem, heads, s)
        room.count(host, 1)
        return OK

    def remove_connections(self, ip):
        _check_addr("ip", ip)
        hi, lo = _halves(ip)
        freed = ([], [], [])
        for kind in (K_TCP, K_UDP, K_QUERY):
            mem = self.mems[kind]
            for s in slots_in_use(mem):
                base = HDR + s * SLOT
                if mem[base + KEY_SRC_HI] == hi and mem[base + KEY_SRC_LO] == lo:
                    freed[kind - 1].append(mem[base + S_KEY1 + KEY_DPORT])
                    self._rooms[kind].release(self.heads[kind], s)
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
        mem = self.mems[kind]
        gone = 0
        for s in slots_in_use(mem):
            base = HDR + s * SLOT
            if mem[base + S_STATE] & FL_REDIRECT and all(mem[base + at] == v for at, v in want):
                self._rooms[kind].release(self.heads[kind], s)
                gone += 1
        return gone

    def remove_flows(self, refused):
        """Remove every flow for which refused(flow) is true, flow as flows() yields it
        (a firewall's new rules end what they would not have let open). Returns how many."""
        gone = 0
        for kind in (K_TCP, K_UDP, K_QUERY):
            mem = self.mems[kind]
            for s in slots_in_use(mem):
                src, dst, sport, dport = _key(mem, s, 0)
                final, xl_host, final_port, xl_port = _key(mem, s, 1)
                if refused((_PROTO_OF[kind], src, sport, dst, dport, xl_host, xl_port,
                            final, final_port, idle(mem, s))):
                    self._rooms[kind].release(self.heads[kind], s)
                    gone += 1
        return gone

    def reset(self):
        for kind in (K_TCP, K_UDP, K_QUERY):
            clear(self.mems[kind], self.heads[kind])
            self._rooms[kind].reset()

    def holds(self, tcp, udp, icmp):
        """Whether reshape() can make tables of these capacities in this table's arrays
        (each no larger than the one it was built with)."""
        return all(_holds(self.mems[k], self.heads[k], cap)
                   for k, cap in ((K_TCP, tcp), (K_UDP, udp), (K_QUERY, icmp)))

    def reshape(self, tcp, udp, icmp):
        """Empty tables of these capacities in the arrays this table has (holds() must
        say yes): a restart with smaller tables allocates nothing, so a fragmented heap
        need not find them room again. The arrays keep their size."""
        if not self.holds(tcp, udp, icmp):
            raise ValueError("reshape: the arrays are too small for tcp %d, udp %d, icmp %d"
                             % (tcp, udp, icmp))
        for k, cap in ((K_TCP, tcp), (K_UDP, udp), (K_QUERY, icmp)):
            _shape_into(self.mems[k], self.heads[k], cap)
            self._rooms[k].reset()

    # ---- mappings and filtering (RFC 4787 REQ-1, REQ-8; RFC 5382 REQ-1, REQ-3)

    def mapping(self, proto, ip, port):
        """(xl_host, xl_port) the live flows of inside ip:port leave from, or None: a new
        flow of that endpoint keeps it, whatever its destination (endpoint-independent)."""
        kind = self._kind(proto)
        s = self._live_at(kind, *_checked(ip), port, 0)
        if s == NONE:
            return None
        mem = self.mems[kind]
        k = outside(mem, s)
        return _word_addr(mem[k + KEY_DST_HI], mem[k + KEY_DST_LO]), mem[k + KEY_DPORT]

    def owner(self, proto, xl_host, xl_port):
        """(ip, port) of the inside endpoint whose live flows leave from xl_host:xl_port,
        or None."""
        kind = self._kind(proto)
        s = self._live_at(kind, *_checked(xl_host), xl_port, 1)
        if s == NONE:
            return None
        mem = self.mems[kind]
        k = inside(mem, s)
        return _word_addr(mem[k + KEY_SRC_HI], mem[k + KEY_SRC_LO]), mem[k + KEY_SPORT]

    def sent_to(self, proto, xl_host, xl_port, remote, remote_port=None):
        """Whether a live flow leaving from xl_host:xl_port talks with remote (and
        remote_port, when given): the permission address-dependent (and address-and-port-
        dependent) filtering asks for."""
        _check_addr("remote", remote)
        rh, rl = _halves(remote)
        kind = self._kind(proto)
        mem = self.mems[kind]
        hi, lo = _checked(xl_host)
        s = self._live_at(kind, hi, lo, xl_port, 1)
        while s != NONE:
            base = HDR + s * SLOT
            # The remote end: the opener's destination, or a REDIRECT flow's opener.
            at, pat = ((KEY_DST_HI, KEY_DPORT) if not mem[base + S_STATE] & FL_REDIRECT
                       else (KEY_SRC_HI, KEY_SPORT))
            if (mem[base + at] == rh and mem[base + at + 1] == rl
                    and (remote_port is None or mem[base + pat] == remote_port)):
                return True
            s = self._live_at(kind, hi, lo, xl_port, 1, s)
        return False

    def owned(self, proto, hi, lo, port):
        """Whether live flows leave from the outside address hi.lo (16-bit halves) and
        port: owner()'s question without building an int or a tuple, so an unsolicited
        packet's check allocates nothing, even on a 32-bit MicroPython."""
        return self._live_at(self._kind(proto), hi, lo, port, 1) != NONE

    def _live_at(self, kind, hi, lo, port, out, after=NONE):
        """The next live slot whose inside (out=0) or outside (out=1) endpoint is
        hi.lo:port, after slot `after`; NONE when there is none."""
        _check_port("port", port)
        mem, heads = self.mems[kind], self.heads[kind]
        s = first_at(mem, heads, hi, lo, port, out, after)
        while s != NONE and expired(mem, s):
            s = first_at(mem, heads, hi, lo, port, out, s)
        return s

    def recently_freed(self, proto, port):
        """Whether an outside port of proto was let go in the last two minutes (RFC 6888
        REQ-8: a port generator avoids it where it can)."""
        return self._rooms[self._kind(proto)].recently_freed(port)

    def is_port_free(self, proto, src, dst, src_port, dst_port):
        kind = self._kind(proto)
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
        for a, b, c, d, e, g in ((sh, sl, dh, dl, src_port, dst_port),
                                 (dh, dl, sh, sl, dst_port, src_port)):
            ent = find(mem, heads, a, b, c, d, e, g)
            if ent != NONE and not expired(mem, ent >> 1):
                return False
        return True

    # ---- for the router's status and the REPL

    def capacity(self, proto):
        return self.mems[self._kind(proto)][H_CAP]

    def count(self, proto):
        return self.mems[self._kind(proto)][H_USED]

    def flows(self):
        """(proto, src, sport, dst, dport, xl_host, xl_port, final_ip, final_port, idle_s)
        for every live flow, most recently used first within each protocol."""
        for kind in (K_TCP, K_UDP, K_QUERY):
            mem = self.mems[kind]
            live = [(idle(mem, s), s) for s in slots_in_use(mem) if not expired(mem, s)]
            live.sort()
            for age, s in live:
                src, dst, sport, dport = _key(mem, s, 0)
                final, xl_host, final_port, xl_port = _key(mem, s, 1)
                yield (_PROTO_OF[kind], src, sport, dst, dport, xl_host, xl_port, final,
                       final_port, age)

    def state(self, proto, src, dst, sport, dport):
        """The flow keyed (src, dst, sport, dport) in either direction: (answered, closed,
        idle_s, timeout_s), or None. closed: a TCP RST or FINs both ways."""
        kind = self._kind(proto)
        mem = self.mems[kind]
        sh, sl = _halves(src)
        dh, dl = _halves(dst)
        ent = find(mem, self.heads[kind], sh, sl, dh, dl, sport, dport)
        if ent == NONE:
            return None
        s = ent >> 1
        st = mem[HDR + s * SLOT + S_STATE]
        closed = bool(st & ST_RST) or st & (ST_FIN0 | ST_FIN1) == ST_FIN0 | ST_FIN1
        return bool(st & ST_ANSWERED), closed, idle(mem, s), timeout(mem, st)

    def _kind(self, proto):
        kind = _KIND_OF.get(proto)
        if kind is None:
            raise ValueError("proto must be nat.TCP, nat.UDP or nat.ICMP, got %r" % (proto,))
        return kind


def _check_addr(what, a):
    if not isinstance(a, int) or not 0 <= a <= 0xFFFFFFFF:
        raise ValueError("%s must be an IPv4 address as an int (nat.ip('a.b.c.d')), got %r"
                         % (what, a))


def _checked(a):
    """An address as its 16-bit halves, once checked."""
    _check_addr("address", a)
    return a >> 16, a & 0xFFFF


def _check_port(what, port):
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError("%s must be a port 0..65535, got %r" % (what, port))


def _seed():
    # Per-table hash seed, so chain lengths are not predictable from outside.
    r = urandom(2)
    return r[0] << 8 | r[1]
