# capture.py's writes into its ring, compiled by viper where the engine runs viper (the
# unix port, the ESP32): the same bytes as its pure-Python twins put32_py and copy_py,
# which host_tests/test_capture.py compares with these on the unix port.
import micropython


@micropython.viper
def put32(ring, at: int, hi: int, lo: int) -> int:
    """The little-endian 32-bit word hi.lo (16-bit halves) at ring[at], wrapping at its
    end; returns where the next byte goes."""
    p = ptr8(ring)
    size = int(len(ring))
    word = (hi << 16) | lo
    i = 0
    while i < 4:
        p[at] = word & 0xFF
        word = word >> 8
        at += 1
        if at == size:
            at = 0
        i += 1
    return at


@micropython.viper
def copy(ring, at: int, buf, n: int) -> int:
    """buf[0:n] into ring from at, wrapping at its end; returns where the next byte goes."""
    p = ptr8(ring)
    q = ptr8(buf)
    size = int(len(ring))
    i = 0
    while i < n:
        p[at] = q[i]
        at += 1
        if at == size:
            at = 0
        i += 1
    return at
