# The viper core: parse() and translate_flow() compiled to machine code, for ports with
# native emitters (the unix port, the ESP32). The pure-Python twin is _python.py, and
# the tests run both on the same packets. Importing this where viper is missing fails;
# nat/core.py then picks the twin. ICMP errors are rare: the caller hands them to the one
# pure-Python path (icmperr.py; Table.translate and the datapath dispatch).
#
# Neither names a global (not even a builtin such as len): a viper function that does is
# entered and left with a swap of the module's globals and an nlr context
# (py/emitnative.c, MP_SCOPE_FLAG_REFGLOBALS), which cost more on an ESP32 than half the
# work. Hence F_CAP for the buffer's length, and ICMP errors left to the caller.
import micropython
from micropython import const

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_ICMP = const(1)
_TCP = const(6)
_UDP = const(17)
_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_MALFORMED = const(5)
_QUERY_TYPES = const(0x7E101)
_REQUEST_TYPES = const(0x2A100)
_ERROR_TYPES = const(0x1838)
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
_TCP_FIN = const(1)
_TCP_SYN = const(2)
_TCP_RST = const(4)
_UDP_LEN = const(4)
_UDP_CSUM = const(6)
_UDP_MIN = const(8)
_ICMP_CODE = const(1)
_ICMP_CSUM = const(2)
_ICMP_ID = const(4)
_ICMP_MIN = const(8)
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
_F_CAP = const(12)
_NO_ICMP = const(0xFFFF)
_FRAG_MF = const(0x2000)
_OPT_SOURCE_ROUTE = const(1)
_K_OTHER = const(0)
_K_TCP = const(1)
_K_UDP = const(2)
_K_QUERY = const(3)
_K_ERROR = const(4)
_H_MASK = const(0)
_H_NOW = const(4)
_H_SEED = const(5)
_H_T_EST = const(7)
_H_T_TRANS = const(8)
_H_T_IDLE = const(9)
_HDR = const(12)
_KEY_SRC_HI = const(0)
_KEY_SRC_LO = const(1)
_KEY_DST_HI = const(2)
_KEY_DST_LO = const(3)
_KEY_SPORT = const(4)
_KEY_DPORT = const(5)
_S_KEY1 = const(6)
_S_NEXT = const(12)
_S_TIME = const(16)
_S_STATE = const(17)
_SLOT = const(18)
_ST_ANSWERED = const(4)
_ST_FIN0 = const(8)
_ST_FIN1 = const(16)
_ST_RST = const(32)
_ST_ALL = const(0x3C)
_NONE = const(0xFFFF)
# ---- end of layout


@micropython.viper
def parse(buf, n: int, f) -> int:
    p = ptr8(buf)
    w = ptr16(f)
    w[_F_OK] = 0
    if n < _IP_MIN or n > w[_F_CAP]:
        return _MALFORMED
    b0 = p[0]
    hl = (b0 & 15) << 2
    if (b0 >> 4) != 4 or hl < _IP_MIN:
        return _MALFORMED
    tl = (p[_IP_LEN] << 8) | p[_IP_LEN + 1]
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
    opt = 0
    i = _IP_MIN
    while i < hl:  # RFC 791 options: 0 ends the list, 1 is one byte, the rest type+length
        o = p[i]
        if o == 0:
            break
        if o == 1:
            i += 1
            continue
        if i + 1 >= hl or p[i + 1] < 2:
            break
        if o == 131 or o == 137:
            opt |= _OPT_SOURCE_ROUTE
        i += p[i + 1]
    proto = p[_IP_PROTO]
    frag = (p[_IP_FRAG] << 8) | p[_IP_FRAG + 1]
    kind = _K_OTHER
    sport = 0
    dport = 0
    typ = _NO_ICMP
    code = _NO_ICMP
    if (frag & 0x1FFF) == 0:  # only a first fragment carries the transport header
        room = tl - hl
        if proto == _TCP:
            if room < _TCP_MIN:
                return _MALFORMED
            doff = (p[hl + _TCP_OFF] >> 4) << 2
            if doff < _TCP_MIN or doff > room:
                return _MALFORMED
            kind = _K_TCP
        elif proto == _UDP:
            if room < _UDP_MIN:
                return _MALFORMED
            ulen = (p[hl + _UDP_LEN] << 8) | p[hl + _UDP_LEN + 1]
            if ulen < _UDP_MIN or (ulen > room and (frag & _FRAG_MF) == 0):
                return _MALFORMED  # RFC 768
            kind = _K_UDP
        elif proto == _ICMP:
            if room < _ICMP_MIN:
                return _MALFORMED
            typ = p[hl]
            code = p[hl + _ICMP_CODE]
            if typ < 32 and (_QUERY_TYPES >> typ) & 1:
                kind = _K_QUERY
                sport = (p[hl + _ICMP_ID] << 8) | p[hl + _ICMP_ID + 1]
                dport = sport
            elif typ < 32 and (_ERROR_TYPES >> typ) & 1:
                kind = _K_ERROR
        if kind == _K_TCP or kind == _K_UDP:
            sport = (p[hl + _L4_SPORT] << 8) | p[hl + _L4_SPORT + 1]
            dport = (p[hl + _L4_DPORT] << 8) | p[hl + _L4_DPORT + 1]
    w[_F_LEN] = tl
    w[_F_L4] = hl
    w[_F_PROTO] = proto
    w[_F_TTL] = p[_IP_TTL]
    w[_F_KIND] = kind
    w[_F_SPORT] = sport
    w[_F_DPORT] = dport
    w[_F_TYPE] = typ
    w[_F_CODE] = code
    w[_F_FRAG] = frag
    w[_F_OPT] = opt
    w[_F_OK] = 1
    return _OK


@micropython.viper
def translate_flow(buf, f, mems, heads) -> int:
    w = ptr16(f)
    if w[_F_OK] == 0:
        return _MALFORMED
    kind = w[_F_KIND]
    if kind == _K_OTHER or kind == _K_ERROR:
        return _UNTRANSLATED
    p = ptr8(buf)
    m = ptr16(mems[kind])
    hd = ptr16(heads[kind])
    a = (p[_IP_SRC] << 8) | p[_IP_SRC + 1]
    b = (p[_IP_SRC + 2] << 8) | p[_IP_SRC + 3]
    c = (p[_IP_DST] << 8) | p[_IP_DST + 1]
    d = (p[_IP_DST + 2] << 8) | p[_IP_DST + 3]
    sp = w[_F_SPORT]
    dp = w[_F_DPORT]
    # flows.bucket and flows.find
    x = (b ^ m[_H_SEED]) * 37 + d * 101 + sp * 13 + dp * 7 + a + c * 3
    ent = hd[(x ^ (x >> 9) ^ (x >> 17)) & m[_H_MASK]]
    while ent != _NONE:
        k = _HDR + (ent >> 1) * _SLOT + (ent & 1) * _S_KEY1
        if m[k + _KEY_SPORT] == sp and m[k + _KEY_DPORT] == dp and m[k + _KEY_SRC_LO] == b \
                and m[k + _KEY_DST_LO] == d and m[k + _KEY_SRC_HI] == a \
                and m[k + _KEY_DST_HI] == c:
            break
        ent = m[_HDR + (ent >> 1) * _SLOT + _S_NEXT + (ent & 1)]
    if ent == _NONE:
        return _UNTRANSLATED
    s = ent >> 1
    slot = _HDR + s * _SLOT
    st = m[slot + _S_STATE]
    # flows.timeout: an expired flow never translates (the slow path reclaims it).
    if m[_H_T_EST] == 0:
        limit = m[_H_T_IDLE]
    elif (st & _ST_ANSWERED) and not (st & _ST_RST) and (st & (_ST_FIN0 | _ST_FIN1)) != (_ST_FIN0 | _ST_FIN1):
        limit = m[_H_T_EST]
    else:
        limit = m[_H_T_TRANS]
    if ((m[_H_NOW] - m[slot + _S_TIME]) & 0xFFFF) > limit:
        return _UNTRANSLATED
    if kind == _K_QUERY and ((_REQUEST_TYPES >> w[_F_TYPE]) & 1) == (ent & 1):
        return _UNTRANSLATED  # requests only in the opening direction, replies in the other
    ttl = p[_IP_TTL]
    if ttl <= 1:
        return _TTL_EXCEEDED
    o = slot + _S_KEY1 - (ent & 1) * _S_KEY1  # the other direction's key, reversed
    na = m[o + _KEY_DST_HI]
    nb = m[o + _KEY_DST_LO]
    nc = m[o + _KEY_SRC_HI]
    nd = m[o + _KEY_SRC_LO]
    nsp = m[o + _KEY_DPORT]
    ndp = m[o + _KEY_SPORT]
    addr = (0xFFFF ^ a) + na + (0xFFFF ^ b) + nb + (0xFFFF ^ c) + nc + (0xFFFF ^ d) + nd
    x = (0xFFFF ^ ((p[_IP_CSUM] << 8) | p[_IP_CSUM + 1])) + addr + 0xFEFF
    x = (x & 0xFFFF) + (x >> 16)
    x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
    p[_IP_TTL] = ttl - 1
    p[_IP_CSUM] = x >> 8
    p[_IP_CSUM + 1] = x
    p[_IP_SRC] = na >> 8
    p[_IP_SRC + 1] = na
    p[_IP_SRC + 2] = nb >> 8
    p[_IP_SRC + 3] = nb
    p[_IP_DST] = nc >> 8
    p[_IP_DST + 1] = nc
    p[_IP_DST + 2] = nd >> 8
    p[_IP_DST + 3] = nd
    hl = w[_F_L4]
    dirn = ent & 1
    if dirn:
        st |= _ST_ANSWERED
    refresh = 1
    if kind == _K_TCP or kind == _K_UDP:
        at = hl + _UDP_CSUM
        if kind == _K_TCP:
            at = hl + _TCP_CSUM
            # The flow's TCP state (RFC 7857 2.1): FINs each way, a RST (translated, the
            # flow kept for the transitory time, not refreshed: 2.2), a SYN reopening a
            # closed flow.
            fl = p[hl + _TCP_FLAGS]
            if fl & _TCP_RST:
                st |= _ST_RST
                refresh = 0
            else:
                if (fl & _TCP_SYN) and ((st & _ST_RST) or (st & (_ST_FIN0 | _ST_FIN1)) == (_ST_FIN0 | _ST_FIN1)):
                    st = (st & (0xFFFF ^ _ST_ALL)) | (dirn * _ST_ANSWERED)
                if fl & _TCP_FIN:
                    st |= _ST_FIN0 << dirn
        old = (p[at] << 8) | p[at + 1]
        if old != 0 or kind == _K_TCP:  # a UDP checksum of 0 stays 0
            x = (0xFFFF ^ old) + addr + (0xFFFF ^ sp) + nsp + (0xFFFF ^ dp) + ndp
            x = (x & 0xFFFF) + (x >> 16)
            x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
            if x == 0 and kind == _K_UDP:
                x = 0xFFFF
            p[at] = x >> 8
            p[at + 1] = x
        p[hl + _L4_SPORT] = nsp >> 8
        p[hl + _L4_SPORT + 1] = nsp
        p[hl + _L4_DPORT] = ndp >> 8
        p[hl + _L4_DPORT + 1] = ndp
    else:
        at = hl + _ICMP_CSUM
        x = (0xFFFF ^ ((p[at] << 8) | p[at + 1])) + (0xFFFF ^ sp) + nsp
        x = (x & 0xFFFF) + (x >> 16)
        x = ((x & 0xFFFF) + (x >> 16)) ^ 0xFFFF
        p[at] = x >> 8
        p[at + 1] = x
        p[hl + _ICMP_ID] = nsp >> 8
        p[hl + _ICMP_ID + 1] = nsp
    w[_F_TTL] = ttl - 1
    w[_F_SPORT] = nsp
    w[_F_DPORT] = ndp
    m[slot + _S_STATE] = st
    if refresh:
        m[slot + _S_TIME] = m[_H_NOW]
    return _OK

