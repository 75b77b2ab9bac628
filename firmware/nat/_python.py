# The pure-Python core: parse() and translate_flow(), the per-packet primitives. It is what
# CPython and the 32-bit WASI build run, and the reference the viper core (_viper.py)
# is compared with on every packet the tests build. Everything here works on bytes and
# 16-bit words, small ints on any MicroPython, so it allocates nothing either.
# Layout: consts.py.
from .flows import find, timeout
from .checksum import fold, get16, put16, sum16
from .consts import (IP_LEN, IP_FRAG, IP_TTL, IP_PROTO, IP_CSUM, IP_SRC, IP_DST, IP_MIN,
                     L4_SPORT, L4_DPORT, TCP_OFF, TCP_FLAGS, TCP_CSUM, TCP_MIN, UDP_LEN,
                     UDP_CSUM, UDP_MIN, ICMP_CODE, ICMP_CSUM, ICMP_ID, ICMP_MIN, OK,
                     UNTRANSLATED, TTL_EXCEEDED, MALFORMED, TCP, UDP, ICMP, QUERY_TYPES,
                     ERROR_TYPES, NO_ICMP, OPT_SOURCE_ROUTE, FRAG_MF, FRAG_OFFSET,
                     REQUEST_TYPES, F_OK, F_LEN, F_L4, F_PROTO, F_TTL, F_KIND, F_SPORT,
                     F_DPORT, F_TYPE, F_CODE, F_FRAG, F_OPT, F_CAP, K_OTHER, K_TCP, K_UDP, K_QUERY,
                     K_ERROR, H_NOW, HDR, SLOT, S_KEY1, KEY_SRC_HI, KEY_SRC_LO, KEY_DST_HI,
                     KEY_DST_LO, KEY_SPORT, KEY_DPORT, S_TIME, S_STATE, ST_ANSWERED,
                     ST_FIN0, ST_FIN1, ST_RST, ST_ALL, TCP_FIN, TCP_SYN, TCP_RST, NONE)


def parse(buf, n, f):
    """Decode the IPv4 packet buf[0:n] into the fields f. Returns OK or MALFORMED (then
    only F_OK changed)."""
    f[F_OK] = 0
    if n < IP_MIN or n > f[F_CAP]:  # the bound buffer's length (Packet.bind)
        return MALFORMED
    hl = (buf[0] & 15) << 2
    tl = get16(buf, IP_LEN)
    if buf[0] >> 4 != 4 or hl < IP_MIN or tl < hl or tl > n or sum16(buf, 0, hl) != 0xFFFF:
        return MALFORMED
    frag = get16(buf, IP_FRAG)
    first = not frag & FRAG_OFFSET  # only a first fragment carries the transport header
    kind = _kind(buf, hl, tl, frag) if first else K_OTHER
    if kind < 0:
        return MALFORMED
    f[F_KIND] = kind
    f[F_SPORT] = f[F_DPORT] = 0
    f[F_TYPE] = f[F_CODE] = NO_ICMP
    if kind == K_TCP or kind == K_UDP:
        f[F_SPORT] = get16(buf, hl + L4_SPORT)
        f[F_DPORT] = get16(buf, hl + L4_DPORT)
    elif first and buf[IP_PROTO] == ICMP:
        f[F_TYPE] = buf[hl]
        f[F_CODE] = buf[hl + ICMP_CODE]
        if kind == K_QUERY:
            f[F_SPORT] = f[F_DPORT] = get16(buf, hl + ICMP_ID)  # the id in both port fields
    f[F_LEN] = tl
    f[F_L4] = hl
    f[F_PROTO] = buf[IP_PROTO]
    f[F_TTL] = buf[IP_TTL]
    f[F_FRAG] = frag
    f[F_OPT] = OPT_SOURCE_ROUTE if _source_routed(buf, hl) else 0
    f[F_OK] = 1
    return OK


def _source_routed(buf, hl):
    """Whether the header's RFC 791 options hold a loose or strict source route (131,
    137). 0 ends the list, 1 is one byte, the rest are type, length, data."""
    i = IP_MIN
    while i < hl and buf[i]:
        if buf[i] == 1:
            i += 1
        elif i + 1 >= hl or buf[i + 1] < 2:
            return False  # a broken list: what follows is not read
        elif buf[i] == 131 or buf[i] == 137:
            return True
        else:
            i += buf[i + 1]
    return False


def _kind(buf, hl, tl, frag):
    """What a first fragment's transport header makes the packet (K_*), or -1 when it is
    too short for its protocol (RFC 793, RFC 768, RFC 792)."""
    proto = buf[IP_PROTO]
    room = tl - hl
    if proto == TCP:
        doff = (buf[hl + TCP_OFF] >> 4) << 2 if room >= TCP_MIN else 0
        return K_TCP if TCP_MIN <= doff <= room else -1
    if proto == UDP:
        # RFC 768: the length covers the header and data; an unfragmented datagram's
        # cannot reach past the IP payload.
        ulen = get16(buf, hl + UDP_LEN) if room >= UDP_MIN else 0
        return K_UDP if ulen >= UDP_MIN and (ulen <= room or frag & FRAG_MF) else -1
    if proto == ICMP:
        if room < ICMP_MIN:
            return -1
        typ = buf[hl]
        if typ < 32 and (QUERY_TYPES >> typ) & 1:
            return K_QUERY
        if typ < 32 and (ERROR_TYPES >> typ) & 1:
            return K_ERROR
    return K_OTHER


def translate_flow(buf, f, mems, heads):
    """Translate the packet parsed into f in place (a TCP, UDP or ICMP query packet) by
    its flow in the tables mems, heads (indexed by kind). Returns a status (consts.py);
    UNTRANSLATED for other kinds (ICMP errors: icmperr.translate_error)."""
    if not f[F_OK]:
        return MALFORMED
    kind = f[F_KIND]
    if kind == K_OTHER or kind == K_ERROR:
        return UNTRANSLATED
    mem, head = mems[kind], heads[kind]
    a = buf[IP_SRC] << 8 | buf[IP_SRC + 1]
    b = buf[IP_SRC + 2] << 8 | buf[IP_SRC + 3]
    c = buf[IP_DST] << 8 | buf[IP_DST + 1]
    d = buf[IP_DST + 2] << 8 | buf[IP_DST + 3]
    sp = f[F_SPORT]
    dp = f[F_DPORT]
    ent = find(mem, head, a, b, c, d, sp, dp)
    if ent == NONE:
        return UNTRANSLATED
    slot = HDR + (ent >> 1) * SLOT
    st = mem[slot + S_STATE]
    if (mem[H_NOW] - mem[slot + S_TIME]) & 0xFFFF > timeout(mem, st):
        return UNTRANSLATED  # an expired flow never translates (the slow path reclaims it)
    if kind == K_QUERY and ((REQUEST_TYPES >> f[F_TYPE]) & 1) == (ent & 1):
        # A request only in the direction that opened the flow (0), a reply only in the
        # other: an outside host cannot ping an inside one with its query id.
        return UNTRANSLATED
    ttl = buf[IP_TTL]
    if ttl <= 1:
        return TTL_EXCEEDED  # RFC 1812 5.3.1: never forward with TTL 0
    # The packet leaves as the other direction's key, reversed.
    o = slot + S_KEY1 - (ent & 1) * S_KEY1
    na = mem[o + KEY_DST_HI]
    nb = mem[o + KEY_DST_LO]
    nc = mem[o + KEY_SRC_HI]
    nd = mem[o + KEY_SRC_LO]
    nsp = mem[o + KEY_DPORT]
    ndp = mem[o + KEY_SPORT]
    # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). addr is the address part, shared by the
    # IP header and the TCP/UDP pseudo-header.
    addr = (0xFFFF ^ a) + na + (0xFFFF ^ b) + nb + (0xFFFF ^ c) + nc + (0xFFFF ^ d) + nd
    # ~(ttl, proto) + (ttl - 1, proto) is always 0xFEFF.
    hc = fold((0xFFFF ^ (buf[IP_CSUM] << 8 | buf[IP_CSUM + 1])) + addr + 0xFEFF) ^ 0xFFFF
    buf[IP_TTL] = ttl - 1
    put16(buf, IP_CSUM, hc)
    put16(buf, IP_SRC, na)
    put16(buf, IP_SRC + 2, nb)
    put16(buf, IP_DST, nc)
    put16(buf, IP_DST + 2, nd)
    hl = f[F_L4]
    dirn = ent & 1
    if dirn:
        st |= ST_ANSWERED
    refresh = True
    if kind == K_TCP or kind == K_UDP:
        at = hl + TCP_CSUM if kind == K_TCP else hl + UDP_CSUM
        if kind == K_TCP:
            # The flow's TCP state (RFC 7857 2.1): FINs each way, a RST (translated, the
            # flow kept for the transitory time, not refreshed: 2.2), a SYN reopening a
            # closed flow.
            fl = buf[hl + TCP_FLAGS]
            if fl & TCP_RST:
                st |= ST_RST
                refresh = False
            else:
                closed = st & ST_RST or st & (ST_FIN0 | ST_FIN1) == ST_FIN0 | ST_FIN1
                if fl & TCP_SYN and closed:
                    st = (st & ~ST_ALL) | (ST_ANSWERED if dirn else 0)
                if fl & TCP_FIN:
                    st |= ST_FIN0 << dirn
        old = buf[at] << 8 | buf[at + 1]
        if old or kind == K_TCP:  # a UDP checksum of 0 means "none" and stays 0
            x = fold((0xFFFF ^ old) + addr + (0xFFFF ^ sp) + nsp + (0xFFFF ^ dp) + ndp) ^ 0xFFFF
            if x == 0 and kind == K_UDP:
                x = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
            put16(buf, at, x)
        put16(buf, hl + L4_SPORT, nsp)
        put16(buf, hl + L4_DPORT, ndp)
    else:  # ICMP query: the id appears once, and ICMP has no pseudo-header
        at = hl + ICMP_CSUM
        x = fold((0xFFFF ^ (buf[at] << 8 | buf[at + 1])) + (0xFFFF ^ sp) + nsp) ^ 0xFFFF
        put16(buf, at, x)
        put16(buf, hl + ICMP_ID, nsp)
    f[F_TTL] = ttl - 1
    f[F_SPORT] = nsp
    f[F_DPORT] = ndp
    mem[slot + S_STATE] = st
    if refresh:
        mem[slot + S_TIME] = mem[H_NOW]
    return OK

