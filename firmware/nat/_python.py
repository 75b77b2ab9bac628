# The pure-Python core: parse() and translate(), the per-packet primitives. It is what
# CPython and the 32-bit WASI build run, and the reference the viper core (_viper.py)
# is compared with on every packet the tests build. Everything here works on bytes and
# 16-bit words, small ints on any MicroPython, so it allocates nothing either.
# Layout: consts.py.
from .consts import const  # micropython.const, or a stand-in on CPython
from .flows import find, timeout
from .checksum import fold, put16
from .icmperr import translate_error

_IP_LEN = const(2)
_IP_FRAG = const(6)
_IP_TTL = const(8)
_IP_PROTO = const(9)
_IP_CSUM = const(10)
_IP_SRC = const(12)
_IP_DST = const(16)
_IP_MIN = const(20)
_L4_SPORT = const(0)
_L4_DPORT = const(2)
_TCP_OFF = const(12)
_TCP_FLAGS = const(13)
_TCP_CSUM = const(16)
_TCP_MIN = const(20)
_UDP_LEN = const(4)
_UDP_CSUM = const(6)
_UDP_MIN = const(8)
_ICMP_CODE = const(1)
_ICMP_CSUM = const(2)
_ICMP_ID = const(4)
_ICMP_MIN = const(8)
_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_MALFORMED = const(5)
_TCP = const(6)
_UDP = const(17)
_ICMP = const(1)
_QUERY_TYPES = const(0x7E101)
_ERROR_TYPES = const(0x1838)
_NO_ICMP = const(0xFFFF)
_OPT_SOURCE_ROUTE = const(1)
_FRAG_MF = const(0x2000)
_REQUEST_TYPES = const(0x2A100)
_F_OK = const(0)
_F_LEN = const(1)
_F_L4 = const(2)
_F_PROTO = const(3)
_F_TTL = const(4)
_F_KIND = const(5)
_F_SPORT = const(6)
_F_DPORT = const(7)
_F_TYPE = const(8)
_F_CODE = const(9)
_F_FRAG = const(10)
_F_OPT = const(11)
_K_OTHER = const(0)
_K_TCP = const(1)
_K_UDP = const(2)
_K_QUERY = const(3)
_K_ERROR = const(4)
_H_NOW = const(4)
_H_SEED = const(5)
_H_T_EST = const(7)
_H_T_TRANS = const(8)
_H_T_IDLE = const(9)
_HDR = const(12)
_SLOT = const(18)
_S_KEY1 = const(6)
_KEY_SRC_HI = const(0)
_KEY_SRC_LO = const(1)
_KEY_DST_HI = const(2)
_KEY_DST_LO = const(3)
_KEY_SPORT = const(4)
_KEY_DPORT = const(5)
_S_NEXT = const(12)
_S_TIME = const(16)
_S_STATE = const(17)
_ST_ANSWERED = const(4)
_ST_FIN0 = const(8)
_ST_FIN1 = const(16)
_ST_RST = const(32)
_ST_ALL = const(0x3C)
_TCP_FIN = const(1)
_TCP_SYN = const(2)
_TCP_RST = const(4)
_NONE = const(0xFFFF)


def parse(buf, n, f):
    """Decode the IPv4 packet buf[0:n] into the fields f. Returns OK or MALFORMED."""
    f[_F_OK] = 0
    if n < _IP_MIN or n > len(buf):
        return _MALFORMED
    b0 = buf[0]
    hl = (b0 & 15) << 2
    if b0 >> 4 != 4 or hl < _IP_MIN:
        return _MALFORMED
    tl = buf[_IP_LEN] << 8 | buf[_IP_LEN + 1]
    if tl < hl or tl > n:
        return _MALFORMED
    s = 0
    i = 0
    while i < hl:
        s += buf[i] << 8 | buf[i + 1]
        i += 2
    s = (s & 0xFFFF) + (s >> 16)
    if (s & 0xFFFF) + (s >> 16) != 0xFFFF:
        return _MALFORMED
    opt = 0
    i = _IP_MIN
    while i < hl:  # RFC 791 options: 0 ends the list, 1 is one byte, the rest type+length
        o = buf[i]
        if o == 0:
            break
        if o == 1:
            i += 1
            continue
        if i + 1 >= hl or buf[i + 1] < 2:
            break
        if o == 131 or o == 137:
            opt |= _OPT_SOURCE_ROUTE
        i += buf[i + 1]
    proto = buf[_IP_PROTO]
    frag = buf[_IP_FRAG] << 8 | buf[_IP_FRAG + 1]
    kind = _K_OTHER
    sport = dport = 0
    typ = code = _NO_ICMP
    # Only a first fragment (offset 0) carries the transport header.
    if not frag & 0x1FFF:
        room = tl - hl
        if proto == _TCP:
            if room < _TCP_MIN:
                return _MALFORMED
            doff = (buf[hl + _TCP_OFF] >> 4) << 2
            if doff < _TCP_MIN or doff > room:
                return _MALFORMED
            kind = _K_TCP
        elif proto == _UDP:
            if room < _UDP_MIN:
                return _MALFORMED
            # RFC 768: the length covers the header and data; an unfragmented
            # datagram's cannot reach past the IP payload.
            ulen = buf[hl + _UDP_LEN] << 8 | buf[hl + _UDP_LEN + 1]
            if ulen < _UDP_MIN or (ulen > room and not frag & _FRAG_MF):
                return _MALFORMED
            kind = _K_UDP
        elif proto == _ICMP:
            if room < _ICMP_MIN:
                return _MALFORMED
            typ = buf[hl]
            code = buf[hl + _ICMP_CODE]
            if typ < 32 and (_QUERY_TYPES >> typ) & 1:
                kind = _K_QUERY  # the id in both port fields
                sport = dport = buf[hl + _ICMP_ID] << 8 | buf[hl + _ICMP_ID + 1]
            elif typ < 32 and (_ERROR_TYPES >> typ) & 1:
                kind = _K_ERROR
        if kind == _K_TCP or kind == _K_UDP:
            sport = buf[hl + _L4_SPORT] << 8 | buf[hl + _L4_SPORT + 1]
            dport = buf[hl + _L4_DPORT] << 8 | buf[hl + _L4_DPORT + 1]
    f[_F_LEN] = tl
    f[_F_L4] = hl
    f[_F_PROTO] = proto
    f[_F_TTL] = buf[_IP_TTL]
    f[_F_KIND] = kind
    f[_F_SPORT] = sport
    f[_F_DPORT] = dport
    f[_F_TYPE] = typ
    f[_F_CODE] = code
    f[_F_FRAG] = frag
    f[_F_OPT] = opt
    f[_F_OK] = 1
    return _OK


def translate(buf, f, mems, heads):
    """Translate the packet parsed into f in place, by the flow tables mems[kind],
    heads[kind]. Returns a status (consts.py)."""
    if not f[_F_OK]:
        return _MALFORMED
    kind = f[_F_KIND]
    if kind == _K_OTHER:
        return _UNTRANSLATED
    if kind == _K_ERROR:
        return translate_error(buf, f, mems, heads)
    mem = mems[kind]
    a = buf[_IP_SRC] << 8 | buf[_IP_SRC + 1]
    b = buf[_IP_SRC + 2] << 8 | buf[_IP_SRC + 3]
    c = buf[_IP_DST] << 8 | buf[_IP_DST + 1]
    d = buf[_IP_DST + 2] << 8 | buf[_IP_DST + 3]
    sp = f[_F_SPORT]
    dp = f[_F_DPORT]
    ent = find(mem, heads[kind], a, b, c, d, sp, dp)
    if ent == _NONE:
        return _UNTRANSLATED
    slot = _HDR + (ent >> 1) * _SLOT
    st = mem[slot + _S_STATE]
    if (mem[_H_NOW] - mem[slot + _S_TIME]) & 0xFFFF > timeout(mem, st):
        return _UNTRANSLATED  # an expired flow never translates (the slow path reclaims it)
    if kind == _K_QUERY and ((_REQUEST_TYPES >> f[_F_TYPE]) & 1) == (ent & 1):
        # A request only in the direction that opened the flow (0), a reply only in the
        # other: an outside host cannot ping an inside one with its query id.
        return _UNTRANSLATED
    ttl = buf[_IP_TTL]
    if ttl <= 1:
        return _TTL_EXCEEDED  # RFC 1812 5.3.1: never forward with TTL 0
    # The packet leaves as the other direction's key, reversed.
    o = slot + _S_KEY1 - (ent & 1) * _S_KEY1
    na = mem[o + _KEY_DST_HI]
    nb = mem[o + _KEY_DST_LO]
    nc = mem[o + _KEY_SRC_HI]
    nd = mem[o + _KEY_SRC_LO]
    nsp = mem[o + _KEY_DPORT]
    ndp = mem[o + _KEY_SPORT]
    # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). addr is the address part, shared by the
    # IP header and the TCP/UDP pseudo-header.
    addr = (0xFFFF ^ a) + na + (0xFFFF ^ b) + nb + (0xFFFF ^ c) + nc + (0xFFFF ^ d) + nd
    # ~(ttl, proto) + (ttl - 1, proto) is always 0xFEFF.
    hc = fold((0xFFFF ^ (buf[_IP_CSUM] << 8 | buf[_IP_CSUM + 1])) + addr + 0xFEFF) ^ 0xFFFF
    buf[_IP_TTL] = ttl - 1
    put16(buf, _IP_CSUM, hc)
    put16(buf, _IP_SRC, na)
    put16(buf, _IP_SRC + 2, nb)
    put16(buf, _IP_DST, nc)
    put16(buf, _IP_DST + 2, nd)
    hl = f[_F_L4]
    dirn = ent & 1
    if dirn:
        st |= _ST_ANSWERED
    refresh = True
    if kind == _K_TCP or kind == _K_UDP:
        at = hl + _TCP_CSUM if kind == _K_TCP else hl + _UDP_CSUM
        if kind == _K_TCP:
            # The flow's TCP state (RFC 7857 2.1): FINs each way, a RST (translated, the
            # flow kept for the transitory time, not refreshed: 2.2), a SYN reopening a
            # closed flow.
            fl = buf[hl + _TCP_FLAGS]
            if fl & _TCP_RST:
                st |= _ST_RST
                refresh = False
            else:
                closed = st & _ST_RST or st & (_ST_FIN0 | _ST_FIN1) == _ST_FIN0 | _ST_FIN1
                if fl & _TCP_SYN and closed:
                    st = (st & ~_ST_ALL) | (_ST_ANSWERED if dirn else 0)
                if fl & _TCP_FIN:
                    st |= _ST_FIN0 << dirn
        old = buf[at] << 8 | buf[at + 1]
        if old or kind == _K_TCP:  # a UDP checksum of 0 means "none" and stays 0
            x = fold((0xFFFF ^ old) + addr + (0xFFFF ^ sp) + nsp + (0xFFFF ^ dp) + ndp) ^ 0xFFFF
            if x == 0 and kind == _K_UDP:
                x = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
            put16(buf, at, x)
        put16(buf, hl + _L4_SPORT, nsp)
        put16(buf, hl + _L4_DPORT, ndp)
    else:  # ICMP query: the id appears once, and ICMP has no pseudo-header
        at = hl + _ICMP_CSUM
        x = fold((0xFFFF ^ (buf[at] << 8 | buf[at + 1])) + (0xFFFF ^ sp) + nsp) ^ 0xFFFF
        put16(buf, at, x)
        put16(buf, hl + _ICMP_ID, nsp)
    f[_F_TTL] = ttl - 1
    f[_F_SPORT] = nsp
    f[_F_DPORT] = ndp
    mem[slot + _S_STATE] = st
    if refresh:
        mem[slot + _S_TIME] = mem[_H_NOW]
    return _OK
