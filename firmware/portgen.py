# Chooses the translated source port (or ICMP id) of a new outbound flow. Slow path:
# runs once per new flow, so it may allocate.
#
# - Keep the client's own port when its reply key is free (what most NATs do; it keeps
#   port-sensitive protocols working and is cheap).
# - Otherwise a random free port (RFC 6056 / RFC 6888 REQ-15: hard to guess) from the
#   range the client's port belongs to (RFC 4787 REQ-3a): ports below 1024 stay in
#   1-1023, the others in the configured range; ICMP ids use 0-65535.
# - Never a port that has a port forward of the same protocol, so an outbound flow can
#   not shadow a forward for the server it talks to.
from compat import urandom

ICMP = 1
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

    def prepare(self, proto, remote, remote_port, wan, preferred):
        """Set up for one flow from `preferred` (the client's port or id) to
        remote:remote_port, translated to the address `wan` (ints)."""
        self._key = (proto, remote, wan, remote_port)
        self._preferred = preferred
        if proto == ICMP:
            self._lo, self._hi = 0, 65535
        elif preferred < 1024:
            self._lo, self._hi = 1, 1023
        else:
            self._lo, self._hi = self._first, self._last
        self._calls = 0
        self._scan = -1
        return self.next

    def _next(self):
        """The next candidate for Table.add's port_gen: a free port, or None when the
        range holds none (the table then answers OVERLAP)."""
        self._calls += 1
        lo, hi = self._lo, self._hi
        if self._calls == 1:
            p = self._preferred
            if lo <= p <= hi and self._free(p):
                return p
        span = hi - lo + 1
        if self._scan < 0:
            for _ in range(_RANDOM_TRIES):
                p = lo + self._random16() % span
                if self._free(p):
                    return p
            self._scan = self._random16() % span  # crowded range: walk it once from here
            self._left = span
        while self._left > 0:
            self._left -= 1
            p = lo + self._scan
            self._scan = self._scan + 1 if self._scan + 1 < span else 0
            if self._free(p):
                return p
        return None

    def _free(self, port):
        proto, remote, wan, remote_port = self._key
        if proto != ICMP:
            for rp, rport in self._reserved:
                if rp == proto and rport == port:
                    return False
        # The flow's reply key is (remote -> wan, remote_port -> port); for ICMP the id
        # is the key's port and the other port is ignored.
        if proto == ICMP:
            return self._table.is_port_free(ICMP, remote, wan, port, 0)
        return self._table.is_port_free(proto, remote, wan, remote_port, port)

    def _random16(self):
        if self._pos >= len(self._bits):
            self._bits = urandom(64)
            self._pos = 0
        p = self._pos
        self._pos = p + 2
        return self._bits[p] << 8 | self._bits[p + 1]
