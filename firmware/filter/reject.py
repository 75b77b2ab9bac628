# What a firewall `reject` answers a TCP segment with: a RST as if from the host it was
# sent to (RFC 9293 3.10.7.1, "If the connection does not exist"), so the opener fails
# at once instead of waiting. Everything else gets ICMP administratively prohibited
# (RFC 1812 5.2.7.1: type 3 code 13), built by forward/icmp.py's ErrorBuilder; both go
# through its rate limit (slowpath.py).
from nat.checksum import fold, get16, put16, sum16

RST_LEN = 40        # an IPv4 header and a TCP header, no options, no data
ADMIN_PROHIBITED = 13   # code of ICMP Destination Unreachable (RFC 1812 5.2.7.1)
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_ACK = 0x10


def tcp_reset(pkt, l4, out):
    """Build into out (RST_LEN bytes) the RST answering the TCP segment in pkt (its TCP
    header at l4); returns RST_LEN, or 0 for a segment that is itself a RST (never
    answered)."""
    flags = pkt[l4 + 13]
    if flags & _RST:
        return 0
    for i in range(RST_LEN):
        out[i] = 0
    out[0] = 0x45
    put16(out, 2, RST_LEN)
    out[8] = 64
    out[9] = 6
    for i in range(4):   # back to where it came from
        out[12 + i] = pkt[16 + i]
        out[16 + i] = pkt[12 + i]
    put16(out, 10, sum16(out, 0, 20) ^ 0xFFFF)
    put16(out, 20, get16(pkt, l4 + 2))
    put16(out, 22, get16(pkt, l4))
    out[32] = 5 << 4
    if flags & _ACK:
        out[24:28] = pkt[l4 + 8:l4 + 12]     # SEQ = SEG.ACK
        out[33] = _RST
    else:                                    # ACK = SEG.SEQ + SEG.LEN (SYN, FIN count)
        seg_len = get16(pkt, 2) - l4 - (pkt[l4 + 12] >> 4) * 4
        seg_len += (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)
        ack = ((get16(pkt, l4 + 4) << 16 | get16(pkt, l4 + 6)) + seg_len) & 0xFFFFFFFF
        put16(out, 28, ack >> 16)
        put16(out, 30, ack & 0xFFFF)
        out[33] = _RST | _ACK
    pseudo = sum16(out, 12, 20) + 6 + 20
    put16(out, 36, fold(pseudo + sum16(out, 20, 40)) ^ 0xFFFF)
    return RST_LEN
