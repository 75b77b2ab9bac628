# The router's traffic over the last minutes, for the page's plot and the JSON API: once
# a second (Router._chores) the counters of packets forwarded in (WAN -> LAN) and out
# (LAN -> WAN) and, where the board's WAN link keeps them, its byte counters
# (Link.byte_counts(), optional: boards/README.md) go into a fixed ring made once.
# Nothing here runs per packet.
from compat import zeros

from .counters import C_TRANSLATED_IN, C_TRANSLATED_OUT

SAMPLES = 180       # seconds kept
_WIDTH = 4          # per sample: packets in, packets out, bytes in, bytes out (mod 2**32)
_MASK = 0xFFFFFFFF


class Traffic:
    def __init__(self, samples=SAMPLES):
        self.samples = samples
        self._ring = zeros("I", _WIDTH * samples)
        self._next = 0      # where the next sample goes
        self._taken = 0     # samples in the ring (at most `samples`)
        self.bytes = False  # whether the WAN link counts bytes

    def clear(self):
        """No samples: a new router's counters start again from zero."""
        self._next = self._taken = 0
        self.bytes = False

    def sample(self, counters, wan):
        """Once a second: the router's counters (array) and its WAN link."""
        r, i = self._ring, _WIDTH * self._next
        r[i] = counters[C_TRANSLATED_IN]
        r[i + 1] = counters[C_TRANSLATED_OUT]
        counts = getattr(wan, "byte_counts", None)
        if counts is not None:
            rx, tx = counts()
            r[i + 2] = rx & _MASK
            r[i + 3] = tx & _MASK
            self.bytes = True
        self._next = (self._next + 1) % self.samples
        if self._taken < self.samples:
            self._taken += 1

    def rates(self):
        """Per second, oldest first: {"packets_in", "packets_out", "bytes_in",
        "bytes_out"} (lists of rates; the bytes None when the link does not count them),
        and "seconds": how many."""
        r, n = self._ring, self._taken
        first = (self._next - n) % self.samples
        series = [[], [], [], []]
        for k in range(1, n):
            a = _WIDTH * ((first + k - 1) % self.samples)
            b = _WIDTH * ((first + k) % self.samples)
            for j in range(_WIDTH):
                series[j].append((r[b + j] - r[a + j]) & _MASK)
        return {"seconds": max(n - 1, 0), "packets_in": series[0], "packets_out": series[1],
                "bytes_in": series[2] if self.bytes else None,
                "bytes_out": series[3] if self.bytes else None}
