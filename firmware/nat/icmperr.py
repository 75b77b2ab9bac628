# ICMP errors (RFC 5508 section 4): matched by the packet they quote, reversed, and
# translated back so the quoted packet reads as the inside host sent it. Errors are
# rare, so this one pure-Python path serves every core; it allocates nothing either.
from .consts import const  # micropython.const, or a stand-in on CPython

from .flows import expired, find
from .checksum import fold, get16, put16, sum16

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_MALFORMED = const(5)
_QUERY_TYPES = const(0x7E101)
_IP_FRAG = const(6)
_IP_TTL = const(8)
_IP_PROTO = const(9)
_IP_CSUM = const(10)
_IP_SRC = const(12)
_IP_DST = const(16)
_IP_MIN = const(20)
_L4_SPORT = const(0)
_L4_DPORT = const(2)
_TCP_CSUM = const(16)
_UDP_CSUM = const(6)
_ICMP_CSUM = const(2)
_ICMP_ID = const(4)
_F_LEN = const(1)
_F_L4 = const(2)
_F_TTL = const(4)
_F_TYPE = const(8)
_K_TCP = const(1)
_K_UDP = const(2)
_K_QUERY = const(3)
_HDR = const(12)
_KEY_SRC_HI = const(0)
_KEY_SRC_LO = const(1)
_KEY_DST_HI = const(2)
_KEY_DST_LO = const(3)
_KEY_SPORT = const(4)
_KEY_DPORT = const(5)
_S_KEY1 = const(6)
_S_STATE = const(17)
_SLOT = const(18)
_FL_REDIRECT = const(2)
_NONE = const(0xFFFF)
# ---- end of layout
_ICMP_LENGTH = const(5)    # RFC 4884: the quote's length, in 32-bit words
_ICMP_HEADER = const(8)    # type, code, checksum, 4 bytes; the quote follows
_QUOTE_MIN = const(28)     # an IPv4 header and 8 bytes of what it carried (RFC 792)


def translate_error(buf, f, mems, heads):
    """mems[kind], heads[kind]: the flow tables of K_TCP, K_UDP, K_QUERY. Returns a status."""
    hl = f[_F_L4]
    end = f[_F_LEN]
    inner = hl + _ICMP_HEADER
    quoted_end = end
    if f[_F_TYPE] in (3, 11, 12) and buf[hl + _ICMP_LENGTH]:
        # RFC 4884: the quoted datagram's length, in 32-bit words; extensions follow it.
        quoted_end = inner + buf[hl + _ICMP_LENGTH] * 4
        if quoted_end > end:
            return _MALFORMED
    # RFC 5508 REQ-3: a bad ICMP checksum or a bad quoted IP header is dropped.
    if sum16(buf, hl, end) != 0xFFFF:
        return _MALFORMED
    if quoted_end - inner < _QUOTE_MIN:
        return _MALFORMED
    b0 = buf[inner]
    ihl = (b0 & 15) << 2
    if b0 >> 4 != 4 or ihl < _IP_MIN or inner + ihl + 8 > quoted_end:
        return _MALFORMED
    if sum16(buf, inner, inner + ihl) != 0xFFFF:
        return _MALFORMED
    if (buf[inner + _IP_FRAG] & 0x1F) | buf[inner + _IP_FRAG + 1]:
        return _UNTRANSLATED  # quotes a non-first fragment: no ports to match
    proto = buf[inner + _IP_PROTO]
    il4 = inner + ihl
    csum_at = 0
    if proto == 6 or proto == 17:
        kind = _K_TCP if proto == 6 else _K_UDP
        sp = buf[il4 + _L4_SPORT] << 8 | buf[il4 + _L4_SPORT + 1]
        dp = buf[il4 + _L4_DPORT] << 8 | buf[il4 + _L4_DPORT + 1]
        if proto == 17:
            csum_at = il4 + _UDP_CSUM
        elif quoted_end - il4 >= _TCP_CSUM + 2:
            csum_at = il4 + _TCP_CSUM  # only a longer quote holds the TCP checksum
    elif proto == 1 and buf[il4] < 32 and (_QUERY_TYPES >> buf[il4]) & 1:
        kind = _K_QUERY
        sp = dp = buf[il4 + _ICMP_ID] << 8 | buf[il4 + _ICMP_ID + 1]
        csum_at = il4 + _ICMP_CSUM
    else:
        return _UNTRANSLATED
    ia = buf[inner + _IP_SRC] << 8 | buf[inner + _IP_SRC + 1]
    ib = buf[inner + _IP_SRC + 2] << 8 | buf[inner + _IP_SRC + 3]
    if get16(buf, _IP_DST) != ia or get16(buf, _IP_DST + 2) != ib:
        return _UNTRANSLATED  # an error goes back to the sender of what it quotes
    ic = buf[inner + _IP_DST] << 8 | buf[inner + _IP_DST + 1]
    idd = buf[inner + _IP_DST + 2] << 8 | buf[inner + _IP_DST + 3]
    mem = mems[kind]
    ent = find(mem, heads[kind], ic, idd, ia, ib, dp, sp)
    if ent == _NONE or expired(mem, ent >> 1):
        return _UNTRANSLATED  # RFC 5508 REQ-4/5: no mapping, no translation
    # It travels from the inside when what it quotes left towards the inside: matched by
    # direction 0 of a flow the inside opened, or direction 1 of a REDIRECT flow.
    from_inside = (ent & 1 == 0) != bool(mem[_HDR + (ent >> 1) * _SLOT + _S_STATE] & _FL_REDIRECT)
    ttl = buf[_IP_TTL]
    if ttl <= 1:
        return _TTL_EXCEEDED
    # The quoted packet becomes the other direction's key as it is.
    o = _HDR + (ent >> 1) * _SLOT + _S_KEY1 - (ent & 1) * _S_KEY1
    na = mem[o + _KEY_SRC_HI]
    nb = mem[o + _KEY_SRC_LO]
    nc = mem[o + _KEY_DST_HI]
    nd = mem[o + _KEY_DST_LO]
    nsp = mem[o + _KEY_SPORT]
    ndp = mem[o + _KEY_DPORT]
    addr = (0xFFFF ^ ia) + na + (0xFFFF ^ ib) + nb + (0xFFFF ^ ic) + nc + (0xFFFF ^ idd) + nd
    ports = (0xFFFF ^ sp) + nsp
    if kind != _K_QUERY:
        ports += (0xFFFF ^ dp) + ndp
    # Everything rewritten inside the ICMP message adds to its checksum's delta.
    icmp = addr + ports
    old = buf[inner + _IP_CSUM] << 8 | buf[inner + _IP_CSUM + 1]
    new = fold((0xFFFF ^ old) + addr) ^ 0xFFFF
    put16(buf, inner + _IP_CSUM, new)
    icmp += (0xFFFF ^ old) + new
    if csum_at:
        old = buf[csum_at] << 8 | buf[csum_at + 1]
        if old or kind != _K_UDP:
            new = fold((0xFFFF ^ old) + (ports if kind == _K_QUERY else addr + ports)) ^ 0xFFFF
            if new == 0 and kind == _K_UDP:
                new = 0xFFFF
            put16(buf, csum_at, new)
            icmp += (0xFFFF ^ old) + new
    put16(buf, inner + _IP_SRC, na)
    put16(buf, inner + _IP_SRC + 2, nb)
    put16(buf, inner + _IP_DST, nc)
    put16(buf, inner + _IP_DST + 2, nd)
    if kind == _K_QUERY:
        put16(buf, il4 + _ICMP_ID, nsp)
    else:
        put16(buf, il4 + _L4_SPORT, nsp)
        put16(buf, il4 + _L4_DPORT, ndp)
    old = buf[hl + _ICMP_CSUM] << 8 | buf[hl + _ICMP_CSUM + 1]
    put16(buf, hl + _ICMP_CSUM, fold((0xFFFF ^ old) + fold(icmp)) ^ 0xFFFF)
    # Outer header: the destination becomes the quoted packet's sender. The source is
    # translated like the quoted packet's destination when the error comes from the
    # inside (RFC 5508 REQ-5: an inside host or an inside router, 4.2.2: the public
    # address) or from that destination itself; an outside router's address is kept.
    outer = (0xFEFF + (0xFFFF ^ get16(buf, _IP_DST)) + na
             + (0xFFFF ^ get16(buf, _IP_DST + 2)) + nb)
    put16(buf, _IP_DST, na)
    put16(buf, _IP_DST + 2, nb)
    oh, ol = get16(buf, _IP_SRC), get16(buf, _IP_SRC + 2)
    if from_inside or (oh == ic and ol == idd):
        outer += (0xFFFF ^ oh) + nc + (0xFFFF ^ ol) + nd
        put16(buf, _IP_SRC, nc)
        put16(buf, _IP_SRC + 2, nd)
    old = get16(buf, _IP_CSUM)
    put16(buf, _IP_CSUM, fold((0xFFFF ^ old) + fold(outer)) ^ 0xFFFF)
    buf[_IP_TTL] = ttl - 1
    f[_F_TTL] = ttl - 1
    return _OK
