# The CPython core: the same algorithms as the pure-Python twins (packet.parse_py,
# flows.translate_py) on the same arrays, with the byte shuffling done by struct and
# memoryview in C. CPython only: these calls allocate, which MicroPython must not.
import sys
from struct import Struct

if sys.implementation.name != "cpython":
    raise ImportError("CPython core")

_addrs = Struct(">4H")                 # src_hi, src_lo, dst_hi, dst_lo at offset 12
_head = Struct(">BBHHHHH")             # ttl, proto, checksum, addresses, from offset 8
_ports = Struct(">HH")
_word = Struct(">H")
_QUERY = frozenset((0, 8, 13, 14, 15, 16, 17, 18))
_ERROR = frozenset((3, 4, 5, 11, 12))


def parse(buf, n, f):
    f[0] = 0
    if n < 20 or n > len(buf):
        return 5
    b0 = buf[0]
    hl = (b0 & 15) << 2
    if b0 >> 4 != 4 or hl < 20:
        return 5
    tl = buf[2] << 8 | buf[3]
    if tl < hl or tl > n:
        return 5
    # Since 2**16 = 1 (mod 0xFFFF), the header read as one big number is congruent to the
    # sum of its 16-bit words: a valid header sums to 0xFFFF, i.e. 0 mod 0xFFFF.
    if int.from_bytes(buf[:hl], "big") % 0xFFFF:
        return 5
    proto = buf[9]
    kind = sport = dport = 0
    typ = code = 0xFFFF
    if not ((buf[6] & 0x1F) | buf[7]):
        room = tl - hl
        if proto == 6:
            if room < 20:
                return 5
            doff = (buf[hl + 12] >> 4) << 2
            if doff < 20 or doff > room:
                return 5
            kind = 1
            sport, dport = _ports.unpack_from(buf, hl)
        elif proto == 17:
            if room < 8:
                return 5
            kind = 2
            sport, dport = _ports.unpack_from(buf, hl)
        elif proto == 1:
            if room < 8:
                return 5
            typ = buf[hl]
            code = buf[hl + 1]
            if typ in _QUERY:
                kind = 3
                sport = dport = buf[hl + 4] << 8 | buf[hl + 5]
            elif typ in _ERROR:
                kind = 4
    f[1] = tl
    f[2] = hl
    f[3] = proto
    f[4] = buf[8]
    f[5] = kind
    f[6] = sport
    f[7] = dport
    f[8] = typ
    f[9] = code
    f[0] = 1
    return 0


def translate(buf, f, mem, heads):
    a, b, c, d = _addrs.unpack_from(buf, 12)
    sp = f[6]
    dp = f[7]
    x = (b ^ mem[8]) * 37 + d * 101 + sp * 13 + dp * 7 + a + c * 3
    ent = heads[(x ^ (x >> 9) ^ (x >> 17)) & mem[0]]
    while ent != 0xFFFF:
        k = 10 + (ent >> 1) * 20 + (ent & 1) * 6
        if (mem[k + 4] == sp and mem[k + 5] == dp and mem[k + 1] == b and mem[k + 3] == d
                and mem[k] == a and mem[k + 2] == c):
            break
        ent = mem[10 + (ent >> 1) * 20 + 12 + (ent & 1)]
    else:
        return 1
    ttl = buf[8]
    if ttl <= 1:
        return 2
    s = ent >> 1
    slot = 10 + s * 20
    o = slot + 6 - (ent & 1) * 6
    nc, nd, na, nb, ndp, nsp = mem[o:o + 6]
    addr = 0x3FFFC - a - b - c - d + na + nb + nc + nd  # sum of ~old + new, RFC 1624 eqn. 3
    x = 0xFFFF - (buf[10] << 8 | buf[11]) + addr + 0xFEFF
    x = (x & 0xFFFF) + (x >> 16)
    x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
    _head.pack_into(buf, 8, ttl - 1, buf[9], x, na, nb, nc, nd)
    hl = f[2]
    kind = f[5]
    if kind == 3:
        at = hl + 2
        x = 0xFFFF - (buf[at] << 8 | buf[at + 1]) + 0xFFFF - sp + nsp
        x = (x & 0xFFFF) + (x >> 16)
        _ports.pack_into(buf, at, ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF, nsp)
    else:
        at = hl + 16 if kind == 1 else hl + 6
        old = buf[at] << 8 | buf[at + 1]
        if old or kind == 1:  # a UDP checksum of 0 stays 0
            x = 0xFFFF - old + addr + 0x1FFFE - sp - dp + nsp + ndp
            x = (x & 0xFFFF) + (x >> 16)
            x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
            _word.pack_into(buf, at, x or (0xFFFF if kind == 2 else 0))
        _ports.pack_into(buf, hl, nsp, ndp)
    f[4] = ttl - 1
    f[6] = nsp
    f[7] = ndp
    mru = mem[2]
    if mru != s:
        newer = mem[slot + 14]
        older = mem[slot + 15]
        mem[10 + newer * 20 + 15] = older
        if older == 0xFFFF:
            mem[3] = newer
        else:
            mem[10 + older * 20 + 14] = newer
        mem[slot + 14] = 0xFFFF
        mem[slot + 15] = mru
        mem[10 + mru * 20 + 14] = s
        mem[2] = s
    mem[slot + 16] = mem[6]
    mem[slot + 17] = mem[7]
    return 0
