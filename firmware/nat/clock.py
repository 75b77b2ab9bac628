# The firmware's seconds clock (the flow table's by default, the DHCP server's too):
# monotonic whole seconds since it was made. Built on ticks_ms, whose wrap (2**30 ms on
# MicroPython) it absorbs, so its values stay small ints for decades (a 32-bit
# MicroPython allocates ints of 2**30 and more).
from compat import ticks_ms, ticks_diff


class Clock:
    def __init__(self):
        self._mark = ticks_ms()  # when the current second began
        self._s = 0

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
