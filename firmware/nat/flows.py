# The flow table's hash index and the pure-Python translation of a packet of a known
# flow: the twin of the viper core in _viper.py, and what CPython and the WASI build run.
# Layout: consts.py. Everything here works on 16-bit words (small ints on any MicroPython).
from .consts import const  # micropython.const, or a stand-in on CPython

# Copies of consts.py values: MicroPython inlines only a module's own const()s.
# test_engine_layout checks that they agree.
_F_L4 = const(2)
_F_TTL = const(4)
_F_KIND = const(5)
_F_SPORT = const(6)
_F_DPORT = const(7)
_K_TCP = const(1)
_K_UDP = const(2)
_H_MASK = const(0)
_H_MRU = const(2)
_H_LRU = const(3)
_H_NOW_HI = const(6)
_H_NOW_LO = const(7)
_H_SEED = const(8)
_HDR = const(10)
_S_NEXT = const(12)
_S_NEWER = const(14)
_S_OLDER = const(15)
_S_TIME_HI = const(16)
_S_TIME_LO = const(17)
_SLOT = const(20)
_NONE = const(0xFFFF)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)


def bucket(mem, a, b, c, d, e, g):
    # Multipliers carry low bits upwards, the shifts bring high bits down; every
    # intermediate stays below 2**24 so this is exact on 32-bit MicroPython and viper.
    x = (b ^ mem[_H_SEED]) * 37 + d * 101 + e * 13 + g * 7 + a + c * 3
    return (x ^ (x >> 9) ^ (x >> 17)) & mem[_H_MASK]


def find(mem, heads, a, b, c, d, e, g):
    """The chain entry (slot * 2 + direction) keyed (a, b, c, d, e, g), or NONE."""
    ent = heads[bucket(mem, a, b, c, d, e, g)]
    while ent != _NONE:
        k = _HDR + (ent >> 1) * _SLOT + (ent & 1) * 6
        if (mem[k + 4] == e and mem[k + 5] == g and mem[k + 1] == b and mem[k + 3] == d
                and mem[k] == a and mem[k + 2] == c):
            return ent
        ent = mem[_HDR + (ent >> 1) * _SLOT + _S_NEXT + (ent & 1)]
    return _NONE


def touch(mem, s):
    """Make slot s the most recently used, stamped with the table's clock."""
    slot = _HDR + s * _SLOT
    mru = mem[_H_MRU]
    if mru != s:
        newer = mem[slot + _S_NEWER]
        older = mem[slot + _S_OLDER]
        mem[_HDR + newer * _SLOT + _S_OLDER] = older
        if older == _NONE:
            mem[_H_LRU] = newer
        else:
            mem[_HDR + older * _SLOT + _S_NEWER] = newer
        mem[slot + _S_NEWER] = _NONE
        mem[slot + _S_OLDER] = mru
        mem[_HDR + mru * _SLOT + _S_NEWER] = s
        mem[_H_MRU] = s
    mem[slot + _S_TIME_HI] = mem[_H_NOW_HI]
    mem[slot + _S_TIME_LO] = mem[_H_NOW_LO]


def fold(x):
    """One's complement sum of 16-bit words, folded to 16 bits (x < 2**32)."""
    x = (x & 0xFFFF) + (x >> 16)
    return (x & 0xFFFF) + (x >> 16)


def put16(buf, at, v):
    buf[at] = v >> 8
    buf[at + 1] = v & 0xFF


def translate_py(buf, f, mem, heads):
    """Translate a parsed TCP, UDP or ICMP query packet in place. Returns a status."""
    a = buf[12] << 8 | buf[13]
    b = buf[14] << 8 | buf[15]
    c = buf[16] << 8 | buf[17]
    d = buf[18] << 8 | buf[19]
    sp = f[_F_SPORT]
    dp = f[_F_DPORT]
    ent = find(mem, heads, a, b, c, d, sp, dp)
    if ent == _NONE:
        return _UNTRANSLATED
    ttl = buf[8]
    if ttl <= 1:
        return _TTL_EXCEEDED  # RFC 1812 5.3.1: never forward with TTL 0
    # The packet leaves as the other direction's key, reversed.
    o = _HDR + (ent >> 1) * _SLOT + 6 - (ent & 1) * 6
    na = mem[o + 2]
    nb = mem[o + 3]
    nc = mem[o]
    nd = mem[o + 1]
    nsp = mem[o + 5]
    ndp = mem[o + 4]
    # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). addr is the address part, shared by the
    # IP header and the TCP/UDP pseudo-header.
    addr = (0xFFFF ^ a) + na + (0xFFFF ^ b) + nb + (0xFFFF ^ c) + nc + (0xFFFF ^ d) + nd
    # ~(ttl, proto) + (ttl - 1, proto) is always 0xFEFF.
    hc = fold((0xFFFF ^ (buf[10] << 8 | buf[11])) + addr + 0xFEFF) ^ 0xFFFF
    buf[8] = ttl - 1
    put16(buf, 10, hc)
    put16(buf, 12, na)
    put16(buf, 14, nb)
    put16(buf, 16, nc)
    put16(buf, 18, nd)
    hl = f[_F_L4]
    kind = f[_F_KIND]
    if kind == _K_TCP or kind == _K_UDP:
        at = hl + 16 if kind == _K_TCP else hl + 6
        old = buf[at] << 8 | buf[at + 1]
        if old or kind == _K_TCP:  # a UDP checksum of 0 means "none" and stays 0
            x = fold((0xFFFF ^ old) + addr + (0xFFFF ^ sp) + nsp + (0xFFFF ^ dp) + ndp) ^ 0xFFFF
            if x == 0 and kind == _K_UDP:
                x = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
            put16(buf, at, x)
        put16(buf, hl, nsp)
        put16(buf, hl + 2, ndp)
    else:  # ICMP query: the id appears once, and ICMP has no pseudo-header
        at = hl + 2
        x = fold((0xFFFF ^ (buf[at] << 8 | buf[at + 1])) + (0xFFFF ^ sp) + nsp) ^ 0xFFFF
        put16(buf, at, x)
        put16(buf, hl + 4, nsp)
    f[_F_TTL] = ttl - 1
    f[_F_SPORT] = nsp
    f[_F_DPORT] = ndp
    touch(mem, ent >> 1)
    return 0
