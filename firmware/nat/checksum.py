# One's complement arithmetic for IPv4 checksums (RFC 1071), incremental updates by
# RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Public: the router builds its own ICMP
# messages with these. Everything stays below 2**30, a small int on any MicroPython.


def fold(x):
    """One's complement sum of 16-bit words, folded to 16 bits (x < 2**32)."""
    x = (x & 0xFFFF) + (x >> 16)
    return (x & 0xFFFF) + (x >> 16)


def sum16(buf, start, end):
    """One's complement sum of buf[start:end], folded; an odd tail is padded with 0."""
    s = 0
    while start + 1 < end:
        s += buf[start] << 8 | buf[start + 1]
        start += 2
        if s > 0xFFFFFF:  # stay a small int on 32-bit ports
            s = (s & 0xFFFF) + (s >> 16)
    if start < end:
        s += buf[start] << 8
    return fold(s)


def get16(buf, at):
    return buf[at] << 8 | buf[at + 1]


def put16(buf, at, v):
    buf[at] = v >> 8
    buf[at + 1] = v & 0xFF


def update(csum, old, new):
    """The checksum csum after a 16-bit word changed from old to new (RFC 1624 eqn. 3)."""
    return fold((0xFFFF ^ csum) + (0xFFFF ^ old) + new) ^ 0xFFFF
