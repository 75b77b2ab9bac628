# What a reboot must remember of the DHCP server's table (services/dhcp_leases.py): its
# bindings, each with the time it has left (dump, restore), and LeaseFile, the store a
# board keeps them in. services/dhcp.py decides when they are written.
from binascii import hexlify, unhexlify

from manage.store import load_json, save_json
from .dhcp_config import ip, ip_bytes, mac, mac_str, usable_mac
from .dhcp_leases import BOUND, KEY_LEN, key_hash


def dump(pool, now):
    """The bound leases, with the time they have left (a clock does not survive a reboot,
    so absolute times would mean nothing to the next one)."""
    out = []
    for i in range(pool.cap):
        if pool.state[i] == BOUND:
            out.append({"key": hexlify(pool.key[i * KEY_LEN:(i + 1) * KEY_LEN]).decode(),
                        "mac": mac_str(pool.mac[i * 6:i * 6 + 6]),
                        "addr": pool.addr_str(pool.host[i]),
                        "remaining": pool.exp[i] - now})
    return {"version": 1, "leases": out}


def restore(pool, data, now):
    """Bind what dump() gave, re-based on this clock (heard from now); anything odd, out of
    the pool or clashing (the config may have changed) is left out. Returns the count."""
    if not isinstance(data, dict) or data.get("version") != 1:
        return 0
    items = data.get("leases")
    if not isinstance(items, list):
        return 0
    n = 0
    for item in items:
        if n == pool.cap:
            break
        try:
            key = unhexlify(item["key"])
            macb = mac(item["mac"])
            h = pool.host_at(ip_bytes(ip(item["addr"])), 0)
            rem = item["remaining"]
        except Exception:
            continue
        if (len(key) != KEY_LEN or key[0] == 0 or not usable_mac(macb)
                or type(rem) is not int or rem <= 0 or h < 0
                or not pool.usable(h) or pool.owner(h) >= 0
                or pool.find(key, key_hash(key)) >= 0):
            continue
        pool.set_entry(pool.victim(now, -1, False), key, key_hash(key), macb, h, BOUND,
                       now + min(rem, pool.lease_s), now)
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
