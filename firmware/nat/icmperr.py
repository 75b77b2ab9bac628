# ICMP errors (RFC 5508 section 4): matched by the packet they quote, reversed, and
# translated back so the quoted packet reads as the inside host sent it. Errors are
# rare, so one pure-Python path serves every runtime; it allocates nothing either.
from .consts import const  # micropython.const, or a stand-in on CPython

from .flows import find, fold, put16

_F_L4 = const(2)
_F_LEN = const(1)
_F_TTL = const(4)
_F_TYPE = const(8)
_HDR = const(10)
_SLOT = const(20)
_NONE = const(0xFFFF)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_MALFORMED = const(5)


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


def translate_error(buf, f, mems, heads):
    """mems[kind], heads[kind]: the flow table of K_TCP, K_UDP, K_QUERY. Returns a status."""
    hl = f[_F_L4]
    end = f[_F_LEN]
    inner = hl + 8
    quoted_end = end
    if f[_F_TYPE] in (3, 11, 12) and buf[hl + 5]:
        # RFC 4884: the quoted datagram's length, in 32-bit words; extensions follow it.
        quoted_end = inner + buf[hl + 5] * 4
        if quoted_end > end:
            return _MALFORMED
    # RFC 5508 REQ-3: a bad ICMP checksum or a bad quoted IP header is dropped.
    if sum16(buf, hl, end) != 0xFFFF:
        return _MALFORMED
    if quoted_end - inner < 28:  # a quote holds an IP header and 8 bytes at least
        return _MALFORMED
    b0 = buf[inner]
    ihl = (b0 & 15) << 2
    if b0 >> 4 != 4 or ihl < 20 or inner + ihl + 8 > quoted_end:
        return _MALFORMED
    if sum16(buf, inner, inner + ihl) != 0xFFFF:
        return _MALFORMED
    if (buf[inner + 6] & 0x1F) | buf[inner + 7]:
        return _UNTRANSLATED  # quotes a non-first fragment: no ports to match
    proto = buf[inner + 9]
    il4 = inner + ihl
    csum_at = 0
    if proto == 6 or proto == 17:
        kind = 1 if proto == 6 else 2
        sp = buf[il4] << 8 | buf[il4 + 1]
        dp = buf[il4 + 2] << 8 | buf[il4 + 3]
        if proto == 17:
            csum_at = il4 + 6
        elif quoted_end - il4 >= 18:
            csum_at = il4 + 16  # only a longer quote holds the TCP checksum
    elif proto == 1 and buf[il4] in (0, 8, 13, 14, 15, 16, 17, 18):
        kind = 3
        sp = dp = buf[il4 + 4] << 8 | buf[il4 + 5]
        csum_at = il4 + 2
    else:
        return _UNTRANSLATED
    ia = buf[inner + 12] << 8 | buf[inner + 13]
    ib = buf[inner + 14] << 8 | buf[inner + 15]
    ic = buf[inner + 16] << 8 | buf[inner + 17]
    idd = buf[inner + 18] << 8 | buf[inner + 19]
    mem = mems[kind]
    ent = find(mem, heads[kind], ic, idd, ia, ib, dp, sp)
    if ent == _NONE:
        return _UNTRANSLATED  # RFC 5508 REQ-4/5: no mapping, no translation
    ttl = buf[8]
    if ttl <= 1:
        return _TTL_EXCEEDED
    # The quoted packet becomes the other direction's key as it is.
    o = _HDR + (ent >> 1) * _SLOT + 6 - (ent & 1) * 6
    na = mem[o]
    nb = mem[o + 1]
    nc = mem[o + 2]
    nd = mem[o + 3]
    nsp = mem[o + 4]
    ndp = mem[o + 5]
    addr = (0xFFFF ^ ia) + na + (0xFFFF ^ ib) + nb + (0xFFFF ^ ic) + nc + (0xFFFF ^ idd) + nd
    ports = (0xFFFF ^ sp) + nsp
    if kind != 3:
        ports += (0xFFFF ^ dp) + ndp
    # Everything rewritten inside the ICMP message adds to its checksum's delta.
    icmp = addr + ports
    old = buf[inner + 10] << 8 | buf[inner + 11]
    new = fold((0xFFFF ^ old) + addr) ^ 0xFFFF
    put16(buf, inner + 10, new)
    icmp += (0xFFFF ^ old) + new
    if csum_at:
        old = buf[csum_at] << 8 | buf[csum_at + 1]
        if old or kind != 2:
            new = fold((0xFFFF ^ old) + (ports if kind == 3 else addr + ports)) ^ 0xFFFF
            if new == 0 and kind == 2:
                new = 0xFFFF
            put16(buf, csum_at, new)
            icmp += (0xFFFF ^ old) + new
    put16(buf, inner + 12, na)
    put16(buf, inner + 14, nb)
    put16(buf, inner + 16, nc)
    put16(buf, inner + 18, nd)
    if kind == 3:
        put16(buf, il4 + 4, nsp)
    else:
        put16(buf, il4, nsp)
        put16(buf, il4 + 2, ndp)
    old = buf[hl + 2] << 8 | buf[hl + 3]
    put16(buf, hl + 2, fold((0xFFFF ^ old) + fold(icmp)) ^ 0xFFFF)
    # Outer header: the destination becomes the quoted packet's sender. The source is
    # kept (an intermediate router) unless it is the quoted packet's own destination:
    # then it is translated like that address (RFC 5508 REQ-5: the public address).
    outer = 0xFEFF + (0xFFFF ^ (buf[16] << 8 | buf[17])) + na + (0xFFFF ^ (buf[18] << 8 | buf[19])) + nb
    put16(buf, 16, na)
    put16(buf, 18, nb)
    if (buf[12] << 8 | buf[13]) == ic and (buf[14] << 8 | buf[15]) == idd:
        outer += (0xFFFF ^ ic) + nc + (0xFFFF ^ idd) + nd
        put16(buf, 12, nc)
        put16(buf, 14, nd)
    old = buf[10] << 8 | buf[11]
    put16(buf, 10, fold((0xFFFF ^ old) + fold(outer)) ^ 0xFFFF)
    buf[8] = ttl - 1
    f[_F_TTL] = ttl - 1
    return 0
