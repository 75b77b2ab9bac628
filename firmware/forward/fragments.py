# IPv4 fragments across the NAT, in fixed memory.
#
# The engine translates only packets that carry their transport header: a first fragment
# (offset 0, MF set) is translated like any packet, a later one (offset > 0) carries no
# ports and parses as K_OTHER. This module forwards the later ones without reassembling:
#
# - Fragments, a tracker: a fixed table of datagrams keyed by (src, dst, IP id, protocol)
#   as the fragments ARRIVE (RFC 791 2.3: what identifies a datagram), remembering how the
#   engine translated the datagram's first fragment (its new source and destination).
#   A later fragment of a known datagram is rewritten in place (addresses, TTL, header
#   checksum by RFC 1624) and sent where the first went; one that comes before its first
#   fragment is held in a fixed pool until the first comes (RFC 4787 REQ-14: fragments
#   in any order), or dropped when its time runs out (RFC 791's reassembly timer).
# - fragment() (fragmenter.py, re-exported here): splits a DF=0 packet too long for the
#   outgoing link (RFC 4787 REQ-13, RFC 791 3.2), also a packet that is itself a fragment.
#
#   fr = Fragments()                    # once: everything it will ever use
#   fr.note(buf)                        # a first fragment, before the engine translates it
#   k = fr.first(buf, n, side)          # ... after it was translated and sent via `side`
#   n = fr.next_ready(buf)              # ... k times (or until 0): send buf[0:n] via fr.side
#   v = fr.later(buf, n)                # a later fragment: READY (send buf via fr.side),
#                                       # HELD or DROPPED
#   fragment(buf, n, mtu, out, send)    # a DF=0 packet longer than the link's MTU
#
# Nothing here allocates after the constructor (host_tests/upy/fragments_cases.py checks
# it under heap_lock on the unix port and the 32-bit WASI build): copies are byte loops
# (a slice would allocate), addresses stay bytes (a whole address is a heap int on a
# 32-bit MicroPython), verdicts are small ints, nothing raises (hostile input included;
# note() wants the 20 bytes of a parsed header). Fragments are rare, so this is plain
# Python: a call scans the entries a bounded number of times and copies one fragment.
#
# Fairness: a source (the arriving source address) owns at most `per_source` entries and
# `per_source_bytes` of held fragments; over its share it evicts its own oldest, never
# another's. When the table or pool is full, what goes first is: expired entries, then
# finished datagrams, then the oldest datagram still waiting for its first fragment (a
# flood of bogus later fragments is exactly that; a real one waits microseconds). An
# unverified later fragment never evicts a datagram whose first fragment was translated.

from compat import const, ticks_diff, ticks_ms, zeros
from .fragmenter import BAD, DF_SET, fragment, ip_header_length  # noqa: F401 (one API)
from nat.checksum import fold, put16

# later() verdicts
READY = const(1)     # rewritten in place: send buf[0:n] out of the link `tracker.side`
HELD = const(2)      # kept until its first fragment comes (or its time runs out)
DROPPED = const(3)   # dropped and counted

# Counters, in order (Fragments.counters() names them; prefixed, so the router can merge
# them into its own counters()).
NAMES = (
    "frag_firsts",             # translated first fragments recorded (first())
    "frag_rewritten",          # later fragments rewritten on arrival (READY)
    "frag_held",               # later fragments held for their first fragment (HELD)
    "frag_released",           # held fragments handed out rewritten (next_ready())
    "frag_dropped_no_room",    # no entry or pool room left for a held fragment
    "frag_dropped_share",      # its source already holds its share
    "frag_dropped_timeout",    # held fragments whose first fragment never came in time
    "frag_evicted",            # held fragments discarded to make room for others
    "frag_dropped_ttl",        # later fragments with TTL <= 1 (RFC 1812 5.3.1)
    "frag_dropped_malformed",  # bad header, offset 0, MF with a length not a multiple of 8,
                               # past 64 KB (RFC 791), a TCP offset of 8 bytes (RFC 1858 3.2)
    "frag_dropped_too_big",    # a held fragment longer than next_ready()'s buffer
)
_FC_FIRSTS = const(0)
_FC_REWRITTEN = const(1)
_FC_HELD = const(2)
_FC_RELEASED = const(3)
_FC_NO_ROOM = const(4)
_FC_SHARE = const(5)
_FC_TIMEOUT = const(6)
_FC_EVICTED = const(7)
_FC_TTL = const(8)
_FC_MALFORMED = const(9)
_FC_TOO_BIG = const(10)

_BLOCK = const(64)         # the pool's unit: a fragment takes ceil(length / 64) blocks
_BLOCK_SHIFT = const(6)
# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_TCP = const(6)
_IP_LEN = const(2)
_IP_FRAG = const(6)
_IP_TTL = const(8)
_IP_PROTO = const(9)
_IP_CSUM = const(10)
_IP_SRC = const(12)
_NONE = const(0xFFFF)
# ---- end of layout

# Entry words (array 'H', _EW a entry).
_W_STATE = const(0)
_W_SIDE = const(1)         # where the first fragment went (the router's link id)
_W_BLOCKS = const(2)       # pool blocks its held fragments take
_W_HEAD = const(3)         # its held fragments, oldest first: a chain of records
_W_TAIL = const(4)
_W_COUNT = const(5)        # held fragments
_W_SEEN = const(6)         # payload bytes seen (clamped at 0xFFFF)
_W_END = const(7)          # where the datagram ends (0: its last fragment not seen yet)
_EW = const(8)
_KB = const(11)            # key bytes an entry: src 4, dst 4, IP id 2, protocol 1

_FREE = const(0)
_PENDING = const(1)        # later fragments held, first fragment not seen
_KNOWN = const(2)          # first fragment translated: later ones are rewritten
_DONE = const(3)           # known, and every byte up to its end has been seen

_IP_ID = const(4)
_MF = const(0x2000)
_OFFSET = const(0x1FFF)


class Fragments:
    """Later IPv4 fragments across the NAT, in memory fixed at construction.

    entries:  datagrams tracked at once.
    hold_bytes: the pool for fragments that come before their first fragment, in 64-byte
              blocks (a 1500-byte fragment takes 24); 64 bytes to 4 MB.
    per_source: entries one source address may own (default entries // 4, at least 1).
    per_source_bytes: pool bytes one source may fill (default hold_bytes // 2).
    ms, timeout_ms: the millisecond clock (ticks_ms) and how long an entry lives from its
              first fragment seen (RFC 791's reassembly timer: a few seconds will do for
              a router; its fragments come back to back).
    """

    def __init__(self, entries=16, hold_bytes=8192, per_source=None, per_source_bytes=None,
                 ms=ticks_ms, timeout_ms=5000):
        if entries < 1 or entries > 4096:
            raise ValueError("entries: 1 to 4096")
        blocks = hold_bytes >> _BLOCK_SHIFT
        if blocks < 1 or blocks >= _NONE:
            raise ValueError("hold_bytes: 64 to 4 MB")
        if per_source is None:
            per_source = max(1, entries // 4)
        if per_source_bytes is None:
            per_source_bytes = hold_bytes // 2
        self._n = entries
        self._per_source = per_source
        self._share = per_source_bytes >> _BLOCK_SHIFT   # in blocks
        self._ms = ms
        self._timeout = timeout_ms
        self._key = bytearray(entries * _KB)
        self._xl = bytearray(entries * 8)       # new src + dst, from the translated first
        self._w = zeros("H", entries * _EW)
        self._time = zeros("I", entries)   # ticks_ms when made or translated
        # ... and in which order: many fragments share a millisecond, and "oldest first"
        # must not fall back on the table's order then
        self._order = zeros("I", entries)
        self._seq = 0
        self._pool = bytearray(blocks << _BLOCK_SHIFT)
        self._bnext = zeros("H", blocks)  # next block of a record; free list
        self._rlen = zeros("H", blocks)   # a record's length (at its first block)
        self._rnext = zeros("H", blocks)  # the entry's next record
        self._blocks = blocks
        self._c = zeros("I", len(NAMES))
        self.before = bytearray(8)   # note(): the first fragment's addresses as it came
        self.side = 0                # the link of the last READY / next_ready() packet
        self.clear()

    def reset(self):
        """As new: clear(), the counters zeroed (a new router's, reusing these arrays)."""
        self.clear()
        c = self._c
        for i in range(len(c)):
            c[i] = 0

    def clear(self):
        """Forget every datagram and held fragment (counters stay)."""
        w = self._w
        for i in range(len(w)):
            w[i] = 0
        for at in range(0, len(w), _EW):
            w[at + _W_HEAD] = _NONE
            w[at + _W_TAIL] = _NONE
        nxt = self._bnext
        for b in range(self._blocks - 1):
            nxt[b] = b + 1
        nxt[self._blocks - 1] = _NONE
        self._free = 0
        self._nfree = self._blocks
        self._ready = 0   # held fragments of known datagrams, for next_ready()

    # ---- the router's calls (nothing allocates)

    def note(self, buf):
        """Before the engine translates a first fragment: keep its addresses as they
        arrived (the key its later fragments will carry)."""
        b = self.before
        for i in range(8):
            b[i] = buf[_IP_SRC + i]

    def first(self, buf, n, side):
        """After the engine translated the packet in buf[0:n] in place and it was sent
        out of link `side` (an int 0-255 the router chooses): if it is a first fragment
        (offset 0, MF), remember the translation, keyed by the addresses note() kept.
        Returns how many held later fragments of its datagram next_ready() now hands
        out; 0 for an unfragmented packet (nothing recorded)."""
        hl = ip_header_length(buf, n)
        if not hl:
            return 0
        frag = buf[_IP_FRAG] << 8 | buf[_IP_FRAG + 1]
        if frag & _OFFSET or not frag & _MF:
            return 0
        now = self._ms()
        w = self._w
        e = self._find(self.before, 0, buf, now)
        if e == _NONE:
            e = self._new_entry(self.before, 0, buf, now, _KNOWN)
            if e == _NONE:  # only when per_source is 0 (counted)
                return 0
        at = e * _EW
        state = w[at + _W_STATE]
        if state == _PENDING:
            self._time[e] = now   # the timer restarts for the rest of the datagram
            self._stamp(e)
            self._ready += w[at + _W_COUNT]
        if state != _DONE:
            w[at + _W_STATE] = _KNOWN
        w[at + _W_SIDE] = side & 0xFF
        x = self._xl
        k = e * 8
        for i in range(8):
            x[k + i] = buf[_IP_SRC + i]
        self._c[_FC_FIRSTS] += 1
        self._account(at, 0, (buf[_IP_LEN] << 8 | buf[_IP_LEN + 1]) - hl, _MF)
        return w[at + _W_COUNT]

    def later(self, buf, n):
        """A fragment with offset > 0 arrived in buf[0:n], addresses as they came.
        READY: rewritten in place, send buf[0:total length] out of link self.side.
        HELD: copied into the pool, buf is free. DROPPED: counted."""
        c = self._c
        hl = ip_header_length(buf, n)
        if not hl:
            c[_FC_MALFORMED] += 1
            return DROPPED
        tl = buf[_IP_LEN] << 8 | buf[_IP_LEN + 1]
        frag = buf[_IP_FRAG] << 8 | buf[_IP_FRAG + 1]
        off = frag & _OFFSET
        pay = tl - hl
        # RFC 791: every fragment but the last carries a multiple of 8 bytes, and the
        # datagram ends within 64 KB ("ping of death"); RFC 1858 3.2: a TCP fragment at
        # offset 8 bytes can only mean to overwrite the first one's header.
        if (off == 0 or pay == 0 or (frag & _MF and pay & 7) or hl + (off << 3) + pay > 0xFFFF
                or (off == 1 and buf[_IP_PROTO] == _TCP)):
            c[_FC_MALFORMED] += 1
            return DROPPED
        if buf[_IP_TTL] <= 1:  # it would expire here, as its first fragment would
            c[_FC_TTL] += 1
            return DROPPED
        now = self._ms()
        w = self._w
        e = self._find(buf, _IP_SRC, buf, now)
        if e != _NONE and w[e * _EW + _W_STATE] >= _KNOWN:
            at = e * _EW
            self._account(at, off, pay, frag & _MF)
            _rewrite(buf, self._xl, e * 8)
            self.side = w[at + _W_SIDE]
            c[_FC_REWRITTEN] += 1
            return READY
        need = (tl + _BLOCK - 1) >> _BLOCK_SHIFT
        if need > self._share:
            c[_FC_SHARE] += 1
            return DROPPED
        if e == _NONE:
            e = self._new_entry(buf, _IP_SRC, buf, now, _PENDING)
            if e == _NONE:
                return DROPPED   # counted by _new_entry
        at = e * _EW
        if not self._room(e, need):
            if not w[at + _W_COUNT]:
                w[at + _W_STATE] = _FREE   # made for this fragment alone
            return DROPPED
        self._store(at, buf, tl, need)
        self._account(at, off, pay, frag & _MF)
        c[_FC_HELD] += 1
        return HELD

    def next_ready(self, out):
        """Copies the next held fragment whose first fragment has been translated into
        out, rewritten (addresses, TTL, header checksum); returns its length, 0 when
        there is none. Send out[0:length] out of link self.side."""
        w = self._w
        while self._ready:
            e = 0
            while e < self._n:
                at = e * _EW
                if w[at + _W_STATE] >= _KNOWN and w[at + _W_COUNT]:
                    break
                e += 1
            else:
                self._ready = 0   # cannot happen; never loop on a wrong count
                return 0
            r = w[at + _W_HEAD]
            length = self._rlen[r]
            self._ready -= 1
            if length > len(out):
                self._unlink(at)
                self._c[_FC_TOO_BIG] += 1
                continue
            pool = self._pool
            nxt = self._bnext
            b = r
            i = 0
            while i < length:
                base = b << _BLOCK_SHIFT
                k = length - i
                k = min(k, _BLOCK)
                for j in range(k):
                    out[i + j] = pool[base + j]
                i += k
                b = nxt[b]
            self._unlink(at)
            _rewrite(out, self._xl, e * 8)
            self.side = w[at + _W_SIDE]
            self._c[_FC_RELEASED] += 1
            return length
        return 0

    def expire(self):
        """Drop what has timed out; the router may call it once a second (first() and
        later() do it too, on their way through the table)."""
        now = self._ms()
        for e in range(self._n):
            if self._w[e * _EW] != _FREE and ticks_diff(now, self._time[e]) >= self._timeout:
                self._drop(e, _FC_TIMEOUT)

    # ---- inspection (slow path, allocates)

    def counters(self):
        d = {}
        for i in range(len(NAMES)):
            d[NAMES[i]] = self._c[i]
        used = 0
        for e in range(self._n):
            if self._w[e * _EW + _W_STATE] != _FREE:
                used += 1
        d["frag_entries"] = used
        d["frag_entries_capacity"] = self._n
        d["frag_held_bytes"] = (self._blocks - self._nfree) << _BLOCK_SHIFT
        d["frag_hold_capacity"] = self._blocks << _BLOCK_SHIFT
        return d

    # ---- inside

    def _find(self, kb, ko, buf, now):
        """The live entry keyed by addresses kb[ko:ko+8] and buf's IP id and protocol,
        or _NONE; drops every entry whose time has run out on the way."""
        key = self._key
        w = self._w
        t = self._time
        timeout = self._timeout
        i0 = buf[_IP_ID]
        i1 = buf[_IP_ID + 1]
        pr = buf[_IP_PROTO]
        found = _NONE
        for e in range(self._n):
            at = e * _EW
            if w[at] == _FREE:
                continue
            if ticks_diff(now, t[e]) >= timeout:
                self._drop(e, _FC_TIMEOUT)
                continue
            if found != _NONE:
                continue
            k = e * _KB
            if key[k + 8] != i0 or key[k + 9] != i1 or key[k + 10] != pr:
                continue
            for j in range(8):
                if key[k + j] != kb[ko + j]:
                    break
            else:
                found = e
        return found

    def _same_source(self, e, kb, ko):
        key = self._key
        k = e * _KB
        return (key[k] == kb[ko] and key[k + 1] == kb[ko + 1] and key[k + 2] == kb[ko + 2]
                and key[k + 3] == kb[ko + 3])

    def _new_entry(self, kb, ko, buf, now, state):
        """A free entry for the datagram keyed as in _find, evicting if need be: within
        the source's own entries when it has its share, else a free one, else a finished
        datagram, else the oldest waiting for its first fragment, else (for a translated
        first fragment only) the oldest. _NONE when nothing may go (counted)."""
        w = self._w
        t = self._time
        n = self._n
        own = 0
        for e in range(n):
            if w[e * _EW] != _FREE and self._same_source(e, kb, ko):
                own += 1
        mine = own >= self._per_source
        best = _NONE
        best_rank = 4
        best_age = -1
        for e in range(n):
            s = w[e * _EW]
            if mine and (s == _FREE or not self._same_source(e, kb, ko)):
                continue
            if s == _FREE:
                best = e
                break
            rank = 1 if s == _DONE else (2 if s == _PENDING else 3)
            if rank > state + 1:   # PENDING: ranks 1-2; KNOWN: any
                continue
            age = (self._seq - self._order[e]) & 0x3FFFFFFF
            if rank < best_rank or (rank == best_rank and age > best_age):
                best, best_rank, best_age = e, rank, age
        if best == _NONE:
            self._c[_FC_SHARE if mine else _FC_NO_ROOM] += 1
            return _NONE
        if w[best * _EW] != _FREE:
            self._drop(best, _FC_EVICTED)
        key = self._key
        k = best * _KB
        for j in range(8):
            key[k + j] = kb[ko + j]
        key[k + 8] = buf[_IP_ID]
        key[k + 9] = buf[_IP_ID + 1]
        key[k + 10] = buf[_IP_PROTO]
        at = best * _EW
        for j in range(_EW):
            w[at + j] = 0
        w[at + _W_HEAD] = _NONE
        w[at + _W_TAIL] = _NONE
        w[at + _W_STATE] = state
        t[best] = now
        self._stamp(best)
        return best

    def _stamp(self, e):
        self._seq = (self._seq + 1) & 0x3FFFFFFF   # a small int on any MicroPython
        self._order[e] = self._seq

    def _room(self, e, need):
        """Make `need` free blocks for entry e: first within its source's share (evicting
        the source's own oldest waiting datagrams), then in the pool (evicting the
        oldest waiting datagram of anyone). False when it cannot (counted)."""
        w = self._w
        key = self._key
        ko = e * _KB
        while True:
            used = 0
            victim = _NONE
            oldest = -1
            for v in range(self._n):
                at = v * _EW
                if w[at] == _FREE or not self._same_source(v, key, ko):
                    continue
                used += w[at + _W_BLOCKS]
                if v != e and w[at] == _PENDING and w[at + _W_BLOCKS]:
                    age = (self._seq - self._order[v]) & 0x3FFFFFFF
                    if age > oldest:
                        victim, oldest = v, age
            if used + need <= self._share:
                break
            if victim == _NONE:
                self._c[_FC_SHARE] += 1
                return False
            self._drop(victim, _FC_EVICTED)
        while self._nfree < need:
            victim = _NONE
            oldest = -1
            for v in range(self._n):
                at = v * _EW
                if v != e and w[at] == _PENDING and w[at + _W_BLOCKS]:
                    age = (self._seq - self._order[v]) & 0x3FFFFFFF
                    if age > oldest:
                        victim, oldest = v, age
            if victim == _NONE:
                self._c[_FC_NO_ROOM] += 1
                return False
            self._drop(victim, _FC_EVICTED)
        return True

    def _store(self, at, buf, tl, need):
        """Copy buf[0:tl] into `need` free blocks and queue it on the entry at `at`."""
        pool = self._pool
        nxt = self._bnext
        head = b = self._free
        last = b
        i = 0
        while i < tl:
            base = b << _BLOCK_SHIFT
            k = tl - i
            k = min(k, _BLOCK)
            for j in range(k):
                pool[base + j] = buf[i + j]
            i += k
            last = b
            b = nxt[b]
        self._free = b
        nxt[last] = _NONE
        self._nfree -= need
        self._rlen[head] = tl
        self._rnext[head] = _NONE
        w = self._w
        if w[at + _W_TAIL] == _NONE:
            w[at + _W_HEAD] = head
        else:
            self._rnext[w[at + _W_TAIL]] = head
        w[at + _W_TAIL] = head
        w[at + _W_COUNT] += 1
        w[at + _W_BLOCKS] += need

    def _unlink(self, at):
        """Return the entry's oldest held fragment's blocks to the free list."""
        w = self._w
        nxt = self._bnext
        r = w[at + _W_HEAD]
        need = (self._rlen[r] + _BLOCK - 1) >> _BLOCK_SHIFT
        b = r
        for _ in range(need - 1):
            b = nxt[b]
        nxt[b] = self._free
        self._free = r
        self._nfree += need
        w[at + _W_HEAD] = self._rnext[r]
        if w[at + _W_HEAD] == _NONE:
            w[at + _W_TAIL] = _NONE
        w[at + _W_COUNT] -= 1
        w[at + _W_BLOCKS] -= need

    def _drop(self, e, counter):
        """Free entry e and its held fragments, counted under `counter`."""
        w = self._w
        at = e * _EW
        count = w[at + _W_COUNT]
        if count:
            self._c[counter] += count
            if w[at] >= _KNOWN:
                self._ready -= count
            while w[at + _W_COUNT]:
                self._unlink(at)
        w[at] = _FREE

    def _account(self, at, off, pay, mf):
        """Count the datagram's bytes; once its last fragment is in and as many bytes
        as it spans have been seen, it is finished (first to go when room is short)."""
        w = self._w
        seen = w[at + _W_SEEN] + pay
        w[at + _W_SEEN] = seen if seen < 0xFFFF else 0xFFFF
        if not mf:
            w[at + _W_END] = (off << 3) + pay
        end = w[at + _W_END]
        if end and w[at + _W_SEEN] >= end and w[at] == _KNOWN:
            w[at] = _DONE


def _rewrite(buf, x, k):
    """Give the fragment in buf the translated addresses x[k:k+8] and TTL - 1; the header
    checksum follows incrementally (RFC 1624 eqn. 3, over the five words that change)."""
    s = (buf[_IP_CSUM] << 8 | buf[_IP_CSUM + 1]) ^ 0xFFFF
    s += (buf[_IP_TTL] << 8 | buf[_IP_PROTO]) ^ 0xFFFF
    buf[_IP_TTL] -= 1
    s += buf[_IP_TTL] << 8 | buf[_IP_PROTO]
    for j in range(_IP_SRC, _IP_SRC + 8, 2):
        s += (buf[j] << 8 | buf[j + 1]) ^ 0xFFFF
        buf[j] = x[k]
        buf[j + 1] = x[k + 1]
        s += x[k] << 8 | x[k + 1]
        k += 2
    put16(buf, _IP_CSUM, fold(s) ^ 0xFFFF)
