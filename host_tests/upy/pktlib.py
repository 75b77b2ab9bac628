# A tiny IPv4 packet builder and checker for tests that run on MicroPython, where scapy
# is not available. Full checksums computed here, independently of the engine's
# incremental updates (RFC 1071). Addresses are "a.b.c.d" strings or ints.
TCP = 6
UDP = 17
ICMP = 1


def addr(a):
    if isinstance(a, int):
        return bytes(((a >> 24) & 255, (a >> 16) & 255, (a >> 8) & 255, a & 255))
    return bytes(int(x) for x in a.split("."))


def ones_sum(data, s=0):
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum(data, s=0):
    return ~ones_sum(data, s) & 0xFFFF


def put16(b, at, v):
    b[at] = v >> 8
    b[at + 1] = v & 255


def ipv4(proto, src, dst, l4, ttl=64, ident=1, options=b""):
    """An IPv4 packet around the transport bytes l4, whose checksum this fills in."""
    hl = 20 + len(options)
    b = bytearray(hl + len(l4))
    b[0] = 0x40 | (hl >> 2)
    put16(b, 2, len(b))
    put16(b, 4, ident)
    b[8] = ttl
    b[9] = proto
    b[12:16] = addr(src)
    b[16:20] = addr(dst)
    b[20:hl] = options
    b[hl:] = l4
    put16(b, 10, checksum(b[:hl]))
    at = {TCP: 16, UDP: 6, ICMP: 2}.get(proto)
    if at is not None:
        put16(b, hl + at, l4_checksum(b, hl))
    return b


def l4_checksum(b, hl):
    """The transport checksum b should carry (its own checksum field taken as 0)."""
    proto = b[9]
    seg = bytearray(b[hl:(b[2] << 8 | b[3])])
    at = {TCP: 16, UDP: 6, ICMP: 2}[proto]
    seg[at] = seg[at + 1] = 0
    if proto == ICMP:
        return checksum(seg)
    pseudo = bytes(b[12:20]) + bytes((0, proto, len(seg) >> 8, len(seg) & 255))
    c = checksum(seg, ones_sum(pseudo))
    return 0xFFFF if (proto == UDP and c == 0) else c


def tcp(src, dst, sport, dport, ttl=64, payload=b"", flags=0x18):
    h = bytearray(20)
    put16(h, 0, sport)
    put16(h, 2, dport)
    h[4:8] = b"\x00\x00\x10\x00"  # sequence number
    h[12] = 5 << 4
    h[13] = flags
    put16(h, 14, 8192)
    return ipv4(TCP, src, dst, bytes(h) + payload, ttl)


def udp(src, dst, sport, dport, ttl=64, payload=b"", nocsum=False):
    h = bytearray(8)
    put16(h, 0, sport)
    put16(h, 2, dport)
    put16(h, 4, 8 + len(payload))
    b = ipv4(UDP, src, dst, bytes(h) + payload, ttl)
    if nocsum:
        b[26] = b[27] = 0
    return b


def echo(src, dst, ident, ttl=64, reply=False, payload=b"ping"):
    h = bytearray(8)
    h[0] = 0 if reply else 8
    put16(h, 4, ident)
    put16(h, 6, 1)
    return ipv4(ICMP, src, dst, bytes(h) + payload, ttl)


def icmp_error(src, dst, quoted, ttl=64, typ=3, code=3):
    h = bytearray(8)
    h[0] = typ
    h[1] = code
    return ipv4(ICMP, src, dst, bytes(h) + bytes(quoted), ttl)


def cut(pkt, n=8):
    """What an ICMP error quotes: the IP header and n bytes after it (RFC 792)."""
    return bytes(pkt[:(pkt[0] & 15) * 4 + n])


def valid(b):
    """Whether b's IPv4 header checksum and (for a whole TCP, UDP or ICMP packet) its
    transport checksum are right; an ICMP error's quoted IP header is checked too."""
    hl = (b[0] & 15) * 4
    if ones_sum(b[:hl]) != 0xFFFF:
        return False
    proto = b[9]
    at = {TCP: 16, UDP: 6, ICMP: 2}.get(proto)
    if at is None:
        return True
    got = b[hl + at] << 8 | b[hl + at + 1]
    if proto == UDP and got == 0:
        return True
    if got != l4_checksum(b, hl):
        return False
    if proto == ICMP and b[hl] in (3, 4, 5, 11, 12):
        inner = hl + 8
        return ones_sum(b[inner:inner + (b[inner] & 15) * 4]) == 0xFFFF
    return True


def field(b, what):
    """Read a header field by name: src, dst (ints), sport, dport, ttl, id (ICMP)."""
    hl = (b[0] & 15) * 4
    if what in ("src", "dst"):
        at = 12 if what == "src" else 16
        return b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]
    if what == "ttl":
        return b[8]
    at = {"sport": hl, "dport": hl + 2, "id": hl + 4}[what]
    return b[at] << 8 | b[at + 1]


def run_cases(cases, tag, pure_flag, pure=False, names=None):
    """Run case functions, print FAIL details and one summary line `<tag> passed=.. failed=..
    pure=..`; pure_flag is the calling module's PURE list, set for the run."""
    import sys
    pure_flag[0] = pure
    failed = ran = 0
    for case in cases:
        if names and case.__name__ not in names:
            continue
        ran += 1
        try:
            case()
        except Exception as e:
            failed += 1
            print("FAIL %s:" % case.__name__)
            if hasattr(sys, "print_exception"):
                sys.print_exception(e, sys.stdout)
            else:
                import traceback
                traceback.print_exception(e, file=sys.stdout)
    print("%s passed=%d failed=%d pure=%d" % (tag, ran - failed, failed, 1 if pure else 0))
    pure_flag[0] = False
    return failed
