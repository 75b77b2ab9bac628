# One IPv4 packet in a caller-owned buffer. parse() only reads the buffer and fills a
# small array of 16-bit fields; attributes are computed from those on access (slow path).
from array import array

from .consts import (F_OK, F_LEN, F_PROTO, F_TTL, F_KIND, F_SPORT, F_DPORT, F_TYPE,
                     F_CODE, F_WORDS, K_TCP, K_QUERY)

from .consts import const  # micropython.const, or a stand-in on CPython

_MALFORMED = const(5)
_TCP = const(6)
_UDP = const(17)
_ICMP = const(1)


def parse_py(buf, n, f):
    """Pure-Python parse: the twin of the viper core's parse. Returns OK or MALFORMED."""
    f[0] = 0  # F_OK
    if n < 20 or n > len(buf):
        return _MALFORMED
    b0 = buf[0]
    hl = (b0 & 15) << 2
    if b0 >> 4 != 4 or hl < 20:
        return _MALFORMED
    tl = buf[2] << 8 | buf[3]
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
    proto = buf[9]
    kind = 0  # K_OTHER
    sport = dport = 0
    typ = code = 0xFFFF  # not ICMP, or a non-first fragment
    # Only a first fragment (offset 0) carries the transport header.
    if not ((buf[6] & 0x1F) | buf[7]):
        room = tl - hl
        if proto == _TCP:
            if room < 20:
                return _MALFORMED
            doff = (buf[hl + 12] >> 4) << 2
            if doff < 20 or doff > room:
                return _MALFORMED
            kind = 1  # K_TCP
        elif proto == _UDP:
            if room < 8:
                return _MALFORMED
            kind = 2  # K_UDP
        elif proto == _ICMP:
            if room < 8:
                return _MALFORMED
            typ = buf[hl]
            code = buf[hl + 1]
            if typ in (0, 8, 13, 14, 15, 16, 17, 18):
                kind = 3  # K_QUERY: id in both port fields
                sport = dport = buf[hl + 4] << 8 | buf[hl + 5]
            elif typ in (3, 4, 5, 11, 12):
                kind = 4  # K_ERROR
        if kind == 1 or kind == 2:
            sport = buf[hl] << 8 | buf[hl + 1]
            dport = buf[hl + 2] << 8 | buf[hl + 3]
    f[1] = tl      # F_LEN
    f[2] = hl      # F_L4
    f[3] = proto   # F_PROTO
    f[4] = buf[8]  # F_TTL
    f[5] = kind    # F_KIND
    f[6] = sport
    f[7] = dport
    f[8] = typ
    f[9] = code
    f[0] = 1
    return 0


from .core import parse as _parse_fast


def _addr(buf, at):
    return buf[at] << 24 | buf[at + 1] << 16 | buf[at + 2] << 8 | buf[at + 3]


class Packet:
    """`Packet()` is reusable: `parse(buf, n)` again for the next packet.

    `pure=True` uses the pure-Python parser even where the viper core exists."""

    def __init__(self, pure=False):
        self._f = array("H", bytes(2 * F_WORDS))
        self._buf = bytearray(0)
        self._parse = parse_py if (pure or _parse_fast is None) else _parse_fast

    def parse(self, buf, n=-1):
        if n < 0:
            n = len(buf)
        self._buf = buf
        return self._parse(buf, n, self._f)

    def _get(self, word):
        return self._f[word] if self._f[F_OK] else None

    # The slow-path view. src/dst are built on access: on a 32-bit MicroPython an
    # address is a heap int, so the per-packet path never reads them.
    @property
    def src(self):
        return _addr(self._buf, 12) if self._f[F_OK] else None

    @property
    def dst(self):
        return _addr(self._buf, 16) if self._f[F_OK] else None

    @property
    def proto(self):
        return self._get(F_PROTO)

    @property
    def ttl(self):
        return self._get(F_TTL)

    @property
    def length(self):
        return self._get(F_LEN)

    @property
    def sport(self):
        return self._get(F_SPORT) if self._has_ports() else None

    @property
    def dport(self):
        return self._get(F_DPORT) if self._has_ports() else None

    @property
    def icmp_type(self):
        return self._get(F_TYPE) if self._is_icmp() else None

    @property
    def icmp_code(self):
        return self._get(F_CODE) if self._is_icmp() else None

    def _has_ports(self):
        return self._f[F_OK] and K_TCP <= self._f[F_KIND] <= K_QUERY

    def _is_icmp(self):
        return self._f[F_OK] and self._f[F_TYPE] != 0xFFFF

    def __repr__(self):
        if not self._f[F_OK]:
            return "<Packet: not parsed>"
        from .addr import ip_str
        return "<Packet proto=%d %s:%s -> %s:%s ttl=%d len=%d>" % (
            self.proto, ip_str(self.src), self.sport, ip_str(self.dst), self.dport,
            self.ttl, self.length)
