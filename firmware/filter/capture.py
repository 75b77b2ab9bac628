# Packet capture (issue 21): the router's own view of its links, as it receives a packet
# (before translation) and as it sends one (after), into a fixed ring of libpcap records
# (LINKTYPE_RAW: bare IPv4), read out over the REPL (tools/capture.py) or a TCP stream on
# the LAN address (services/capstream.py).
#
# tap() swaps the links' receive and send (Shared.recvs, .sends) for ones that note each
# packet, then rebuilds the datapath's tuples; untap() puts them back. With capture off
# the forwarding path is exactly the one without capture: no test at all.
#
# The ring is made once (size and snap length: natrouter.json's "capture"); note() copies
# into it and allocates nothing (host_tests/upy/router_alloc.py checks it under
# heap_lock). A full ring keeps what it holds and drops the newest packet, counted as
# lost; reading frees room. Timestamps: the wall clock when the capture started, plus
# ticks_ms since (milliseconds).
import time

from compat import ticks_ms, ticks_diff
import nat
from nat import core

LINKTYPE_RAW = 101     # libpcap: the packet begins with its IP header
HEADER_LEN = 24        # the pcap file header
RECORD_LEN = 16        # a record's header: seconds, microseconds, captured, original length
_TCP = 6
_UDP = 17
SIDES = {"lan": 1, "wan": 2, "both": 3}   # bit 1 << side (forward/shared.py: LAN 0, WAN 1)


def check(side, host, proto, port):
    """The filter's arguments as start() takes them; ValueError naming the wrong one."""
    if side not in SIDES:
        raise ValueError("side: %r must be lan, wan or both" % (side,))
    number = 0 if proto is None else nat.proto_number(proto)
    addr = None if host is None else nat.ip(host)
    if port is not None and not (type(port) is int and 1 <= port <= 65535):
        raise ValueError("port: %r must be 1..65535" % (port,))
    return SIDES[side], (None if addr is None else (addr >> 16, addr & 0xFFFF)), number, port or 0


def file_header(snap):
    """The pcap file header (little-endian, version 2.4) every stream begins with."""
    h = bytearray(HEADER_LEN)
    for at, value, n in ((0, 0xA1B2C3D4, 4), (4, 2, 2), (6, 4, 2), (16, snap, 4),
                         (20, LINKTYPE_RAW, 4)):
        for i in range(n):
            h[at + i] = (value >> (8 * i)) & 0xFF
    return bytes(h)


class Capture:
    def __init__(self, size, snap):
        self.ring = bytearray(size)
        self.size = size
        self.snap = snap
        self._start = 0     # the oldest record's first byte
        self.used = 0
        self.packets = 0    # noted in the ring
        self.lost = 0       # dropped: the ring was full
        self.on = False
        self._sides = 3
        self._proto = 0
        self._host = None   # (hi, lo) of the address filtered on, or None
        self._port = 0
        self._sec_hi = self._sec_lo = 0
        self._ms = 0
        self._last = 0

    def start(self, filters):
        """Empty the ring and note from now on the packets check() admits: of a side
        ("lan", "wan", "both"), to or from a host, of a proto ("tcp", "udp", "icmp"), to
        or from a port (TCP and UDP)."""
        self._sides, self._host, self._proto, self._port = filters
        self._start = self.used = self.packets = self.lost = 0
        now = int(time.time())
        self._sec_hi, self._sec_lo = now >> 16, now & 0xFFFF
        self._ms = 0
        self._last = ticks_ms()
        self.on = True

    def note(self, buf, n, side):
        """The packet buf[0:n], seen on side (0 LAN, 1 WAN): into the ring if it passes
        the filter. Allocates nothing."""
        if not self._sides & (1 << side) or n < 20:
            return
        if self._proto and buf[9] != self._proto:
            return
        host = self._host
        if host is not None and not (
                ((buf[12] << 8 | buf[13]) == host[0] and (buf[14] << 8 | buf[15]) == host[1])
                or ((buf[16] << 8 | buf[17]) == host[0] and (buf[18] << 8 | buf[19]) == host[1])):
            return
        if self._port:
            l4 = (buf[0] & 15) * 4
            if ((buf[9] != _TCP and buf[9] != _UDP) or (buf[6] & 0x1F) or buf[7]
                    or n < l4 + 4):
                return
            if ((buf[l4] << 8 | buf[l4 + 1]) != self._port
                    and (buf[l4 + 2] << 8 | buf[l4 + 3]) != self._port):
                return
        cap = n if n < self.snap else self.snap
        if self.used + RECORD_LEN + cap > self.size:
            self.lost += 1
            return
        now = ticks_ms()
        self._ms += ticks_diff(now, self._last)
        self._last = now
        while self._ms >= 1000:
            self._ms -= 1000
            self._sec_lo += 1
            if self._sec_lo > 0xFFFF:
                self._sec_lo = 0
                self._sec_hi += 1
        at = self._start + self.used
        if at >= self.size:
            at -= self.size
        ring = self.ring
        at = put32(ring, at, self._sec_hi, self._sec_lo)
        usec = self._ms * 1000
        at = put32(ring, at, usec >> 16, usec & 0xFFFF)
        at = put32(ring, at, 0, cap)
        at = put32(ring, at, 0, n)
        copy(ring, at, buf, cap)   # a slice would allocate
        self.used += RECORD_LEN + cap
        self.packets += 1

    def read(self, most):
        """Up to `most` bytes of whole records, oldest first, taken out of the ring."""
        out = bytearray()
        ring, size = self.ring, self.size
        while self.used:
            at = self._start
            caplen = ring[(at + 8) % size] | ring[(at + 9) % size] << 8
            n = RECORD_LEN + caplen
            if out and len(out) + n > most:
                break   # (a record longer than most comes alone)
            end = at + n
            out += ring[at:min(end, size)] + (ring[0:end - size] if end > size else b"")
            self._start = end % size
            self.used -= n
        return bytes(out)

    def status(self):
        return {"on": self.on, "packets": self.packets, "lost": self.lost,
                "held": self.used, "size": self.size, "snap": self.snap}


# ---- the ring's writes: pure Python here, their viper twins in _capture_viper.py

def put32_py(ring, at, hi, lo):
    """The little-endian 32-bit word hi.lo (16-bit halves) at ring[at], wrapping at its
    end; returns where the next byte goes."""
    at = _put8(ring, at, lo & 0xFF)
    at = _put8(ring, at, lo >> 8)
    at = _put8(ring, at, hi & 0xFF)
    return _put8(ring, at, hi >> 8)


def _put8(ring, at, b):
    ring[at] = b
    at += 1
    return 0 if at == len(ring) else at


def copy_py(ring, at, buf, n):
    """buf[0:n] into ring from at, wrapping at its end; returns where the next byte goes."""
    size = len(ring)
    for i in range(n):
        ring[at] = buf[i]
        at = at + 1 if at + 1 < size else 0
    return at


if core.NAME == "viper":
    from ._capture_viper import put32, copy
else:
    put32, copy = put32_py, copy_py


def tap(shared, datapath, cap):
    """Note every packet the links receive and send into cap, from now on."""
    if getattr(shared, "untapped", None) is None:
        shared.untapped = (shared.recvs, shared.sends)
    recvs, sends = shared.untapped
    note = cap.note
    shared.recvs = tuple(_receiver(recv, note, side) for side, recv in enumerate(recvs))
    shared.sends = tuple(_sender(send, note, side) for side, send in enumerate(sends))
    datapath.set_policy(shared.cfg)


def untap(shared, datapath):
    """The links as they were before tap(): capture costs nothing again."""
    if getattr(shared, "untapped", None) is not None:
        shared.recvs, shared.sends = shared.untapped
        shared.untapped = None
        datapath.set_policy(shared.cfg)


def _receiver(recv, note, side):
    def receive(buf):
        n = recv(buf)
        if n > 0:
            note(buf, n, side)
        return n
    return receive


def _sender(send, note, side):
    def sender(buf, n):
        note(buf, n, side)
        return send(buf, n)
    return sender
