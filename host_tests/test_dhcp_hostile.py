"""The LAN's DHCP server (firmware/services/dhcp.py) against a hostile LAN, on CPython with
a fake clock (services/README.md says the rules):

- a flood of DISCOVERs from random MACs never keeps a new client from a lease: offers
  cost nothing to hold;
- random MACs completing DORA fill the pool, and a new client is served as soon as a
  binding is stale (its client silent for 5/8 of the lease), never before;
- DECLINE rounds from one MAC hold a bounded number of addresses and one table entry;
- the lease file is written at most once per SAVE_S, and only for bindings;
- the RFCs' silent drops (a bad UDP checksum, replies that would reach no LAN host,
  messages for another server) are counted by reason, also through the router;
- the table never grows: bytes per entry measured on the unix port.

The same rules on MicroPython (unix port, 32-bit WASI) are upy/dhcp_cases.py's.
"""
import json
import math
import random

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.packet import raw

import dhcp_cases
from dhcp_cases import LAN, MASK, MAC1, MAC2, MemStore, message
from forward.router import Router
from manage import config
from memlink import MemoryLink
from nat.checksum import sum16
from runtimes import run_unix
from services import dhcp
from services.dhcp_declines import DECLINE_PER_CLIENT
from services.dhcp_msg import DECLINE

ADDR = dhcp_cases.pktlib.addr
SID = ((54, ADDR(LAN)),)


def server(cfg=None, store=None, t=1000):
    """The defaults (pool .100-.199) unless cfg says otherwise."""
    clock = dhcp_cases.Clock(t)
    return dhcp.DhcpServer(cfg or {}, LAN, MASK, store=store, clock=clock), clock


def send(srv, msg):
    """The reply's (type, yiaddr) or None."""
    r, _ = dhcp_cases.send(srv, msg)
    return None if r is None else (r["opts"][53][0], r["yiaddr"])


def discover(srv, mac, **kw):
    return send(srv, message(dhcp.DISCOVER, mac, **kw))


def select(srv, mac, addr):
    """DHCPREQUEST in SELECTING: our server id and the address offered."""
    return send(srv, message(dhcp.REQUEST, mac, options=SID + ((50, ADDR(addr)),)))


def dora(srv, mac):
    """The address bound, or None."""
    r = discover(srv, mac)
    if r is None:
        return None
    r = select(srv, mac, r[1])
    return r[1] if r[0] == dhcp.ACK else None


def random_macs(rng, n):
    return [bytes([2] + [rng.randrange(256) for _ in range(5)]) for _ in range(n)]


def seeded():
    """A Random with a new seed each run (the tests hold for any), and the seed."""
    seed = random.randrange(2 ** 32)
    return random.Random(seed), "seed %d" % seed


def states(srv):
    out = {}
    for x in srv.leases():
        out[x["state"]] = out.get(x["state"], 0) + 1
    return out


# ---- the table is the pool


def test_the_table_is_the_pool():
    srv, _ = server()
    assert srv.pool.cap == 100 and len(srv.pool.state) == 100
    srv, _ = server({"first": "192.168.4.100", "last": "192.168.4.120",
                     "static": [{"mac": "02:00:00:00:00:09", "addr": "192.168.4.110"}]})
    assert srv.pool.cap == 20  # the static address is not the table's
    srv, _ = server({"capacity": 16})
    assert srv.pool.cap == 16  # a smaller one, if asked for
    wide = dhcp.DhcpServer({"first": "10.0.0.2", "last": "10.255.255.254"}, "10.0.0.1",
                           "255.0.0.0", clock=dhcp_cases.Clock())
    assert wide.pool.cap == 254  # CAPACITY_MAX


# ---- floods


def test_a_discover_flood_never_keeps_a_client_from_a_lease():
    rng, seed = seeded()
    srv, clock = server()
    flood = random_macs(rng, 3000)
    client = b"\x02\x00\x00\x00\x01\x01"
    # A client in the middle of the flood: its REQUEST comes after 150 more DISCOVERs,
    # which took its offer back for someone else; the first to REQUEST gets it.
    for i, mac in enumerate(flood):
        if i % 300 == 0:
            clock.t += 1  # 3000 in 10 s
            srv.tick()
        assert discover(srv, mac) is not None, (i, seed)  # never "no address"
        if i == 1500:
            offered = discover(srv, client)[1]
        if i == 1650:
            assert srv.pool.owner(srv.pool.host_at(ADDR(offered), 0)) >= 0
            assert select(srv, client, offered) == (dhcp.ACK, offered), seed
    c = srv.counters()
    assert c["no_address"] == 0 and c["offers"] == 3001 and c["taken_offers"] > 2800, c
    assert states(srv) == {"offered": 99, "bound": 1}, seed
    # After the flood a new client gets a lease at once, and the first keeps its own.
    assert dora(srv, MAC2) is not None
    assert send(srv, message(dhcp.REQUEST, client, ciaddr=offered)) == (dhcp.ACK, offered)
    assert len(srv.pool.state) == 100 and c["errors"] == 0


def test_random_macs_completing_dora_fill_the_pool_until_bindings_go_stale():
    rng, seed = seeded()
    srv, clock = server({"lease_s": 3600})
    macs = random_macs(rng, 300)
    got = [dora(srv, mac) for mac in macs]
    bound = [a for a in got if a]
    assert len(bound) == 100 == len(set(bound)), seed  # the whole pool, then nothing
    assert srv.counters()["no_address"] == 200
    # Until a binding is stale, a new client is not answered, its REQUEST NAKed.
    clock.t += 3600 * 5 // 8 - 1
    assert discover(srv, MAC1) is None
    assert select(srv, MAC1, "192.168.4.150")[0] == dhcp.NAK
    clock.t += 1  # 2250 s: every flood binding is stale (none renewed at T1)
    a = dora(srv, MAC1)
    assert a in bound and srv.counters()["taken_stale"] == 1, seed
    # The flood client whose binding it was is refused when it comes back.
    gone = macs[got.index(a)]
    assert send(srv, message(dhcp.REQUEST, gone, ciaddr=a))[0] == dhcp.NAK
    assert dora(srv, MAC2) in bound and srv.counters()["taken_stale"] == 2


def test_clients_that_renew_are_never_taken():
    # What happens when the pool has no room by the rules: every binding's client renews
    # at T1, so none is stale; a new client gets no answer (counted in no_address) and
    # its REQUEST a NAK, for as long as that lasts.
    srv, clock = server({"first": "192.168.4.100", "last": "192.168.4.103", "lease_s": 600})
    macs = [bytes((2, 0, 0, 0, 2, i)) for i in range(4)]
    addrs = [dora(srv, m) for m in macs]
    for _ in range(10):
        clock.t += 300  # T1
        for m, a in zip(macs, addrs):
            assert send(srv, message(dhcp.REQUEST, m, ciaddr=a)) == (dhcp.ACK, a)
        assert discover(srv, MAC1) is None
    c = srv.counters()
    assert c["no_address"] == 10 and c["taken_stale"] == 0


def test_decline_rounds_hold_a_bounded_number_of_addresses():
    store = MemStore()
    srv, clock = server(store=store)
    mac = b"\x02\x00\x00\x00\x03\x01"
    declined = []
    for _ in range(30):
        clock.t += 1
        _, a = discover(srv, mac)
        assert send(srv, message(DECLINE, mac, options=SID + ((50, ADDR(a)),))) is None
        declined.append(a)
    c = srv.counters()
    assert c["declines"] == 30 and store.saves == 0  # offers declined: nothing to write
    rows = srv.leases()
    held = [x for x in rows if x["state"] == "declined"]
    assert len(held) == DECLINE_PER_CLIENT
    assert {x["addr"] for x in held} == set(declined[-DECLINE_PER_CLIENT:])
    assert {x["mac"] for x in held} == {"02:00:00:00:03:01"}  # it stays recognised
    assert len(declined) > len(set(declined))  # its own oldest went back to the pool
    assert sum(1 for i in range(srv.pool.cap) if srv.pool.state[i]) == 1  # one entry
    assert dora(srv, MAC1) not in (None, *declined[-DECLINE_PER_CLIENT:])  # a fresh MAC
    # Many MACs: at most nd addresses set aside in all, the oldest go back first.
    for i in range(20):
        m = bytes((2, 0, 0, 0, 4, i))
        _, a = discover(srv, m)
        send(srv, message(DECLINE, m, options=SID + ((50, ADDR(a)),)))
    assert states(srv)["declined"] == srv.pool.declines.n == 8


def test_a_decline_must_name_the_clients_own_address():
    srv, _ = server()
    a = dora(srv, MAC1)
    before = srv.counters()["ignored"]
    send(srv, message(DECLINE, MAC2, options=SID + ((50, ADDR(a)),)))
    assert srv.counters()["ignored"] == before + 1 and states(srv) == {"bound": 1}


# ---- flash writes


def churn(srv, clock, seconds, rng, step=0.25):
    """Random MACs doing DORA then RELEASE, a fake-clock second every 1/step cycles,
    with the router's once-a-second tick(). Returns the cycles done."""
    cycles, t_end, t = 0, clock.t + seconds, clock.t
    while t < t_end:
        mac = random_macs(rng, 1)[0]
        a = dora(srv, mac)
        assert a is not None
        send(srv, message(dhcp.RELEASE, mac, ciaddr=a, options=SID))
        cycles += 1
        t += step
        if int(t) != clock.t:
            clock.t = int(t)
            srv.tick()
    return cycles


@pytest.mark.parametrize("seconds", [20, 60, 600])
def test_churn_writes_the_leases_at_most_once_per_save_interval(seconds):
    rng, _ = seeded()
    store = MemStore()
    srv, clock = server(store=store)
    assert dora(srv, MAC1) is not None  # a binding that stays
    assert store.saves == 1  # the first change after a quiet time: at once
    cycles = churn(srv, clock, seconds, rng)
    assert cycles == seconds * 4
    bound = 1 + math.ceil(seconds / dhcp.SAVE_S)
    assert store.saves <= bound, (store.saves, bound)
    assert srv.counters()["saves"] == store.saves
    srv.flush()  # a planned restart: what the file must hold, now
    assert [x["mac"] for x in store.data["leases"]] == ["02:00:00:00:00:01"]
    n = store.saves
    srv.flush()
    clock.t += 10 * dhcp.SAVE_S
    srv.tick()
    assert store.saves == n  # nothing changed: nothing written


def test_renewals_offers_and_expiry_are_not_written():
    store = MemStore()
    srv, clock = server({"lease_s": 600}, store=store)
    a = dora(srv, MAC1)
    for _ in range(20):
        clock.t += 300
        srv.tick()
        send(srv, message(dhcp.REQUEST, MAC1, ciaddr=a))
        discover(srv, MAC2)
    clock.t += 601
    srv.tick()
    assert store.saves == 1


def test_a_failing_store_is_retried_after_the_interval_not_every_tick():
    class Flaky(MemStore):
        fail = True

        def save(self, data):
            if self.fail:
                raise OSError("flash busy")
            super().save(data)

    store = Flaky()
    srv, clock = server(store=store)
    dora(srv, MAC1)
    for _ in range(dhcp.SAVE_S - 1):
        clock.t += 1
        srv.tick()
    assert srv.counters()["save_errors"] == 1 and "flash busy" in srv.last_error
    store.fail = False
    clock.t += 1
    srv.tick()
    assert store.saves == 1 and store.data["leases"][0]["mac"] == "02:00:00:00:00:01"


def test_batched_leases_survive_a_restart(tmp_path):
    path = str(tmp_path / "leases.json")
    srv, clock = server(store=dhcp.LeaseFile(path))
    a1 = dora(srv, MAC1)  # written at once
    clock.t += 5
    a2 = dora(srv, MAC2)  # waits for the batch
    assert [x["addr"] for x in json.loads(open(path).read())["leases"]] == [a1]
    srv.flush()           # the runner does this before a planned restart
    srv2, _ = server(store=dhcp.LeaseFile(path), t=7)
    assert sorted(x["addr"] for x in srv2.leases()) == [a1, a2]


def test_a_planned_restart_and_save_write_the_batched_leases(tmp_path):
    from manage import api
    from manage.runner import runner
    from test_manage import Board

    board = Board(tmp_path)
    config.save(board.CONFIG_PATH, config.defaults())
    runner.start(board)

    def bound():
        with open(board.LEASES_PATH) as f:
            return sorted(x["mac"][-2:] for x in json.load(f)["leases"])

    try:
        r = runner.router
        r.call(dora, r.dhcp, MAC1)  # on the router's thread, as its slow path would
        r.call(dora, r.dhcp, MAC2)  # within SAVE_S: waits for the batch
        assert bound() == ["01"]
        runner.restart(r.cfg)       # a planned restart: the batch is written first
        assert bound() == ["01", "02"]
        r = runner.router
        assert sorted(x["mac"][-2:] for x in r.call(r.dhcp.leases)) == ["01", "02"]
        r.call(send, r.dhcp, message(dhcp.RELEASE, MAC2, ciaddr="192.168.4.101"))
        api.save()
        assert bound() == ["01"]
    finally:
        runner.stop()  # through the owner: its thread ends before the next test's
        api._edited = None


# ---- the RFCs' silent drops


# (name, message, the counter it goes to): replies that would reach no LAN host (RFC
# 2131 4.1), messages for another server (4.3.2, 4.3.3, 4.3.4). test_vboard_dhcp.py sends
# them through the virtual board.
RFC_DROPS = [
    ("inform-network", message(dhcp.INFORM, ciaddr="192.168.4.0"), "dropped_address"),
    ("inform-broadcast", message(dhcp.INFORM, ciaddr="192.168.4.255"), "dropped_address"),
    ("inform-router", message(dhcp.INFORM, ciaddr=LAN), "dropped_address"),
    ("inform-none", message(dhcp.INFORM), "dropped_address"),
    ("inform-off-lan", message(dhcp.INFORM, ciaddr="10.0.0.2"), "dropped_address"),
    ("discover-ciaddr-router", message(dhcp.DISCOVER, ciaddr=LAN), "dropped_address"),
    ("discover-ciaddr-broadcast", message(dhcp.DISCOVER, ciaddr="192.168.4.255"),
     "dropped_address"),
    ("relay-router", message(dhcp.DISCOVER, giaddr=LAN), "dropped_address"),
    ("relay-network", message(dhcp.DISCOVER, giaddr="192.168.4.0"), "dropped_address"),
    ("relay-broadcast", message(dhcp.REQUEST, giaddr="192.168.4.255",
                                options=((50, ADDR("192.168.4.100")),)), "dropped_address"),
    ("request-other-server", message(dhcp.REQUEST, options=(
        (54, ADDR("192.168.4.254")), (50, ADDR("192.168.4.100")))), "dropped_other_server"),
    ("decline-other-server", message(DECLINE, options=(
        (54, ADDR("192.168.4.254")), (50, ADDR("192.168.4.100")))), "dropped_other_server"),
    ("release-other-server", message(dhcp.RELEASE, ciaddr="192.168.4.100", options=(
        (54, ADDR("10.0.0.1")),)), "dropped_other_server"),
]


@pytest.mark.parametrize("name,msg,counter", RFC_DROPS)
def test_rfc_drops_are_silent_and_counted(name, msg, counter):
    srv, _ = server()
    a = dora(srv, MAC1)  # .100, which the DECLINE and RELEASE name
    assert a == "192.168.4.100"
    before = srv.counters()
    assert send(srv, msg) is None, name
    after = srv.counters()
    changed = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert changed == {"received": 1, counter: 1}, (name, changed)
    assert states(srv) == {"bound": 1}  # MAC1's lease stands


def test_a_bad_checksum_is_dropped_before_anything_else():
    srv, _ = server()
    msg = message(dhcp.DISCOVER)
    assert srv.handle(msg, len(msg), bytearray(576), False) == 0
    assert srv.reply_dst is None and srv.leases() == []
    c = srv.counters()
    assert (c["dropped_checksum"], c["offers"], c["received"]) == (1, 0, 1)


# ---- through the router: the UDP checksum and length


def router_with_dhcp():
    cfg = config.validate(config.defaults(), strict=True)[0]
    srv, _ = server()
    lan, wan = MemoryLink("lan", 1500, 8), MemoryLink("wan", 1500, 8)
    return Router(cfg, lan, wan, dhcp=srv), srv, lan


def discover_datagram(chksum=None, trailer=b""):
    """A DISCOVER from 0.0.0.0 (no END option); trailer: bytes the IP length covers past
    the UDP datagram, which its length leaves out (an option running past the end, were
    they read)."""
    msg = raw(BOOTP(chaddr=b"\x02\x00\x00\x00\x05\x01" + bytes(10), xid=0x77)
              / DHCP(options=[("message-type", "discover")]))
    data = bytearray(raw(IP(src="0.0.0.0", dst="255.255.255.255")
                         / UDP(sport=68, dport=67, chksum=chksum) / msg))
    if trailer:
        data += trailer
        data[2:4] = len(data).to_bytes(2, "big")
        data[10:12] = bytes(2)
        data[10:12] = (sum16(data, 0, 20) ^ 0xFFFF).to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("chksum,trailer,answered,counter", [
    (None, b"", True, None),              # right
    (0, b"", True, None),                 # none sent (RFC 768)
    (0x1234, b"", False, "dropped_checksum"),
    (None, b"\x0c\xff\x00", True, None),  # the UDP length says where DHCP ends
])
def test_the_router_checks_the_udp_checksum_for_the_server(chksum, trailer, answered, counter):
    r, srv, lan = router_with_dhcp()
    pkt = discover_datagram(chksum, trailer)
    lan.inject(pkt)
    r.poll()
    out = lan.take_all()
    assert len(out) == (1 if answered else 0)
    if answered:
        assert BOOTP(raw(IP(out[0])[UDP].payload)).yiaddr == "192.168.4.100"
    c = srv.counters()
    assert c["received"] == 1 and c["errors"] == 0 and c["dropped_malformed"] == 0
    if counter:
        assert c[counter] == 1


# ---- memory


def test_bytes_per_entry_on_the_unix_port():
    """The server's fixed memory by pool size, measured on the unix port (64-bit: an
    array's or bytearray's header is larger than on the ESP32, its items the same)."""
    code = (
        "import gc\nfrom services import dhcp\n"
        "for last in (109, 199, 254):\n"
        "    cfg = {'first': '192.168.4.100', 'last': '192.168.4.%d' % last}\n"
        "    if last == 254:\n"
        "        cfg['first'] = '192.168.4.2'\n"
        "    gc.collect()\n"
        "    before = gc.mem_alloc()\n"
        "    p = dhcp.Pool(dhcp.validate(cfg, '192.168.4.1', '255.255.255.0')[0],"
        " '192.168.4.1', '255.255.255.0')\n"
        "    gc.collect()\n"
        "    print('POOL', p.cap, gc.mem_alloc() - before)\n"
        "    del p\n")
    rows = [line.split()[1:] for line in run_unix(code).splitlines() if line.startswith("POOL")]
    sizes = {int(n): int(b) for n, b in rows}
    assert sorted(sizes) == [10, 100, 253]
    per_entry = (sizes[253] - sizes[10]) / 243
    assert 35 <= per_entry <= 40, sizes  # 37 in the arrays, rounded to heap blocks
    print("bytes by table size:", sizes, "per entry: %.1f" % per_entry)
