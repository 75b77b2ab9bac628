# MicroPython names the firmware uses, with CPython stand-ins so the same modules run in
# host tests and tools. Only this module knows which runtime it is on.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

try:
    from micropython import heap_lock, heap_unlock
except ImportError:
    def heap_lock():
        return 0

    def heap_unlock():
        return 0

try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:  # CPython: the engine's clock has the stand-ins (2**30 ms wrap, as MicroPython)
    from nat.clock import ticks_ms, ticks_diff

    def sleep_ms(ms):
        from time import sleep
        sleep(ms / 1000)


def _os_urandom():
    try:
        from os import urandom as u
        u(1)  # the WASI build has it, but it raises (no /dev/urandom)
        return u
    except Exception:
        return None


class _Xorshift:
    """Stand-in for ports whose os.urandom fails: xorshift16, seeded from the ticks
    clock. Not cryptographic; it only spreads translated ports. Slow path only."""

    def __init__(self):
        self.s = (ticks_ms() & 0xFFFF) or 0xACE1

    def __call__(self, n):
        out = bytearray(n)
        s = self.s
        for i in range(n):
            s ^= (s << 7) & 0xFFFF
            s ^= s >> 9
            s ^= (s << 8) & 0xFFFF
            out[i] = s & 0xFF
        self.s = s
        return bytes(out)


urandom = _os_urandom() or _Xorshift()
