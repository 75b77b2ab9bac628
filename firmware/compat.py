# What differs between the runtimes the firmware runs on (MicroPython on a board or the
# unix port, the 32-bit WASI build, CPython in host tests and tools), answered once.
# No other firmware module asks which runtime it is on.
from array import array

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:  # CPython: the same 2**30 ms wrap as MicroPython's ticks
    from time import monotonic, sleep

    def ticks_ms():
        return int(monotonic() * 1000) & 0x3FFFFFFF

    def ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    def sleep_ms(ms):
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
    clock. Not cryptographic; it only spreads translated ports and hash seeds. Slow path
    only."""

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


try:
    from gc import mem_free, mem_alloc
except ImportError:  # CPython: no fixed heap to measure
    mem_free = mem_alloc = None


def zeros(typecode, n, fill=0):
    """array(typecode) of n items set to fill, allocated once and in place: a bytes or
    list to copy from would be a temporary as large (twice the array at the peak, and in a
    fragmented heap one more block that must be found)."""
    try:
        return array(typecode, [fill]) * n  # CPython
    except TypeError:
        # MicroPython's arrays do not repeat; a sized iterable is stored straight into
        # an array of its length.
        a = array(typecode, range(n))
        for i in range(n):
            a[i] = fill
        return a
