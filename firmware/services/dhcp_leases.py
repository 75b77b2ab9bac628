# The DHCP server's address pool and lease table (services/dhcp.py). Its rules under
# pressure (floods, exhaustion, declines) are told in services/README.md; what a reboot
# must remember of it is dhcp_file.py's.
#
# Everything is made once and never grows: `cap` entries of parallel arrays, 37 bytes an
# entry (the client's key 16, the key's hash 2, MAC 6, address 4, expiry 4, last heard 4,
# state 1); `cap` is the pool's size, so that every address of the pool can be bound (at
# most CAPACITY_MAX, or the configured capacity if smaller). Beside it the addresses set
# aside after DHCPDECLINE (dhcp_declines.py) and a scratch bitmap.
# Addresses are host parts (the address minus the LAN's network address): small ints even
# on 32-bit MicroPython. Host part 0 (the network address, never in the pool) means none.
# Times are clock seconds. An entry's state:
#   EMPTY     nothing remembered
#   FREE      the lease or the offer ended (exp: when); client and address stay
#             remembered so the client gets its address back (RFC 2131 4.3.1), until
#             someone else needs them
#   OFFERED   offered until exp; it costs nothing: a client that needs an address takes
#             it when nothing cheaper is left, and the first to REQUEST it gets it
#   BOUND     leased until exp; seen: when the client was last heard from
# An address is in at most one entry that is not EMPTY; a declined one in none.
# Static leases (by MAC) live beside the table, reserved whether bound or not.
from array import array

from .dhcp_config import ip, ip_bytes, mac, mac_str, CAPACITY_MAX
from .dhcp_declines import Declines, DECLINE_MAX

from compat import const, zeros

KEY_LEN = const(16)
EMPTY = const(0)
FREE = const(1)
OFFERED = const(2)
BOUND = const(3)
STATE_NAMES = ("empty", "free", "offered", "bound")
# What another client's need takes, cheapest first (Pool.taken counts them): a remembered
# address, an offer, a stale binding (not heard from for STALE_8THS/8 of the lease: a
# live client renews at T1, half of it, RFC 2131 4.4.5).
TAKE_FREE = const(0)
TAKE_OFFER = const(1)
TAKE_STALE = const(2)
STALE_8THS = const(5)


def client_key(chaddr, cid=None):
    """The table's key: the client identifier (option 61) when the client sent one, else
    its MAC (RFC 2131 4.2). The first byte tells them apart and is never 0."""
    key = bytearray(KEY_LEN)
    if cid is None:
        key[0] = 0xFE
        key[1:7] = chaddr
    elif len(cid) < KEY_LEN:
        key[0] = len(cid)
        key[1:1 + len(cid)] = cid
    else:
        # Long ones (RFC 4361 DUIDs): their distinctive end, and a hash of them whole.
        key[0] = 0xFF
        key[1:12] = cid[len(cid) - 11:]
        h = 0x811C9DC5  # FNV-1a
        for b in cid:
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
        for k in range(4):
            key[12 + k] = (h >> (24 - 8 * k)) & 0xFF
    return bytes(key)


def key_hash(key):
    """16 bits of the key, compared before the key itself."""
    h = 0
    for b in key:
        h = (h * 31 + b) & 0xFFFF
    return h


class Pool:
    def __init__(self, cfg, lan_addr, lan_mask):
        la, lm = ip(lan_addr), ip(lan_mask)
        inv = lm ^ 0xFFFFFFFF
        self.net = ip_bytes(la & lm)
        self.mask = ip_bytes(lm)
        self.router = la & inv
        self.bcast = inv
        self.first = ip(cfg["first"]) & inv
        self.last = ip(cfg["last"]) & inv
        self.lease_s = cfg["lease_s"]
        self.stale_s = self.lease_s * STALE_8THS // 8
        statics = cfg["static"]
        ns = self.ns = len(statics)
        self.s_mac = bytearray(ns * 6)
        self.s_host = zeros("I", ns)
        self.s_exp = zeros("i", ns)  # 0: not bound
        size = min(self.last - self.first + 1, CAPACITY_MAX + ns + 1)
        if self.first <= self.router <= self.last:
            size -= 1
        for s, entry in enumerate(statics):
            self.s_mac[s * 6:s * 6 + 6] = mac(entry["mac"])
            h = self.s_host[s] = ip(entry["addr"]) & inv
            if self.first <= h <= self.last:
                size -= 1
        self.size = size = max(1, size)  # the addresses the pool can lease
        n = self.cap = min(cfg["capacity"] or CAPACITY_MAX, size)
        self.key = bytearray(n * KEY_LEN)
        self.kh = zeros("H", n)
        self.mac = bytearray(n * 6)
        self.host = zeros("I", n)
        self.exp = zeros("i", n)
        self.seen = zeros("i", n)
        self.state = bytearray(n)
        nd = max(1, min(DECLINE_MAX, size // 4))
        self.declines = Declines(nd)
        # fresh(): among the first `span` addresses of the pool one is always unmarked
        self._span = n + ns + nd + 2
        self._bits = bytearray((self._span + 7) // 8)
        self.taken = array("I", [0, 0, 0])  # by TAKE_*
        self.dirty = False  # the bindings changed since the store last had them

    # ---- addresses

    def host_at(self, buf, off):
        """The host part of the address buf[off:off+4], or -1 if it is not on the LAN."""
        h = 0
        for k in range(4):
            b = buf[off + k]
            m = self.mask[k]
            if b & m != self.net[k]:
                return -1
            h = (h << 8) | (b & (m ^ 0xFF))
        return h

    def lan_host(self, buf, off):
        """The host part of buf[off:off+4] if it is a host on the LAN other than the
        router (not the network, not the broadcast address), else -1."""
        h = self.host_at(buf, off)
        return -1 if h <= 0 or h == self.bcast or h == self.router else h

    def put(self, buf, off, h):
        for k in range(4):
            buf[off + k] = self.net[k] | ((h >> (24 - 8 * k)) & 0xFF)

    def addr_str(self, h):
        b = bytearray(4)
        self.put(b, 0, h)
        return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])

    def usable(self, h):
        """In the pool, not the router's, no static address, not declined."""
        if h < self.first or h > self.last or h == self.router:
            return False
        for s in range(self.ns):
            if self.s_host[s] == h:
                return False
        return self.declines.find(h) < 0

    def owner(self, h):
        """The entry that holds or remembers address h, or -1."""
        st, host = self.state, self.host
        for j in range(self.cap):
            if st[j] != EMPTY and host[j] == h:
                return j
        return -1

    def fresh(self):
        """The lowest pool address nobody holds, remembers or has declined; -1 if none."""
        bits, first, span = self._bits, self.first, self._span
        for i in range(len(bits)):
            bits[i] = 0
        for h in self._marks():
            d = h - first
            if 0 <= d < span:
                bits[d >> 3] |= 1 << (d & 7)
        for d in range(min(span, self.last - first + 1)):
            if not bits[d >> 3] & (1 << (d & 7)):
                return first + d
        return -1

    def _marks(self):
        yield self.router
        for s in range(self.ns):
            yield self.s_host[s]
        dl = self.declines
        for d in range(dl.n):
            if dl.used(d):
                yield dl.host[d]
        st, host = self.state, self.host
        for j in range(self.cap):
            if st[j] != EMPTY:
                yield host[j]

    # ---- the table

    def expire(self, now):
        st, exp = self.state, self.exp
        for i in range(self.cap):
            if st[i] >= OFFERED and exp[i] - now <= 0:
                st[i] = FREE  # exp stays: when it ended
        for s in range(self.ns):
            if self.s_exp[s] and self.s_exp[s] - now <= 0:
                self.s_exp[s] = 0
        self.declines.expire(now)

    def find(self, key, kh):
        """The entry of the client with this key (kh: key_hash(key)), or -1."""
        k, hs, st = self.key, self.kh, self.state
        for i in range(self.cap):
            if hs[i] == kh and st[i] != EMPTY and k[i * KEY_LEN:(i + 1) * KEY_LEN] == key:
                return i
        return -1

    def static_of(self, macb):
        m = self.s_mac
        for s in range(self.ns):
            b = s * 6
            if m[b:b + 6] == macb:
                return s
        return -1

    def victim(self, now, slot, address):
        """The entry another client's need takes (not slot): an EMPTY one unless an
        address is wanted, else the one remembered longest (FREE), else the oldest offer,
        else the binding not heard from longest if it is stale; -1: none. (RFC 2131 3.1:
        an offered address need not be reserved; 4.3.1 leaves the rest to the server.)"""
        best, rank, when = -1, 3, 0
        st, exp, seen, host = self.state, self.exp, self.seen, self.host
        for j in range(self.cap):
            if j == slot:
                continue
            s = st[j]
            if s == EMPTY:
                if not address:
                    return j
                continue
            if s == FREE:
                if address and not host[j]:
                    continue  # it remembers a client, no address
                r, t = TAKE_FREE, exp[j]
            elif s == OFFERED:
                r, t = TAKE_OFFER, exp[j]
            elif now - seen[j] >= self.stale_s:
                r, t = TAKE_STALE, seen[j]
            else:
                continue
            if r < rank or (r == rank and t - when < 0):
                best, rank, when = j, r, t
        return best

    def _drop(self, j):
        """Forget entry j for another client's sake, counted by what it was."""
        s = self.state[j]
        if s == EMPTY:
            return
        self.taken[TAKE_STALE if s == BOUND else TAKE_OFFER if s == OFFERED else TAKE_FREE] += 1
        if s == BOUND:
            self.dirty = True
        self.state[j] = EMPTY
        self.declines.disown(j)

    def set_entry(self, i, key, kh, macb, h, state, exp, now):
        self.key[i * KEY_LEN:(i + 1) * KEY_LEN] = key
        self.kh[i] = kh
        self.mac[i * 6:i * 6 + 6] = macb
        self.host[i] = h
        self.state[i] = state
        self.exp[i] = exp
        self.seen[i] = now

    def _give(self, slot, v, now, key, kh, macb, h, state, exp):
        """Put the client (entry slot, -1: new) in an entry with address h, taken from
        entry v (-1: h was nobody's). False if no entry can be had."""
        i = slot
        if i < 0:
            i = v if v >= 0 else self.victim(now, -1, False)
            if i < 0:
                return False
        if v >= 0:
            self._drop(v)
        if slot < 0:
            self._drop(i)
        self.set_entry(i, key, kh, macb, h, state, exp, now)
        return True

    def offer(self, key, kh, macb, want, now, hold):
        """The address to offer (RFC 2131 4.3.1: the client's current or previous one,
        else the requested one if free, else a new one, else what victim() gives), held
        until now + hold; -1 if there is none."""
        slot = self.find(key, kh)
        if slot >= 0:
            h = self.host[slot]
            if h and (self.state[slot] >= OFFERED or self.usable(h)):
                if self.state[slot] != BOUND:  # a bound client asking again keeps its lease
                    self.state[slot] = OFFERED
                    self.exp[slot] = now + hold
                self.seen[slot] = now
                return h
        h = v = -1
        if want > 0 and self.usable(want):
            o = self.owner(want)
            if o < 0 or o == slot or self.state[o] == FREE:
                h, v = want, (-1 if o == slot else o)
        if h < 0:
            h = self.fresh()
        if h < 0:
            v = self.victim(now, slot, True)
            if v < 0:
                return -1
            h = self.host[v]
        return h if self._give(slot, v, now, key, kh, macb, h, OFFERED, now + hold) else -1

    def bind(self, key, kh, macb, h, now):
        """Lease h to the client: 1 a new binding, 0 a renewal, -1 not possible (another
        client's binding, not in the pool). An offer or a memory of h gives way."""
        if not self.usable(h):
            return -1
        slot = self.find(key, kh)
        o = self.owner(h)
        if o == slot:
            o = -1
        elif o >= 0 and self.state[o] == BOUND:
            return -1
        renewal = slot >= 0 and self.state[slot] == BOUND and self.host[slot] == h
        if not self._give(slot, o, now, key, kh, macb, h, BOUND, now + self.lease_s):
            return -1
        if not renewal:
            self.dirty = True
        return 0 if renewal else 1

    def release(self, key, kh, h, now):
        """The client's binding of h ends (DHCPRELEASE); True if it had one."""
        slot = self.find(key, kh)
        if slot < 0 or self.host[slot] != h or self.state[slot] != BOUND:
            return False
        self.state[slot] = FREE
        self.exp[slot] = now
        self.dirty = True
        return True

    def decline(self, key, kh, h, now, hold):
        """The client found h, which it holds, in use (DHCPDECLINE): h is set aside for
        hold seconds (within the bounds of dhcp_declines.py), the client stays in its
        entry without an address. True if it did."""
        slot = self.find(key, kh)
        if slot < 0 or self.host[slot] != h or self.state[slot] < OFFERED:
            return False
        if self.state[slot] == BOUND:
            self.dirty = True
        self.state[slot] = FREE
        self.exp[slot] = now
        self.host[slot] = 0
        self.declines.add(h, slot, now + hold)
        return True

    def drop_offer(self, key, kh, now):
        slot = self.find(key, kh)
        if slot >= 0 and self.state[slot] == OFFERED:
            self.state[slot] = FREE
            self.exp[slot] = now

    def bind_static(self, s, now):
        self.s_exp[s] = now + self.lease_s

    def unbind_static(self, s):
        self.s_exp[s] = 0

    # ---- for people (what a reboot remembers: dhcp_file.py)

    def leases(self, now):
        out = []
        for i in range(self.cap):
            st = self.state[i]
            if st >= OFFERED and self.exp[i] - now > 0:  # not yet expired by tick()
                out.append(self._row(self.mac[i * 6:i * 6 + 6], self.host[i], self.exp[i],
                                     now, False, STATE_NAMES[st]))
        dl = self.declines
        for d in range(dl.n):
            who = dl.who[d]
            if dl.used(d) and dl.exp[d] - now > 0:
                m = self.mac[who * 6:who * 6 + 6] if who >= 0 else None
                out.append(self._row(m, dl.host[d], dl.exp[d], now, False, "declined"))
        for s in range(self.ns):
            e = self.s_exp[s]
            if e and e - now <= 0:
                e = 0
            out.append(self._row(self.s_mac[s * 6:s * 6 + 6], self.s_host[s], e, now, True,
                                 "bound" if e else "reserved"))
        return out

    def _row(self, m, h, exp, now, static, state):
        return {"mac": mac_str(m) if m else "?", "addr": self.addr_str(h),
                "remaining": max(0, exp - now) if exp else 0, "static": static,
                "state": state}
