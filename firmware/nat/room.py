# Room in a full flow table: which flow makes way for a new one, fairly (slow path).
#
# A flow belongs to its inside host (the opener, or the inside end of a REDIRECT flow).
# While a table has free slots anyone may use them. Full, a bounded scan from the clock
# hand picks a victim, in this order:
#   1. an expired flow;
#   2. an embryonic flow (never answered: a SYN flood, an unanswered UDP probe), the
#      longest idle;
#   3. the longest idle flow of a host holding more than its share of the table (the new
#      flow's own host first, when it is over its share).
# No host over its share can push out an answered flow of a host within its share, so a
# LAN host opening flows as fast as it can cannot evict the others' established flows.
#
# Also here: the ports freed in the last two minutes (RFC 6888 REQ-8: not handed out again
# so soon where possible), per table.

from .flows import expired, first_at, idle, inside, outside, release, sweep, take_free
from .consts import const
from compat import zeros

SCAN = const(48)        # slots a full table's search for room looks at
HOSTS = const(64)       # inside hosts counted per table; more share one pool
FREED = const(64)       # recently freed outside ports remembered per table
HOLD_S = const(120)     # ... for this long

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_H_CAP = const(1)
_H_NOW = const(4)
_HDR = const(12)
_KEY_SRC_HI = const(0)
_KEY_SRC_LO = const(1)
_KEY_DST_HI = const(2)
_KEY_DST_LO = const(3)
_KEY_DPORT = const(5)
_S_STATE = const(17)
_SLOT = const(18)
_ST_ANSWERED = const(4)
_NONE = const(0xFFFF)
# ---- end of layout


class Room:
    """Per protocol table: flows per inside host, and recently freed ports."""

    def __init__(self, mem, share):
        self.mem = mem
        self.share = share  # percent of the capacity a host may hold when space is short
        self.hosts = {}     # inside host (hi << 16 | lo) -> flows; at most HOSTS entries
        self._freed_port = zeros("H", FREED)
        self._freed_at = zeros("H", FREED)
        self._freed_valid = bytearray(FREED)
        self._freed_next = 0

    # ---- who holds what

    def host_of(self, s):
        k = inside(self.mem, s)
        return self.mem[k + _KEY_SRC_HI] << 16 | self.mem[k + _KEY_SRC_LO]

    def count(self, host, delta):
        n = self.hosts.get(host, 0) + delta
        if n <= 0:
            self.hosts.pop(host, None)
        elif host in self.hosts or len(self.hosts) < HOSTS:
            self.hosts[host] = n

    def over_share(self, host):
        return self.hosts.get(host, 0) * 100 > self.share * self.mem[_H_CAP]

    # ---- a slot for a new flow of `host`

    def slot(self, heads, host):
        """A free slot (made so by the rules above when the table is full), or NONE."""
        mem = self.mem
        s = take_free(mem)
        if s != _NONE:
            return s
        mine = self.over_share(host)
        best, best_rank, best_idle = _NONE, 9, -1
        for s in sweep(mem, SCAN):
            if expired(mem, s):
                best = s
                break
            if not mem[_HDR + s * _SLOT + _S_STATE] & _ST_ANSWERED:
                rank = 0
            else:
                owner = self.host_of(s)
                if owner == host and mine:
                    rank = 1
                elif owner != host and self.over_share(owner) and not mine:
                    rank = 2
                else:
                    continue
            age = idle(mem, s)
            if rank < best_rank or (rank == best_rank and age > best_idle):
                best, best_rank, best_idle = s, rank, age
        if best == _NONE:
            return _NONE
        self.release(heads, best)
        return take_free(mem)

    def release(self, heads, s):
        """Forget slot s's flow, its host's count and, when it was the last flow on its
        outside port, remember the port as just freed."""
        mem = self.mem
        self.count(self.host_of(s), -1)
        k = outside(mem, s)
        hi, lo, port = mem[k + _KEY_DST_HI], mem[k + _KEY_DST_LO], mem[k + _KEY_DPORT]
        release(mem, heads, s)
        if first_at(mem, heads, hi, lo, port, 1) != _NONE:
            return  # the port still has flows
        i = self._freed_next
        self._freed_port[i] = port
        self._freed_at[i] = mem[_H_NOW]
        self._freed_valid[i] = 1
        self._freed_next = (i + 1) % FREED

    def recently_freed(self, port):
        now = self.mem[_H_NOW]
        for i in range(FREED):
            if (self._freed_valid[i] and self._freed_port[i] == port
                    and (now - self._freed_at[i]) & 0xFFFF < HOLD_S):
                return True
        return False

    def reset(self):
        self.hosts = {}
        for i in range(FREED):
            self._freed_valid[i] = 0
