# ICMP the router originates itself: echo replies to pings of its own addresses, built in
# place in the receive buffer, and error messages (Time Exceeded, Fragmentation Needed)
# built into a preallocated buffer. Nothing here allocates, so a ping flood or a
# traceroute burst costs no garbage. The router decides *whether* to answer (from what
# the parse decoded); this module only builds the packets.
from compat import const, ticks_diff
from nat.checksum import fold, put16 as _put16, sum16

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_ICMP = const(1)
# ---- end of layout
_ECHO_REPLY = const(0)
_ECHO_REQUEST = const(8)
TIME_EXCEEDED = const(11)
UNREACHABLE = const(3)
FRAG_NEEDED = const(4)      # code of UNREACHABLE (RFC 1191)
_ERROR_MAX = const(576)     # RFC 1812 4.3.2.3: the whole error fits in 576 bytes
_HEADERS = const(28)        # IPv4 header + ICMP header of the error
_TTL = const(64)


def echo_reply_in_place(buf, hl):
    """Turn the echo request in buf into its reply: swap the addresses, type 0, TTL 64.
    Checksums are updated incrementally (RFC 1624 eqn. 3), so a request with a bad
    ICMP checksum gets a reply with a bad checksum, which its sender discards."""
    for i in range(12, 16):
        b = buf[i]
        buf[i] = buf[i + 4]
        buf[i + 4] = b
    # Swapping the addresses leaves the header sum alone; the TTL/protocol word changes.
    old = buf[8] << 8 | buf[9]
    buf[8] = _TTL
    hc = buf[10] << 8 | buf[11]
    _put16(buf, 10, fold((0xFFFF ^ hc) + (0xFFFF ^ old) + (_TTL << 8 | _ICMP)) ^ 0xFFFF)
    # ICMP: the type/code word goes from 0x0800 to 0x0000.
    at = hl + 2
    hc = buf[at] << 8 | buf[at + 1]
    buf[hl] = _ECHO_REPLY
    _put16(buf, at, fold((0xFFFF ^ hc) + (0xFFFF ^ (_ECHO_REQUEST << 8))) ^ 0xFFFF)


class ErrorBuilder:
    """Builds ICMP error messages quoting a received packet (RFC 792, RFC 1812 4.3.2.3)
    into its own preallocated buffer, and rate-limits them with a token bucket
    (RFC 1812 4.3.2.8). `ms` is the millisecond clock (tests pass a fake one)."""

    def __init__(self, ms, rate=10, burst=20):
        self.buf = bytearray(_ERROR_MAX)
        self._ms = ms
        self._rate = rate         # tokens per second
        self._cap = burst * 1000  # bucket size, in thousandths of a token
        self._tokens = self._cap
        self._last = ms()
        self._ident = 0

    def allow(self):
        """Take a token; False when the bucket is empty (the error is not sent)."""
        now = self._ms()
        elapsed = ticks_diff(now, self._last)
        self._last = now
        if elapsed > 0:
            # min(): the product stays a small int; the bucket is full anyway
            self._tokens += min(elapsed, 100000) * self._rate
            self._tokens = min(self._tokens, self._cap)
        if self._tokens < 1000:
            return False
        self._tokens -= 1000
        return True

    def build(self, pkt, src_hi, src_lo, typ, code, rest):
        """The error about the packet in `pkt`, from src_hi.src_lo (the router's address,
        as two 16-bit halves) to the packet's source. `rest` is the second ICMP header
        word's low half (the next-hop MTU for Fragmentation Needed, else 0).
        Returns its length; the message is self.buf[0:length]."""
        out = self.buf
        quote = pkt[2] << 8 | pkt[3]
        quote = min(quote, _ERROR_MAX - _HEADERS)
        n = _HEADERS + quote
        # RFC 1812 4.3.2.5: precedence 6 (internetwork control), the original TOS bits
        # (RFC 1349), never its ECN bits (RFC 3168: the error is not ECN-capable).
        out[0] = 0x45
        out[1] = 0xC0 | (pkt[1] & 0x1C)
        _put16(out, 2, n)
        self._ident = (self._ident + 1) & 0xFFFF
        _put16(out, 4, self._ident)
        out[6] = 0
        out[7] = 0
        out[8] = _TTL
        out[9] = _ICMP
        out[10] = 0
        out[11] = 0
        _put16(out, 12, src_hi)
        _put16(out, 14, src_lo)
        for i in range(4):
            out[16 + i] = pkt[12 + i]
        _put16(out, 10, sum16(out, 0, 20) ^ 0xFFFF)
        out[20] = typ
        out[21] = code
        out[22] = 0
        out[23] = 0
        out[24] = 0
        out[25] = 0
        _put16(out, 26, rest)
        for i in range(quote):  # a slice copy would allocate on MicroPython
            out[_HEADERS + i] = pkt[i]
        _put16(out, 22, sum16(out, 20, n) ^ 0xFFFF)
        return n
