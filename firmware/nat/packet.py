# One IPv4 packet in a caller-owned buffer. parse() only reads the buffer and fills
# `fields`, a small array of 16-bit words (layout: consts.py); attributes are computed
# from those on access (slow path).

from compat import zeros
from . import core
from .consts import (const, F_OK, F_LEN, F_PROTO, F_TTL, F_KIND, F_SPORT, F_DPORT, F_TYPE,
                     F_CODE, F_WORDS, K_TCP, K_QUERY, NO_ICMP)

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_F_CAP = const(12)
_F_WRITABLE = const(13)
# ---- end of layout


def _addr(buf, at):
    return buf[at] << 24 | buf[at + 1] << 16 | buf[at + 2] << 8 | buf[at + 3]


def _writable(buf):
    try:
        buf[0] = buf[0]
        return True
    except Exception:  # TypeError: bytes, a read-only memoryview; IndexError: empty
        return False


class Packet:
    """`Packet()` is reusable: `parse(buf, n)` again for the next packet.

    `pure=True` uses the pure-Python core even where the viper core exists."""

    def __init__(self, pure=False):
        self.fields = zeros("H", F_WORDS)
        self._buf = None
        self._parse = (core.python if pure else core).parse

    def parse(self, buf, n=-1):
        if n < 0:
            n = len(buf)
        if buf is not self._buf:  # checked once per buffer, not per packet
            self.bind(buf)
        return self._parse(buf, n, self.fields)

    def bind(self, buf):
        """Make buf this packet's buffer without parsing: for callers that run the
        per-packet primitives (nat.core.parse) on `fields` themselves. parse() reads no
        further than the buffer's length, noted here in the fields (F_CAP)."""
        # parse() rebinds for every packet when buffers alternate: what bind learns goes
        # into the fields, as a store to one of this class's attributes costs more than
        # the rest (it has properties: every store looks for a setter).
        self._buf = buf
        f = self.fields
        f[_F_WRITABLE] = type(buf) is bytearray or _writable(buf)
        cap = len(buf)
        f[_F_CAP] = cap if cap < 0x10000 else 0xFFFF

    @property
    def writable(self):
        """Whether translate() may rewrite the buffer in place."""
        return self.fields[_F_WRITABLE] == 1

    @property
    def buf(self):
        return self._buf

    def _get(self, word):
        return self.fields[word] if self.fields[F_OK] else None

    # The slow-path view. src/dst are built on access: on a 32-bit MicroPython an
    # address is a heap int, so the per-packet path never reads them.
    @property
    def src(self):
        return _addr(self._buf, 12) if self.fields[F_OK] else None

    @property
    def dst(self):
        return _addr(self._buf, 16) if self.fields[F_OK] else None

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
        return self.fields[F_OK] and K_TCP <= self.fields[F_KIND] <= K_QUERY

    def _is_icmp(self):
        return self.fields[F_OK] and self.fields[F_TYPE] != NO_ICMP

    def __repr__(self):
        if not self.fields[F_OK]:
            return "<Packet: not parsed>"
        from .addr import ip_str
        return "<Packet proto=%d %s:%s -> %s:%s ttl=%d len=%d>" % (
            self.proto, ip_str(self.src), self.sport, ip_str(self.dst), self.dport,
            self.ttl, self.length)
