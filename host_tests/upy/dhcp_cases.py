# The DHCP server (firmware/services/dhcp.py) on every runtime: CPython (host_tests/test_dhcp.py
# imports this), the MicroPython unix port and the 32-bit WASI build. Two parts:
# - CASES: plain asserts; run_all() prints FAIL details and
#   `DHCP_CASES passed=<n> failed=<n> pure=0`;
# - transcript(): a fixed exchange printing every reply as `REPLY <step> <hex> <dst>`,
#   which the pytest side parses with scapy and compares across the runtimes.
# No scapy on MicroPython: messages are built by hand here (test_dhcp.py checks this
# builder against scapy's). No gc.collect() anywhere (the WASI build must not).
from services import dhcp
import pktlib

LAN, MASK = "192.168.4.1", "255.255.255.0"
MAC1 = b"\x02\x00\x00\x00\x00\x01"
MAC2 = b"\x02\x00\x00\x00\x00\x02"
MAC3 = b"\x02\x00\x00\x00\x00\x03"
PURE = [False]  # pktlib.run_cases' flag; the server has one path


class Clock:
    def __init__(self, t=100):
        self.t = t

    def __call__(self):
        return self.t


class MemStore:
    """A store that keeps what a file would: a JSON round trip."""

    def __init__(self, data=None):
        self.data, self.saves = data, 0

    def load(self):
        return self.data

    def save(self, data):
        import json
        self.data = json.loads(json.dumps(data))
        self.saves += 1


def message(mtype, mac=MAC1, xid=0x01020304, ciaddr=None, giaddr=None, flags=0,
            options=()):
    """A client's BOOTREQUEST with option 53 = mtype (None: none), the (code, bytes)
    options, then END."""
    b = bytearray(240)
    b[0], b[1], b[2] = 1, 1, 6
    for k in range(4):
        b[4 + k] = (xid >> (24 - 8 * k)) & 0xFF
    b[10], b[11] = flags >> 8, flags & 0xFF
    if ciaddr:
        b[12:16] = pktlib.addr(ciaddr)
    if giaddr:
        b[24:28] = pktlib.addr(giaddr)
    b[28:34] = mac
    b[236:240] = b"\x63\x82\x53\x63"
    if mtype is not None:
        b += bytes((53, 1, mtype))
    for code, data in options:
        b += bytes((code, len(data))) + data
    b.append(255)
    return b


def parse(out, n):
    """The fields the cases check, from a reply the server wrote."""
    r = {"op": out[0], "xid": bytes(out[4:8]), "flags": out[10] << 8 | out[11],
         "ciaddr": ip(out, 12), "yiaddr": ip(out, 16), "giaddr": ip(out, 24),
         "chaddr": bytes(out[28:34]), "cookie": bytes(out[236:240]), "opts": {}}
    i = 240
    while i < n and out[i] != 255:
        if out[i] == 0:
            i += 1
            continue
        r["opts"][out[i]] = bytes(out[i + 2:i + 2 + out[i + 1]])
        i += 2 + out[i + 1]
    assert i < n, "no END option"
    return r


def ip(b, off):
    return "%d.%d.%d.%d" % (b[off], b[off + 1], b[off + 2], b[off + 3])


def server(cfg=None, store=None, t=100):
    clock = Clock(t)
    c = {"first": "192.168.4.100", "last": "192.168.4.109"}
    c.update(cfg or {})
    dns = c.pop("dns", ())  # the configuration's top-level "dns"
    return dhcp.DhcpServer(c, LAN, MASK, dns=dns, store=store, clock=clock), clock


def send(srv, msg, out=None):
    """(parsed reply or None, reply_dst) after srv.handle(); out stays its size."""
    out = bytearray(576) if out is None else out
    size = len(out)
    n = srv.handle(msg, len(msg), out)
    assert len(out) == size
    assert srv.counters()["errors"] == 0, srv.last_error
    if not n:
        assert srv.reply_dst is None
        return None, None
    assert 300 <= n <= 548, n
    return parse(out, n), srv.reply_dst


def dora(srv, mac=MAC1, options=()):
    r, _ = send(srv, message(dhcp.DISCOVER, mac, options=options))
    assert r["opts"][53] == bytes((dhcp.OFFER,)), r
    addr = r["yiaddr"]
    r, _ = send(srv, message(dhcp.REQUEST, mac, options=((54, pktlib.addr(LAN)),
                                                        (50, pktlib.addr(addr))) + options))
    assert r["opts"][53] == bytes((dhcp.ACK,)) and r["yiaddr"] == addr, r
    return addr


# ---- cases


def case_dora():
    srv, _ = server()
    r, dst = send(srv, message(dhcp.DISCOVER))
    assert (r["op"], r["yiaddr"], r["xid"], r["chaddr"]) == (2, "192.168.4.100",
                                                             b"\x01\x02\x03\x04", MAC1)
    assert r["cookie"] == b"\x63\x82\x53\x63"
    o = r["opts"]
    assert o[53] == b"\x02" and o[54] == b"\xc0\xa8\x04\x01"
    assert o[51] == b"\x00\x00\x0e\x10" and o[58] == b"\x00\x00\x07\x08"
    assert o[59] == b"\x00\x00\x0c\x4e" and o[1] == b"\xff\xff\xff\x00"
    assert o[3] == b"\xc0\xa8\x04\x01" and o[6] == b"\xc0\xa8\x04\x01"
    assert dst == ("192.168.4.100", 68, False, MAC1)
    assert dora(srv) == "192.168.4.100"
    leases = srv.leases()
    assert len(leases) == 1 and leases[0]["addr"] == "192.168.4.100"
    assert leases[0]["mac"] == "02:00:00:00:00:01" and leases[0]["remaining"] == 3600
    c = srv.counters()
    assert (c["offers"], c["acks"], c["received"]) == (2, 1, 3), c


def case_renew_and_rebind():
    store = MemStore()
    srv, clock = server(store=store)
    addr = dora(srv)
    assert store.saves == 1
    clock.t += 1900  # past T1
    r, dst = send(srv, message(dhcp.REQUEST, ciaddr=addr))
    assert r["opts"][53] == b"\x05" and r["ciaddr"] == addr and r["yiaddr"] == addr
    assert dst == (addr, 68, False, None)
    assert srv.leases()[0]["remaining"] == 3600
    clock.t += 3200  # past T2 (from the renewal): rebinding is broadcast
    r, dst = send(srv, message(dhcp.REQUEST, ciaddr=addr, flags=0x8000))
    assert r["opts"][53] == b"\x05" and dst == (addr, 68, False, None)
    assert store.saves == 1  # renewals are not saved (flash wear)


def case_release_and_rediscover():
    store = MemStore()
    srv, clock = server(store=store)
    addr = dora(srv)
    assert send(srv, message(dhcp.RELEASE, ciaddr=addr,
                             options=((54, pktlib.addr(LAN)),)))[0] is None
    assert srv.leases() == [] and srv.counters()["releases"] == 1 and store.saves == 1
    clock.t += dhcp.SAVE_S  # the release is written with the next batch
    srv.tick()
    assert store.saves == 2 and store.data["leases"] == []
    assert dora(srv, MAC2) != addr  # a released address is remembered for its client
    assert dora(srv) == addr


def case_init_reboot():
    srv, _ = server()
    addr = dora(srv)
    r, dst = send(srv, message(dhcp.REQUEST, options=((50, pktlib.addr(addr)),)))
    assert r["opts"][53] == b"\x05" and dst == (addr, 68, False, MAC1)
    r, dst = send(srv, message(dhcp.REQUEST, options=((50, pktlib.addr("192.168.4.105")),)))
    assert r["opts"][53] == b"\x06" and r["yiaddr"] == "0.0.0.0"
    assert dst == ("255.255.255.255", 68, True, None)
    assert 51 not in r["opts"] and 1 not in r["opts"]
    r, _ = send(srv, message(dhcp.REQUEST, MAC2, options=((50, pktlib.addr(addr)),)))
    assert r is None  # no record of that client: silent (RFC 2131 4.3.2)


def case_malformed():
    srv, _ = server()
    good = message(dhcp.DISCOVER)
    bad = [good[:239], bytearray(good), bytearray(good), bytearray(good),
           bytearray(good), bytearray(good), message(None), message(dhcp.DISCOVER, b"\xff" * 6),
           message(dhcp.DISCOVER, bytes(6)), good[:-1] + b"\x0c\x10ab"]
    bad[1][0] = 3
    bad[2][1] = 6
    bad[3][2] = 16
    bad[4][236] = 0
    bad[5][241] = 2  # option 53 of length 2
    for i, msg in enumerate(bad):
        before = srv.counters()["dropped_malformed"]
        assert srv.handle(msg, len(msg), bytearray(576)) == 0, i
        assert srv.counters()["dropped_malformed"] == before + 1, i
    assert srv.handle(good, len(good) + 1, bytearray(576)) == 0  # n past the buffer
    assert srv.handle(message(9), 244, bytearray(576)) == 0
    c = srv.counters()
    assert c["dropped_unknown"] == 1 and c["errors"] == 0 and c["offers"] == 0, c
    assert c["dropped_malformed"] == len(bad) + 1, c
    assert send(srv, good)[0]["yiaddr"] == "192.168.4.100"  # still serving


def case_exhaustion():
    srv, _ = server({"last": "192.168.4.101"})
    dora(srv, MAC1)
    dora(srv, MAC2)
    assert send(srv, message(dhcp.DISCOVER, MAC3))[0] is None
    assert srv.counters()["no_address"] == 1
    r, _ = send(srv, message(dhcp.REQUEST, MAC3, options=((54, pktlib.addr(LAN)),
                                                         (50, pktlib.addr("192.168.4.100")))))
    assert r["opts"][53] == b"\x06"


def case_static():
    srv, _ = server({"static": [{"mac": "02:00:00:00:00:03", "addr": "192.168.4.100"}]})
    assert dora(srv, MAC1) == "192.168.4.101"  # the static address is kept from the pool
    assert dora(srv, MAC3, ((50, pktlib.addr("192.168.4.105")),)) == "192.168.4.100"
    st = [x for x in srv.leases() if x["static"]]
    assert st == [{"mac": "02:00:00:00:00:03", "addr": "192.168.4.100",
                   "remaining": 3600, "static": True, "state": "bound"}], st


def case_persist():
    store = MemStore()
    srv, clock = server(store=store, t=5000)
    a1 = dora(srv, MAC1)
    clock.t += 600
    a2 = dora(srv, MAC2)  # saves both: what each has left
    clock.t += 100
    srv2, _ = server(store=store, t=7)  # a new boot: a new clock
    got = sorted((x["addr"], x["remaining"]) for x in srv2.leases())
    assert got == [(a1, 3000), (a2, 3600)], got
    r, _ = send(srv2, message(dhcp.REQUEST, MAC2, ciaddr=a2))
    assert r["opts"][53] == b"\x05" and store.saves == 2
    assert dora(srv2, MAC3) not in (a1, a2)


def case_client_ids():
    srv, _ = server()
    duid = b"\xff" + bytes(range(40))  # long: the hash path (heap ints on 32 bits)
    other = duid[:20] + b"\x99" + duid[21:]
    a = dora(srv, MAC1, ((61, duid),))
    b = dora(srv, MAC1, ((61, other),))
    c = dora(srv, MAC2, ((61, b"\x01" + MAC1),))
    assert len({a, b, c}) == 3
    r, _ = send(srv, message(dhcp.DISCOVER, MAC3, options=((61, duid),)))
    assert r["yiaddr"] == a and r["opts"][61] == duid  # echoed (RFC 6842)


def case_wide_subnets():
    for lan, mask, first, last, want in (
            ("10.0.0.1", "255.0.0.0", "10.0.0.2", "10.255.255.254", "10.200.3.4"),
            ("100.0.0.1", "128.0.0.0", "64.0.0.1", "126.255.255.254", "120.1.2.3")):
        srv = dhcp.DhcpServer({"first": first, "last": last}, lan, mask, clock=Clock())
        assert srv.problems == [], srv.problems
        r, _ = send(srv, message(dhcp.DISCOVER, options=((50, pktlib.addr(want)),)))
        assert r["yiaddr"] == want and r["opts"][1] == pktlib.addr(mask), r
        r, dst = send(srv, message(dhcp.REQUEST, ciaddr=want))
        assert r["opts"][53] == b"\x05" and dst[0] == want
        assert send(srv, message(dhcp.DISCOVER, MAC2))[0]["yiaddr"] == first
        assert [x["addr"] for x in srv.leases()] == [want, first]


# ---- a hostile LAN (services/README.md: the rules; test_dhcp_hostile.py: more of them)

SID = ((54, pktlib.addr(LAN)),)


def flood_mac(i):
    return bytes((2, 0, 0, 9, i >> 8, i & 0xFF))


def case_flood_takes_offers_back():
    srv, clock = server()  # 10 addresses, a table of 10
    assert srv.pool.cap == 10
    for i in range(300):
        if i % 30 == 0:
            clock.t += 1
        assert send(srv, message(dhcp.DISCOVER, flood_mac(i)))[0] is not None, i
    c = srv.counters()
    assert c["no_address"] == 0 and c["taken_offers"] == 290, c
    addr = dora(srv, MAC1)
    r, _ = send(srv, message(dhcp.REQUEST, MAC1, ciaddr=addr))
    assert r["opts"][53] == b"\x05" and len(srv.pool.state) == 10


def case_stale_bindings_only():
    srv, clock = server({"last": "192.168.4.101", "lease_s": 600})
    dora(srv, MAC1)
    clock.t += 100
    b = dora(srv, MAC2)
    clock.t += 374  # MAC1 idle 474 s (stale after 375), MAC2 374 s
    assert dora(srv, MAC3) == "192.168.4.100"  # the stale one
    assert send(srv, message(dhcp.DISCOVER, flood_mac(1)))[0] is None  # MAC2's is not
    clock.t += 1
    r, _ = send(srv, message(dhcp.DISCOVER, flood_mac(1)))
    assert r["yiaddr"] == b and srv.counters()["taken_stale"] == 2


def case_decline_rounds_bounded():
    store = MemStore()
    srv, clock = server(store=store)
    for _ in range(12):
        clock.t += 1
        r, _ = send(srv, message(dhcp.DISCOVER, MAC1))
        send(srv, message(4, MAC1, options=SID + ((50, pktlib.addr(r["yiaddr"])),)))
    held = [x for x in srv.leases() if x["state"] == "declined"]
    assert len(held) == 2 and srv.counters()["declines"] == 12 and store.saves == 0
    assert len([i for i in range(srv.pool.cap) if srv.pool.state[i]]) == 1
    assert dora(srv, MAC2) not in [x["addr"] for x in held]


def case_writes_batched():
    store = MemStore()
    srv, clock = server(store=store)
    for i in range(200):  # 100 s of DORA + RELEASE
        if i % 2 == 0:
            clock.t += 1
            srv.tick()
        a = dora(srv, flood_mac(i))
        send(srv, message(dhcp.RELEASE, flood_mac(i), ciaddr=a, options=SID))
    assert store.saves == 2 and srv.counters()["saves"] == 2, store.saves  # at 0 and 60 s
    srv.flush()
    assert store.saves == 3 and store.data["leases"] == []
    srv.flush()
    assert store.saves == 3


def case_rfc_drops():
    srv, _ = server()
    msg = message(dhcp.DISCOVER)
    assert srv.handle(msg, len(msg), bytearray(576), False) == 0
    for m in (message(dhcp.INFORM, ciaddr=LAN), message(dhcp.INFORM, ciaddr="192.168.4.255"),
              message(dhcp.INFORM, ciaddr="192.168.4.0"), message(dhcp.DISCOVER, giaddr=LAN),
              message(dhcp.REQUEST, options=((54, pktlib.addr("192.168.4.9")),
                                             (50, pktlib.addr("192.168.4.100"))))):
        assert send(srv, m)[0] is None
    c = srv.counters()
    assert (c["dropped_checksum"], c["dropped_address"], c["dropped_other_server"]) == (1, 4, 1)
    assert c["offers"] == 0 and c["errors"] == 0


CASES = (case_dora, case_renew_and_rebind, case_release_and_rediscover, case_init_reboot,
         case_malformed, case_exhaustion, case_static, case_persist, case_client_ids,
         case_wide_subnets, case_flood_takes_offers_back, case_stale_bindings_only,
         case_decline_rounds_bounded, case_writes_batched, case_rfc_drops)


def run_all():
    return pktlib.run_cases(CASES, "DHCP_CASES", PURE)


# ---- the transcript


def transcript():
    """Replies of a fixed exchange, one line each: REPLY <step> <hex> <dst>."""
    from binascii import hexlify
    srv, clock = server({"static": [{"mac": "02:00:00:00:00:03", "addr": "192.168.4.50"}],
                         "dns": ["192.0.2.53", "192.0.2.54"]})
    cid = ((61, b"\x01" + MAC2), (55, bytes((6, 3, 1))))
    steps = (
        ("discover", message(dhcp.DISCOVER, flags=0x8000)),
        ("request", message(dhcp.REQUEST, options=((54, pktlib.addr(LAN)),
                                                   (50, pktlib.addr("192.168.4.100"))))),
        ("renew", message(dhcp.REQUEST, ciaddr="192.168.4.100")),
        ("discover-cid", message(dhcp.DISCOVER, MAC2, options=cid)),
        ("static", message(dhcp.DISCOVER, MAC3)),
        ("init-reboot-nak", message(dhcp.REQUEST, options=((50, pktlib.addr("192.168.4.7")),))),
        ("inform", message(dhcp.INFORM, ciaddr="192.168.4.20")),
        ("relay", message(dhcp.DISCOVER, MAC2, giaddr="192.168.4.2", options=cid)),
        ("release", message(dhcp.RELEASE, ciaddr="192.168.4.100")),
        ("truncated", message(dhcp.DISCOVER)[:239]),
    )
    out = bytearray(576)
    for name, msg in steps:
        clock.t += 10
        n = srv.handle(msg, len(msg), out)
        dst = srv.reply_dst
        if dst:
            dst = "%s:%d:%d:%s" % (dst[0], dst[1], dst[2], dst[3] and hexlify(dst[3]).decode())
        print("REPLY %s %s %s" % (name, hexlify(out[:n]).decode() if n else "-", dst))
    c = srv.counters()
    print("COUNTERS " + " ".join("%s=%d" % (k, c[k]) for k in dhcp.COUNTERS))
