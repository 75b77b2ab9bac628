# The DHCP server's address pool and lease table (services/dhcp.py), its persistence
# (LeaseFile) and its default clock.
#
# The table is made once, `capacity` entries of parallel arrays, and never grows.
# Addresses are kept as host parts (the address minus the LAN's network address):
# small ints even on 32-bit MicroPython, where a whole address is a heap object.
# Times are clock seconds. An entry's state:
#   EMPTY     nothing remembered
#   FREE      the lease ended (released, expired, offer not taken); client and address
#             stay remembered so the client gets its address back (RFC 2131 4.3.1),
#             until the entry or the address is needed for someone else, oldest first;
#             exp is when it ended
#   OFFERED   held for the client until exp, awaiting its DHCPREQUEST
#   BOUND     leased until exp
#   DECLINED  a client found the address in use (DHCPDECLINE): kept from everyone
#             until exp, no client
# Static leases (by MAC) live beside the table, reserved whether bound or not.
from array import array
from binascii import hexlify, unhexlify

from manage.store import load_json, save_json
from .dhcp_config import ip, ip_bytes, mac, mac_str, usable_mac

from compat import const

KEY_LEN = const(16)
EMPTY = const(0)
FREE = const(1)
OFFERED = const(2)
BOUND = const(3)
DECLINED = const(4)
STATE_NAMES = ("empty", "free", "offered", "bound", "declined")


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


class Pool:
    def __init__(self, cfg, lan_addr, lan_mask):
        la, lm = ip(lan_addr), ip(lan_mask)
        inv = lm ^ 0xFFFFFFFF
        self.net = ip_bytes(la & lm)
        self.mask = ip_bytes(lm)
        self.router = la & inv
        self.first = ip(cfg["first"]) & inv
        self.last = ip(cfg["last"]) & inv
        self.lease_s = cfg["lease_s"]
        n = self.cap = cfg["capacity"]
        self.key = bytearray(n * KEY_LEN)
        self.mac = bytearray(n * 6)
        self.host = array("I", [0] * n)
        self.exp = array("i", [0] * n)
        self.state = bytearray(n)
        statics = cfg["static"]
        ns = self.ns = len(statics)
        self.s_mac = bytearray(ns * 6)
        self.s_host = array("I", [0] * ns)
        self.s_exp = array("i", [0] * ns)  # 0: not bound
        for s, entry in enumerate(statics):
            self.s_mac[s * 6:s * 6 + 6] = mac(entry["mac"])
            self.s_host[s] = ip(entry["addr"]) & inv

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

    def put(self, buf, off, h):
        for k in range(4):
            buf[off + k] = self.net[k] | ((h >> (24 - 8 * k)) & 0xFF)

    def addr_str(self, h):
        b = bytearray(4)
        self.put(b, 0, h)
        return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])

    # ---- the table

    def expire(self, now):
        st, exp = self.state, self.exp
        for i in range(self.cap):
            if st[i] >= OFFERED and exp[i] - now <= 0:
                if st[i] == DECLINED:
                    st[i] = EMPTY
                else:
                    st[i] = FREE  # exp stays: when it ended
        for s in range(self.ns):
            if self.s_exp[s] and self.s_exp[s] - now <= 0:
                self.s_exp[s] = 0

    def find(self, key):
        """The entry of the client with this key (any state that has a client), or -1."""
        k = self.key
        for i in range(self.cap):
            b = i * KEY_LEN
            if (k[b] == key[0] and k[b + 1] == key[1] and FREE <= self.state[i] <= BOUND
                    and k[b:b + KEY_LEN] == key):
                return i
        return -1

    def static_of(self, macb):
        m = self.s_mac
        for s in range(self.ns):
            b = s * 6
            if m[b:b + 6] == macb:
                return s
        return -1

    def available(self, h, slot):
        """Whether h may be leased to the client of entry slot (-1: a new entry): in the
        pool, not the router, no static address, held by no other entry."""
        if h < self.first or h > self.last or h == self.router:
            return False
        for s in range(self.ns):
            if self.s_host[s] == h:
                return False
        st, host = self.state, self.host
        for j in range(self.cap):
            if j != slot and st[j] >= OFFERED and host[j] == h:
                return False
        return True

    def free_slot(self):
        """An entry for a new client: an empty one, else the one FREE the longest; -1
        when every entry is held."""
        best = -1
        st, exp = self.state, self.exp
        for i in range(self.cap):
            if st[i] == EMPTY:
                return i
            if st[i] == FREE and (best < 0 or exp[i] - exp[best] < 0):
                best = i
        return best

    def new_host(self, slot):
        """A pool address for entry slot: the lowest one nobody holds or remembers, else
        the one of the entry FREE the longest (which forgets it); -1 if none."""
        st, host = self.state, self.host
        held = set()
        used = set()
        for j in range(self.cap):
            if j != slot and st[j] != EMPTY:
                used.add(host[j])
                if st[j] >= OFFERED:
                    held.add(host[j])
        for s in range(self.ns):
            held.add(self.s_host[s])
        held.add(self.router)
        h = self.first
        for _ in range(len(used) + len(held) + 1):  # each address passed is in a set
            if h > self.last:
                break
            if h not in used and h not in held:
                return h
            h += 1
        best = -1
        for j in range(self.cap):
            if (j != slot and st[j] == FREE and host[j] not in held
                    and (best < 0 or self.exp[j] - self.exp[best] < 0)):
                best = j
        if best < 0:
            return -1
        st[best] = EMPTY
        return host[best]

    def _set(self, i, key, macb, h, state, exp):
        self.key[i * KEY_LEN:(i + 1) * KEY_LEN] = key
        self.mac[i * 6:i * 6 + 6] = macb
        self.host[i] = h
        self.state[i] = state
        self.exp[i] = exp

    def offer(self, key, macb, want, now, hold):
        """The address to offer (RFC 2131 4.3.1: the client's current or previous one,
        else the requested one if free, else a new one), held until now + hold; -1 if
        there is none or no entry for it."""
        slot = self.find(key)
        if slot >= 0 and self.available(self.host[slot], slot):
            h = self.host[slot]
            if self.state[slot] != BOUND:  # a bound client asking again keeps its lease
                self._set(slot, key, macb, h, OFFERED, now + hold)
            return h
        if slot < 0:
            slot = self.free_slot()
            if slot < 0:
                return -1
        h = want if want >= 0 and self.available(want, slot) else self.new_host(slot)
        if h < 0:
            return -1
        self._set(slot, key, macb, h, OFFERED, now + hold)
        return h

    def bind(self, key, macb, h, now):
        """Lease h to the client: 1 a new binding, 0 a renewal, -1 not possible."""
        slot = self.find(key)
        if slot < 0:
            slot = self.free_slot()
            if slot < 0:
                return -1
        if not self.available(h, slot):
            return -1
        renewal = self.state[slot] == BOUND and self.host[slot] == h
        self._set(slot, key, macb, h, BOUND, now + self.lease_s)
        return 0 if renewal else 1

    def end(self, key, h, now, states, new_state, hold=0):
        """The client's entry for h, if in one of states, goes to new_state (FREE: from
        now; DECLINED: for hold seconds, forgetting the client). True if it did."""
        slot = self.find(key)
        if slot < 0 or self.host[slot] != h or self.state[slot] not in states:
            return False
        self.state[slot] = new_state
        self.exp[slot] = now + hold
        if new_state == DECLINED:
            self.key[slot * KEY_LEN] = 0
        return True

    def drop_offer(self, key, now):
        slot = self.find(key)
        if slot >= 0 and self.state[slot] == OFFERED:
            self.state[slot] = FREE
            self.exp[slot] = now

    def bind_static(self, s, now):
        self.s_exp[s] = now + self.lease_s

    def unbind_static(self, s):
        self.s_exp[s] = 0

    # ---- for people, and for the next boot

    def leases(self, now):
        out = []
        for i in range(self.cap):
            st = self.state[i]
            if st >= OFFERED and self.exp[i] - now > 0:  # not yet expired by tick()
                out.append({"mac": mac_str(self.mac[i * 6:i * 6 + 6]),
                            "addr": self.addr_str(self.host[i]),
                            "remaining": max(0, self.exp[i] - now),
                            "static": False, "state": STATE_NAMES[st]})
        for s in range(self.ns):
            e = self.s_exp[s]
            if e and e - now <= 0:
                e = 0
            out.append({"mac": mac_str(self.s_mac[s * 6:s * 6 + 6]),
                        "addr": self.addr_str(self.s_host[s]),
                        "remaining": max(0, e - now) if e else 0,
                        "static": True, "state": "bound" if e else "reserved"})
        return out

    def dump(self, now):
        """The bound leases, with the time they have left (a clock does not survive a
        reboot, so absolute times would mean nothing to the next one)."""
        out = []
        for i in range(self.cap):
            if self.state[i] == BOUND:
                out.append({"key": hexlify(self.key[i * KEY_LEN:(i + 1) * KEY_LEN]).decode(),
                            "mac": mac_str(self.mac[i * 6:i * 6 + 6]),
                            "addr": self.addr_str(self.host[i]),
                            "remaining": self.exp[i] - now})
        return {"version": 1, "leases": out}

    def restore(self, data, now):
        """Bind what dump() gave, re-based on this clock; anything odd, out of the pool
        or clashing (the config may have changed) is left out. Returns the count."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return 0
        items = data.get("leases")
        if not isinstance(items, list):
            return 0
        n = 0
        for item in items:
            if n == self.cap:
                break
            try:
                key = unhexlify(item["key"])
                macb = mac(item["mac"])
                h = self.host_at(ip_bytes(ip(item["addr"])), 0)
                rem = item["remaining"]
            except Exception:
                continue
            if (len(key) != KEY_LEN or key[0] == 0 or not usable_mac(macb)
                    or type(rem) is not int or rem <= 0 or h < 0
                    or not self.available(h, -1) or self.find(key) >= 0):
                continue
            self._set(self.free_slot(), key, macb, h, BOUND, now + min(rem, self.lease_s))
            n += 1
        return n


class LeaseFile:
    """The default store: JSON in a file, written atomically (manage/store.py), so a
    power cut leaves the old leases or the new ones. A missing, unreadable or
    half-written file loads as None: no leases."""

    def __init__(self, path):
        self.path = path

    def load(self):
        return load_json(self.path)[0]

    def save(self, data):
        save_json(self.path, data)
