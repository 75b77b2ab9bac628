# Chooses the outside port (or ICMP id) of a new flow. Slow path: runs once per new
# flow, so it may allocate.
#
# - Endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382 REQ-1, RFC 5508 REQ-1): an
#   inside ip:port that already has flows keeps their outside port, whatever the new
#   destination.
# - Else keep the client's own port when nobody else leaves from it (port preservation:
#   it keeps port-sensitive protocols working).
# - Else a random free port (RFC 6056 / RFC 6888 REQ-15: hard to guess) from the range the
#   client's port belongs to (RFC 4787 REQ-3a): ports below 1024 stay in 1-1023, the others
#   in the configured range; ICMP ids use the configured range too.
# - Never a port another inside endpoint leaves from (REQ-3: no port overloading), nor one
#   with a port forward of the same protocol, and where possible none freed in the last
#   two minutes (RFC 6888 REQ-8).
from compat import urandom
from nat import ICMP
_RANDOM_TRIES = 32


class PortGen:
    def __init__(self, table, first=1024, last=65535, reserved=()):
        """reserved: (proto, port) pairs never handed out (the port forwards)."""
        self._table = table
        self._first = first
        self._last = last
        self._reserved = tuple(reserved)
        self._key = None
        self._calls = 0
        self._scan = 0
        self._bits = bytearray(0)
        self._pos = 0
        # The table calls this repeatedly for one flow; keep one bound method.
        self.next = self._next

    def prepare(self, proto, remote, remote_port, wan, preferred, inside=None):
        """Set up for one flow from inside:preferred (the client's port or id) to
        remote:remote_port, translated to the address `wan` (ints). With `inside` given,
        the endpoint's existing mapping comes first."""
        self._key = (proto, remote, wan, remote_port, inside, preferred)
        self._mapped = None
        if inside is not None:
            mapped = self._table.mapping(proto, inside, preferred)
            if mapped is not None and mapped[0] == wan:
                self._mapped = mapped[1]
        self._preferred = preferred
        if proto != ICMP and preferred < 1024:
            self._lo, self._hi = 1, 1023
        else:
            self._lo, self._hi = self._first, self._last
        self._calls = 0
        self._scan = -1
        self._offered = set()  # never the same port twice for one flow
        return self.next

    def _next(self):
        """The next candidate for Table.add's port_gen: a free port not offered before
        for this flow, or None when the range holds no other (the table then answers
        OVERLAP)."""
        p = self._candidate()
        if p is not None:
            self._offered.add(p)
        return p

    def _candidate(self):
        self._calls += 1
        if self._calls == 1 and self._mapped is not None:
            return self._mapped  # the endpoint's mapping, whatever else holds
        lo, hi = self._lo, self._hi
        if self._calls <= 2:
            p = self._preferred
            if lo <= p <= hi and p not in self._offered and self._free(p, fresh=True):
                return p
        span = hi - lo + 1
        if self._scan < 0:
            for _ in range(_RANDOM_TRIES):
                p = lo + self._random16() % span
                if p not in self._offered and self._free(p, fresh=True):
                    return p
            self._scan = self._random16() % span  # crowded range: walk it once from here
            self._left = span
        while self._left > 0:
            self._left -= 1
            p = lo + self._scan
            self._scan = self._scan + 1 if self._scan + 1 < span else 0
            if p not in self._offered and self._free(p, fresh=False):
                return p
        return None

    def _free(self, port, fresh):
        """Whether `port` may be handed out; fresh: also not freed in the last two
        minutes (the last walk through a crowded range takes those too)."""
        proto, remote, wan, remote_port, inside, preferred = self._key
        t = self._table
        if proto != ICMP:
            for rp, rport in self._reserved:
                if rp == proto and rport == port:
                    return False
            if port == 0:
                return False
        owner = t.owner(proto, wan, port)
        if owner is not None and owner != (inside, preferred):
            return False  # another inside endpoint leaves from it (RFC 4787 REQ-3)
        if fresh and owner is None and t.recently_freed(proto, port):
            return False
        # The flow's reply key is (remote -> wan, remote_port -> port); for ICMP the id
        # is the key's port and the other port is ignored.
        if proto == ICMP:
            return t.is_port_free(ICMP, remote, wan, port, 0)
        return t.is_port_free(proto, remote, wan, remote_port, port)

    def _random16(self):
        if self._pos >= len(self._bits):
            self._bits = urandom(64)
            self._pos = 0
        p = self._pos
        self._pos = p + 2
        return self._bits[p] << 8 | self._bits[p + 1]
