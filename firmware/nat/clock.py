# The table's default clock: monotonic whole seconds since it was made. Built on
# ticks_ms, whose wrap (2**30 ms on MicroPython) it absorbs, so its values stay small
# ints for decades (a 32-bit MicroPython allocates ints of 2**30 and more).
try:
    from time import ticks_ms, ticks_diff
except ImportError:  # CPython
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000


class Clock:
    def __init__(self):
        self._mark = ticks_ms()  # when the current second began
        self._s = 0

    def advance(self, seconds):
        """Move the clock on (tests and demos: a flow's timeout without the wait)."""
        self._s += seconds

    def __call__(self):
        # Called once per router loop: within a second, one ticks_diff and a compare.
        # Call it at least once every few days, or the ticks_ms wrap goes unseen.
        now = ticks_ms()
        d = ticks_diff(now, self._mark)
        if d < 1000:
            return self._s
        self._s += d // 1000
        self._mark = now - d % 1000  # a small int: ticks_diff takes it across the wrap
        return self._s
