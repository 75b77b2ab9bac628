# ARP (RFC 826) for one Ethernet link of the virtual board.
#
# A small fixed-size cache with timeouts, answers for the board's own address,
# and a few whole frames held while their next hop is being resolved
# (RFC 1122 2.3.2.2: keep at least the latest packet). Every buffer is made in
# the constructor; looking a next hop up allocates nothing.
#
# Addresses are 4 raw bytes (a buffer + offset), never one int: the same code
# must not allocate on a 32-bit MicroPython.
#
# Times are ticks in ms (time.ticks_ms on MicroPython, any int counter on CPython);
# the caller passes `now`, so tests drive the clock.

from compat import const, ticks_diff

_FREE = const(0)
_INCOMPLETE = const(1)  # asked, no answer yet
_REACHABLE = const(2)

REFRESH_MS = 30000  # older than this: ask again (unicast) but keep using it
EXPIRE_MS = 60000   # older than this: forget (RFC 1122 2.3.2.1 wants a timeout)
RETRY_MS = 1000     # at most one request per second per address (RFC 1122 2.3.2.1)
TRIES = 3           # requests before a next hop counts as unreachable

_ETH = const(14)
_ARP_FRAME = const(42)  # Ethernet header + 28-byte ARP packet for IPv4
_OP_REQUEST = const(1)
_OP_REPLY = const(2)

_ARP_HEAD = b"\x08\x06\x00\x01\x08\x00\x06\x04\x00"  # type ARP, htype 1, ptype IPv4, hlen 6, plen 4, op hi


class Arp:
    # mac: 6 bytes, ip: 4 bytes (this board's on the link). transmit(frame, n)
    # sends one whole Ethernet frame. frame_size: largest frame held (14 + MTU).
    def __init__(self, mac, ip, transmit, size=16, held=4, frame_size=1514):
        self.mac = bytes(mac)
        self.ip = bytes(ip)
        self._transmit = transmit
        self.size = size
        self._state = bytearray(size)
        self._ips = bytearray(4 * size)
        self._macs = bytearray(6 * size)  # flat: frames.egress reads it
        self._used = bytearray(size)       # set by frames.egress; the refresh timer reads it
        self._seen = [0] * size    # last answer (REACHABLE) or first request (INCOMPLETE)
        self._asked = [0] * size   # last request sent
        self._tries = bytearray(size)
        self._last = 0             # slot of the last hit: most traffic goes to one gateway
        self._held = [bytearray(frame_size) for _ in range(held)]
        self._held_len = [0] * held  # 0: free
        self._held_slot = bytearray(held)
        self._held_age = [0] * held  # arrival order, to replace the oldest
        self._arrivals = 0
        self._out = bytearray(_ARP_FRAME)
        self._out[12:21] = _ARP_HEAD
        self.requests = 0     # requests sent
        self.replies = 0      # replies sent
        self.learned = 0      # entries created or changed
        self.held = 0         # frames queued for resolution
        self.dropped = 0      # queued frames lost: queue full or no answer

    # ---- lookup (per packet) ------------------------------------------------

    def _find(self, b, o):
        ips = self._ips
        i = self._last
        j = 4 * i
        if self._state[i] and ips[j] == b[o] and ips[j + 1] == b[o + 1] \
                and ips[j + 2] == b[o + 2] and ips[j + 3] == b[o + 3]:
            return i
        for i in range(self.size):
            j = 4 * i
            if self._state[i] and ips[j] == b[o] and ips[j + 1] == b[o + 1] \
                    and ips[j + 2] == b[o + 2] and ips[j + 3] == b[o + 3]:
                self._last = i
                return i
        return -1

    # The slot whose MAC to use for the address at b[o:o+4], or -1 when it is
    # not known yet (then hold() the frame).
    def lookup(self, b, o, now):
        i = self._find(b, o)
        if i < 0 or self._state[i] != _REACHABLE:
            return -1
        age = ticks_diff(now, self._seen[i])
        if age >= REFRESH_MS:
            if age >= EXPIRE_MS:
                self._state[i] = _FREE
                return -1
            if self._tries[i] < TRIES and ticks_diff(now, self._asked[i]) >= RETRY_MS:
                self._request(i, now, self.mac_of(i))  # unicast poll, RFC 1122 2.3.2.1
        return i

    def mac_of(self, slot):
        return bytes(self._macs[6 * slot:6 * slot + 6])

    # ---- resolution ------------------------------------------------------------

    # Keeps frame[0:n] (destination MAC filled in later) until the address at
    # b[o:o+4] answers; asks for it. Returns False when the frame was dropped.
    def hold(self, frame, n, b, o, now):
        i = self._find(b, o)
        if i < 0:
            i = self._new_slot(now)
            j = 4 * i
            for k in range(4):
                self._ips[j + k] = b[o + k]
            self._state[i] = _INCOMPLETE
            self._tries[i] = 0
        elif self._state[i] == _REACHABLE:  # expired just now
            self._state[i] = _INCOMPLETE
            self._tries[i] = 0
        if self._tries[i] == 0:
            self._seen[i] = now
            self._request(i, now, None)  # poll() repeats it
        if n > len(self._held[0]):
            self.dropped += 1
            return False
        q = self._held_spot()
        if self._held_len[q]:
            self.dropped += 1  # the oldest held frame makes room
        self._held[q][0:n] = memoryview(frame)[0:n]
        self._held_len[q] = n
        self._held_slot[q] = i
        self._arrivals += 1
        self._held_age[q] = self._arrivals
        self.held += 1
        return True

    def _held_spot(self):
        best = 0
        for q in range(len(self._held)):
            if not self._held_len[q]:
                return q
            if self._held_age[q] < self._held_age[best]:
                best = q
        return best

    def _new_slot(self, now):
        # a free slot, else the one heard from longest ago (its held frames go)
        best = 0
        for i in range(self.size):
            if not self._state[i]:
                return i
            if ticks_diff(self._seen[best], self._seen[i]) > 0:
                best = i
        self._forget(best)
        return best

    def _forget(self, i):
        self._state[i] = _FREE
        for q in range(len(self._held)):
            if self._held_len[q] and self._held_slot[q] == i:
                self._held_len[q] = 0
                self.dropped += 1

    # Timers: retries, unanswered addresses, expiry. Call every ~100 ms while
    # busy() (cheap to call more often).
    def arrays(self):
        """(ips, states, macs, used): the cache as frames.egress reads and marks it."""
        return self._ips, self._state, self._macs, self._used

    def poll(self, now):
        for i in range(self.size):
            st = self._state[i]
            if st == _INCOMPLETE:
                if ticks_diff(now, self._asked[i]) >= RETRY_MS:
                    if self._tries[i] >= TRIES:
                        self._forget(i)  # RFC 1122 2.3.2.2: give up, drop what waits
                    else:
                        self._request(i, now, None)
            elif st == _REACHABLE:
                age = ticks_diff(now, self._seen[i])
                if age >= EXPIRE_MS:
                    self._state[i] = _FREE
                elif (age >= REFRESH_MS and self._used[i] and self._tries[i] < TRIES
                      and ticks_diff(now, self._asked[i]) >= RETRY_MS):
                    self._used[i] = 0
                    self._request(i, now, self.mac_of(i))  # unicast poll, RFC 1122 2.3.2.1

    def busy(self):
        for n in self._held_len:
            if n:
                return True
        return False

    def _request(self, i, now, unicast_mac):
        out = self._out
        j = 4 * i
        dst = unicast_mac if unicast_mac is not None else b"\xff\xff\xff\xff\xff\xff"
        out[0:6] = dst
        out[21] = _OP_REQUEST
        out[32:38] = b"\x00\x00\x00\x00\x00\x00"
        for k in range(4):
            out[38 + k] = self._ips[j + k]
        self._fill_sender()
        self._asked[i] = now
        self._tries[i] += 1
        self.requests += 1
        self._transmit(out, _ARP_FRAME)

    def _fill_sender(self):
        out = self._out
        out[6:12] = self.mac
        out[22:28] = self.mac
        out[28:32] = self.ip

    # RFC 5227 2.3 announcement: tells the link who we are (after a restart
    # with a new MAC, neighbours would otherwise wait for their entry to age).
    def announce(self):
        out = self._out
        out[0:6] = b"\xff\xff\xff\xff\xff\xff"
        out[21] = _OP_REQUEST
        out[32:38] = b"\x00\x00\x00\x00\x00\x00"
        out[38:42] = self.ip
        self._fill_sender()
        self._transmit(out, _ARP_FRAME)

    # ---- input -----------------------------------------------------------------

    # One received ARP frame (Ethernet header included), RFC 826 "Packet reception".
    def input(self, f, n, now):
        if n < _ARP_FRAME or f[14] != 0 or f[15] != 1 or f[16] != 8 or f[17] != 0 \
                or f[18] != 6 or f[19] != 4 or f[20] != 0:
            return
        op = f[21]
        if (f[28] | f[29] | f[30] | f[31]) == 0:
            sender = -1  # an RFC 5227 probe: nothing to learn
        else:
            sender = self._find(f, 28)
        if sender >= 0:
            self._learn(sender, f, now)
        ip = self.ip
        if f[38] != ip[0] or f[39] != ip[1] or f[40] != ip[2] or f[41] != ip[3]:
            return
        if sender < 0 and (f[28] | f[29] | f[30] | f[31]):
            sender = self._new_slot(now)
            j = 4 * sender
            for k in range(4):
                self._ips[j + k] = f[28 + k]
            self._learn(sender, f, now)
        if op == _OP_REQUEST:
            self._reply(f)

    def _learn(self, i, f, now):
        m = self._macs
        j = 6 * i
        changed = self._state[i] != _REACHABLE
        for k in range(6):
            if m[j + k] != f[22 + k]:
                m[j + k] = f[22 + k]
                changed = True
        if changed:
            self.learned += 1
        self._state[i] = _REACHABLE
        self._seen[i] = now
        self._tries[i] = 0
        while True:  # what waited for this address, in arrival order
            q = -1
            for k in range(len(self._held)):
                if self._held_len[k] and self._held_slot[k] == i and (
                        q < 0 or self._held_age[k] < self._held_age[q]):
                    q = k
            if q < 0:
                return
            frame = self._held[q]
            frame[0:6] = m[j:j + 6]
            n = self._held_len[q]
            self._held_len[q] = 0
            self._transmit(frame, n)

    def _reply(self, f):
        out = self._out
        for k in range(6):
            out[k] = f[22 + k]       # to the asker
            out[32 + k] = f[22 + k]  # target hardware address
        for k in range(4):
            out[38 + k] = f[28 + k]
        out[21] = _OP_REPLY
        self._fill_sender()
        self.replies += 1
        self._transmit(out, _ARP_FRAME)

    # ---- slow path ---------------------------------------------------------

    def entries(self):
        names = ("free", "incomplete", "reachable")
        out = []
        for i in range(self.size):
            if self._state[i]:
                j = 4 * i
                out.append("%d.%d.%d.%d %s %s" % (
                    self._ips[j], self._ips[j + 1], self._ips[j + 2], self._ips[j + 3],
                    ":".join("%02x" % b for b in self.mac_of(i)), names[self._state[i]]))
        return out

    def stats(self):
        return {"arp_requests": self.requests, "arp_replies": self.replies,
                "arp_learned": self.learned, "arp_held": self.held, "arp_dropped": self.dropped}
