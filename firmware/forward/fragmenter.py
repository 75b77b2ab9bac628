# Cutting an IPv4 packet too long for a link into fragments (RFC 791 3.2, RFC 4787
# REQ-13), built one by one in a buffer the caller owns: nothing allocates.
#
#   n = fragment(buf, n, mtu, out, send)   # pieces sent, DF_SET or BAD
from compat import const
from nat.checksum import put16, sum16

# fragment() results besides the number of pieces sent
DF_SET = const(-1)   # too long, and DF forbids fragmenting (send Fragmentation Needed)
BAD = const(-2)      # not a usable IPv4 packet, an MTU too small, or offsets past 64 KB

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_IP_LEN = const(2)
_IP_FRAG = const(6)
_IP_CSUM = const(10)
# ---- end of layout
_DF = const(0x4000)
_MF = const(0x2000)
_OFFSET = const(0x1FFF)


def ip_header_length(buf, n):
    """The header length of the IPv4 packet buf[0:n], or 0 when it is not one a router
    forwards (RFC 1812 5.2.2: version, IHL, total length, header checksum)."""
    if n < 20 or n > len(buf):
        return 0
    b0 = buf[0]
    hl = (b0 & 15) << 2
    if b0 >> 4 != 4 or hl < 20:
        return 0
    tl = buf[_IP_LEN] << 8 | buf[_IP_LEN + 1]
    if tl < hl or tl > n:
        return 0
    if sum16(buf, 0, hl) != 0xFFFF:
        return 0
    return hl


def fragment(buf, n, mtu, out, emit):
    """Split the IPv4 packet buf[0:n] into pieces of at most mtu bytes built one by one
    in `out` (another buffer than buf, at least mtu long) and handed to emit(out, length)
    (the link's send). RFC 791 3.2: data in multiples of 8 bytes, MF on every piece but
    the last (which keeps the packet's own MF: a fragment is re-fragmented), offsets
    added to the packet's own; the first piece carries all options, the others only
    those with the copied flag (RFC 791 3.1). TTL, id and the payload are unchanged.

    Returns the number of pieces sent (1: it fitted, sent unchanged from buf), DF_SET
    (too long and DF set: nothing sent) or BAD (nothing sent)."""
    hl = ip_header_length(buf, n)
    if not hl:
        return BAD
    tl = buf[_IP_LEN] << 8 | buf[_IP_LEN + 1]
    if tl <= mtu:
        emit(buf, tl)
        return 1
    frag = buf[_IP_FRAG] << 8 | buf[_IP_FRAG + 1]
    if frag & _DF:
        return DF_SET
    mtu = min(mtu, len(out))
    off = frag & _OFFSET
    data = tl - hl
    if hl + (off << 3) + data > 0xFFFF:
        return BAD   # it would reassemble past 64 KB: not ours to pass on
    if mtu - hl < 8:
        return BAD   # RFC 791: 68 bytes carry any header and 8 bytes of data
    first = (mtu - hl) & 0xFFF8   # the first piece's data
    # The later pieces' header: the copied options (type bit 0x80), padded to 32 bits.
    copied = 0
    i = 20
    ln = _option_length(buf, i, hl)
    while ln:
        if buf[i] & 0x80:
            copied += ln
        i += ln
        ln = _option_length(buf, i, hl)
    hl2 = 20 + ((copied + 3) & 0xFC)
    step = (mtu - hl2) & 0xFFF8
    keep = frag & 0x8000   # the reserved bit as it came (DF is clear)
    for i in range(hl + first):
        out[i] = buf[i]
    _finish(out, hl, hl + first, keep | _MF | off)
    emit(out, hl + first)
    pieces = 1
    out[0] = 0x40 | (hl2 >> 2)   # out[1:20] already hold the packet's fixed header
    j = 20
    i = 20
    ln = _option_length(buf, i, hl)
    while ln:
        if buf[i] & 0x80:
            for m in range(ln):
                out[j + m] = buf[i + m]
            j += ln
        i += ln
        ln = _option_length(buf, i, hl)
    while j < hl2:
        out[j] = 0   # end of option list
        j += 1
    pos = first
    while pos < data:
        k = data - pos
        mf = frag & _MF
        if k > step:
            k = step
            mf = _MF
        src = hl + pos
        for i in range(k):
            out[hl2 + i] = buf[src + i]
        _finish(out, hl2, hl2 + k, keep | mf | (off + (pos >> 3)))
        emit(out, hl2 + k)
        pieces += 1
        pos += k
    return pieces


def _option_length(buf, i, hl):
    """The length of the RFC 791 option at buf[i] in a header of hl bytes: 1 for a
    no-operation, 0 at the end of the list, past the header or where the list is broken
    (what follows is not copied)."""
    if i >= hl or buf[i] == 0:
        return 0
    if buf[i] == 1:
        return 1
    if i + 1 >= hl or buf[i + 1] < 2 or i + buf[i + 1] > hl:
        return 0
    return buf[i + 1]


def _finish(out, hl, tl, frag):
    put16(out, _IP_LEN, tl)
    put16(out, _IP_FRAG, frag)
    out[_IP_CSUM] = 0
    out[_IP_CSUM + 1] = 0
    put16(out, _IP_CSUM, sum16(out, 0, hl) ^ 0xFFFF)
