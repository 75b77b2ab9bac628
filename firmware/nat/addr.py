# Dotted-quad <-> 32-bit int. Slow path only: on a 32-bit MicroPython most
# addresses are heap ints, so the per-packet path never calls these.


def ip(text):
    if not isinstance(text, str):
        raise ValueError("IPv4 address must be a string: %r" % (text,))
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address: %r" % text)
    n = 0
    for part in parts:
        # int() alone would accept ' 1', '+1' and '0x1'.
        if not part or len(part) > 3 or not all("0" <= c <= "9" for c in part):
            raise ValueError("not an IPv4 address: %r" % text)
        v = int(part)
        if v > 255:
            raise ValueError("not an IPv4 address: %r" % text)
        n = (n << 8) | v
    return n


def ip_str(n):
    if not isinstance(n, int) or n < 0 or n > 0xFFFFFFFF:
        raise ValueError("not a 32-bit address: %r" % (n,))
    return "%d.%d.%d.%d" % ((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255)


def ip_bytes(n):
    """The address n as its 4 bytes, network order."""
    return bytes(((n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255))


def unroutable(a):
    """0/8, 127/8, 169.254/16 (link-local, RFC 3927), 224/4 (multicast, all scopes) and
    240/4 (255.255.255.255 too): never a host's address on a routed network."""
    top = a >> 24
    return top == 0 or top == 127 or top >= 224 or (a >> 16) == 0xA9FE
