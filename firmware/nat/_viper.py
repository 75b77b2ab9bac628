# The viper core: parse() and translate() compiled to machine code, for ports with
# native emitters (the unix port, the ESP32). The pure-Python twins are
# packet.parse_py and flows.translate_py; host tests run both on the same packets.
# Importing this where viper is missing fails, and the twins serve instead.
import micropython
from micropython import const

_MALFORMED = const(5)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_QUERY_TYPES = const(0x7E101)  # bits 0, 8, 13-18: echo, timestamp, information, mask
_ERROR_TYPES = const(0x1838)   # bits 3, 4, 5, 11, 12
_HDR = const(10)
_SLOT = const(20)
_NONE = const(0xFFFF)


@micropython.viper
def parse(buf, n: int, f) -> int:
    p = ptr8(buf)
    w = ptr16(f)
    w[0] = 0
    if n < 20 or n > int(len(buf)):
        return _MALFORMED
    b0 = p[0]
    hl = (b0 & 15) << 2
    if (b0 >> 4) != 4 or hl < 20:
        return _MALFORMED
    tl = (p[2] << 8) | p[3]
    if tl < hl or tl > n:
        return _MALFORMED
    s = 0
    i = 0
    while i < hl:
        s += (p[i] << 8) | p[i + 1]
        i += 2
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    if s != 0xFFFF:
        return _MALFORMED
    proto = p[9]
    kind = 0
    sport = 0
    dport = 0
    typ = 0xFFFF
    code = 0xFFFF
    if ((p[6] & 0x1F) | p[7]) == 0:
        room = tl - hl
        if proto == 6:
            if room < 20:
                return _MALFORMED
            doff = (p[hl + 12] >> 4) << 2
            if doff < 20 or doff > room:
                return _MALFORMED
            kind = 1
        elif proto == 17:
            if room < 8:
                return _MALFORMED
            kind = 2
        elif proto == 1:
            if room < 8:
                return _MALFORMED
            typ = p[hl]
            code = p[hl + 1]
            if typ < 32 and (_QUERY_TYPES >> typ) & 1:
                kind = 3
                sport = (p[hl + 4] << 8) | p[hl + 5]
                dport = sport
            elif typ < 32 and (_ERROR_TYPES >> typ) & 1:
                kind = 4
        if kind == 1 or kind == 2:
            sport = (p[hl] << 8) | p[hl + 1]
            dport = (p[hl + 2] << 8) | p[hl + 3]
    w[1] = tl
    w[2] = hl
    w[3] = proto
    w[4] = p[8]
    w[5] = kind
    w[6] = sport
    w[7] = dport
    w[8] = typ
    w[9] = code
    w[0] = 1
    return 0


@micropython.viper
def translate(buf, f, mem, heads) -> int:
    p = ptr8(buf)
    w = ptr16(f)
    m = ptr16(mem)
    hd = ptr16(heads)
    a = (p[12] << 8) | p[13]
    b = (p[14] << 8) | p[15]
    c = (p[16] << 8) | p[17]
    d = (p[18] << 8) | p[19]
    sp = w[6]
    dp = w[7]
    # flows.bucket and flows.find
    x = (b ^ m[8]) * 37 + d * 101 + sp * 13 + dp * 7 + a + c * 3
    ent = hd[(x ^ (x >> 9) ^ (x >> 17)) & m[0]]
    while ent != _NONE:
        k = _HDR + (ent >> 1) * _SLOT + (ent & 1) * 6
        if m[k + 4] == sp and m[k + 5] == dp and m[k + 1] == b and m[k + 3] == d \
                and m[k] == a and m[k + 2] == c:
            break
        ent = m[_HDR + (ent >> 1) * _SLOT + 12 + (ent & 1)]
    if ent == _NONE:
        return _UNTRANSLATED
    ttl = p[8]
    if ttl <= 1:
        return _TTL_EXCEEDED
    s = ent >> 1
    slot = _HDR + s * _SLOT
    o = slot + 6 - (ent & 1) * 6
    na = m[o + 2]
    nb = m[o + 3]
    nc = m[o]
    nd = m[o + 1]
    nsp = m[o + 5]
    ndp = m[o + 4]
    addr = (0xFFFF ^ a) + na + (0xFFFF ^ b) + nb + (0xFFFF ^ c) + nc + (0xFFFF ^ d) + nd
    x = (0xFFFF ^ ((p[10] << 8) | p[11])) + addr + 0xFEFF
    x = (x & 0xFFFF) + (x >> 16)
    x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
    p[8] = ttl - 1
    p[10] = x >> 8
    p[11] = x
    p[12] = na >> 8
    p[13] = na
    p[14] = nb >> 8
    p[15] = nb
    p[16] = nc >> 8
    p[17] = nc
    p[18] = nd >> 8
    p[19] = nd
    hl = w[2]
    kind = w[5]
    if kind == 1 or kind == 2:
        at = hl + 6
        if kind == 1:
            at = hl + 16
        old = (p[at] << 8) | p[at + 1]
        if old != 0 or kind == 1:  # a UDP checksum of 0 stays 0
            x = (0xFFFF ^ old) + addr + (0xFFFF ^ sp) + nsp + (0xFFFF ^ dp) + ndp
            x = (x & 0xFFFF) + (x >> 16)
            x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
            if x == 0 and kind == 2:
                x = 0xFFFF
            p[at] = x >> 8
            p[at + 1] = x
        p[hl] = nsp >> 8
        p[hl + 1] = nsp
        p[hl + 2] = ndp >> 8
        p[hl + 3] = ndp
    else:
        at = hl + 2
        x = (0xFFFF ^ ((p[at] << 8) | p[at + 1])) + (0xFFFF ^ sp) + nsp
        x = (x & 0xFFFF) + (x >> 16)
        x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
        p[at] = x >> 8
        p[at + 1] = x
        p[hl + 4] = nsp >> 8
        p[hl + 5] = nsp
    w[4] = ttl - 1
    w[6] = nsp
    w[7] = ndp
    # flows.touch: most recently used, stamped with the table's clock.
    mru = m[2]
    if mru != s:
        newer = m[slot + 14]
        older = m[slot + 15]
        m[_HDR + newer * _SLOT + 15] = older
        if older == _NONE:
            m[3] = newer
        else:
            m[_HDR + older * _SLOT + 14] = newer
        m[slot + 14] = _NONE
        m[slot + 15] = mru
        m[_HDR + mru * _SLOT + 14] = s
        m[2] = s
    m[slot + 16] = m[6]
    m[slot + 17] = m[7]
    return 0
