"""Managing the running router (firmware/manage/api.py, plain data) and its REPL front
(firmware/nr.py), on CPython: the router's loop in its own thread on MemoryLinks, the
test in the REPL's place. The same over mpremote on the virtual board is in
test_vboard_manage.py; the loop and the REPL hammering each other on the unix port
(no GIL there) is test_loop_and_repl_share_nothing_on_the_unix_port below."""
import json
import threading
import time

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import raw

import nr
from manage import api, config
from manage.runner import runner
from memlink import MemoryLink
from runtimes import run_unix, unix_binary

LAN, WAN = "192.168.4.1", "198.51.100.2"
HOST1, HOST2 = "192.168.4.2", "192.168.4.3"
SERVER, CLIENT = "203.0.113.5", "203.0.113.9"


class Board:
    """A board module for the tests: MemoryLinks, the router's loop in a thread."""
    LAN_DHCP = True

    def __init__(self, tmp_path):
        self.CONFIG_PATH = str(tmp_path / "natrouter.json")
        self.LEASES_PATH = str(tmp_path / "dhcp_leases.json")
        self.lan = self.wan = None
        self.opened = 0

    def open_links(self, cfg):
        self.opened += 1
        self.lan = MemoryLink("lan", cfg["mtu"], 64)
        self.wan = MemoryLink("wan", cfg["mtu"], 64)
        return self.lan, self.wan

    def wait(self, timeout_ms):
        time.sleep(0.001)

    def start(self, fn):
        threading.Thread(target=fn, daemon=True).start()

    def counters(self):
        return {"lan": {"rx": self.lan.rx.count}}


def running_board(tmp_path, check=None):
    """A Board with the router running on it (one port forward to HOST1:80), for a
    fixture to yield; check(router) runs before the router stops."""
    b = Board(tmp_path)
    raw_cfg = config.defaults()
    raw_cfg["forwards"] = [{"proto": "tcp", "port": 8080, "to": HOST1, "to_port": 80}]
    config.save(b.CONFIG_PATH, raw_cfg)
    runner.start(b)
    api._edited = None
    yield b
    if check is not None:
        check(runner.router)
    runner.stop()  # through the owner: its thread ends before the next test's
    api._edited = None


def _no_errors(r):
    assert r.last_error is None and r.counters()["errors"] == 0


@pytest.fixture
def board(tmp_path):
    yield from running_board(tmp_path, _no_errors)


def exchange(link, *pkts):
    """Hand packets to the router on its own thread; (what left LAN, what left WAN)."""
    r = runner.router
    for p in pkts:
        r.call(link.inject, raw(p))
    r.call(lambda: None)  # the loop ran a poll after the packets arrived
    r.call(lambda: None)
    board = runner.board
    return ([IP(b) for b in r.call(board.lan.take_all)],
            [IP(b) for b in r.call(board.wan.take_all)])


def test_status_gives_addresses_counters_and_occupancy(board):
    exchange(board.lan, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    s = api.status()
    assert s["running"] and s["uptime_s"] >= 0 and s["pending"] == []
    assert s["lan"] == {"addr": LAN, "mask": "255.255.255.0", "mtu": 1500}
    assert s["wan"]["gateway"] == "198.51.100.1"
    assert s["flows"]["udp"] == (1, 256) and s["flows"]["tcp"] == (0, 512)
    assert s["counters"]["translated_out"] == 1 and s["counters"]["rx_lan"] == 1
    assert s["links"] == {"lan": {"rx": 0}} and s["dhcp"]["leases"] == 0
    json.dumps(s)  # plain data: a web page can send it as it is


def test_flows_filtered_and_bounded(board):
    pkts = [IP(src=HOST1, dst=SERVER) / UDP(sport=4000 + i, dport=53) for i in range(5)]
    pkts += [IP(src=HOST2, dst=SERVER) / TCP(sport=5000, dport=80, flags="S")]
    exchange(board.lan, *pkts)
    assert len(api.flows()) == 6
    assert [f["proto"] for f in api.flows("tcp")] == ["tcp"]
    only = api.flows(host=HOST2)
    assert only == [{"proto": "tcp", "inside": HOST2 + ":5000", "remote": SERVER + ":80",
                     "public": WAN + ":5000", "final": SERVER + ":80", "idle_s": 0}]
    assert len(api.flows("udp", limit=3)) == 3
    for bad in (lambda: api.flows("sctp"), lambda: api.flows(host="1.2.3"),
                lambda: api.flows(limit=0)):
        with pytest.raises(ValueError):
            bad()


def test_a_port_forward_added_at_the_repl_is_used_at_once(board):
    assert api.add_forward("udp", 6000, HOST2, 7000) == {"applied": ["forwards"], "pending": []}
    lan_out, _ = exchange(board.wan, IP(src=CLIENT, dst=WAN) / UDP(sport=3333, dport=6000))
    assert [(p.dst, p[UDP].dport, p.src) for p in lan_out] == [(HOST2, 7000, CLIENT)]
    assert {"proto": "udp", "port": 6000, "to": HOST2, "to_port": 7000} in api.forwards()


def test_a_removed_forward_takes_its_connections_with_it(board):
    lan_out, _ = exchange(board.wan, IP(src=CLIENT, dst=WAN) / TCP(sport=3333, dport=8080, flags="S"))
    assert len(lan_out) == 1 and api.status()["flows"]["tcp"][0] == 1
    api.remove_forward("tcp", 8080)
    assert api.status()["flows"]["tcp"][0] == 0 and api.forwards() == []
    lan_out, _ = exchange(board.wan, IP(src=CLIENT, dst=WAN) / TCP(sport=3333, dport=8080, flags="A"))
    assert lan_out == []
    with pytest.raises(ValueError, match="no tcp forward of port 8080"):
        api.remove_forward("tcp", 8080)


@pytest.mark.parametrize("do,named", [
    (lambda: api.set("wan.adr", "1.2.3.4"), "wan.adr: unknown key"),
    (lambda: api.set("mtu", "1500"), "mtu: '1500' must be an integer"),
    (lambda: api.set("wan.addr", "198.51.100.999"), "wan.addr"),
    (lambda: api.set("ports.first", 70000), "ports.first"),
    (lambda: api.add_forward("tcp", 8080, HOST2), "forwards[1]: tcp port 8080 is already forwarded"),
    (lambda: api.add_forward("tcp", 9090, "10.0.0.1"), "forwards[1].to"),
    (lambda: api.add_forward("sctp", 9090, HOST2), "forwards[1].proto"),
    (lambda: api.set("dhcp.first", "10.0.0.1"), "dhcp.first"),
    (lambda: api.set("dns", ["127.0.0.1"]), "dns[0]"),
    (lambda: api.set("lan.addr", "10.0.0.1"), "forwards[0].to"),  # the forward is off it
    (lambda: api.change("mtu"), "changes must be a dict"),
    (lambda: api.set("forwards.5.port", 1), "forwards: no item 5"),
], ids=["key", "type", "address", "port", "overlap", "off-lan", "proto", "pool", "dns",
        "lan-vs-forward", "not-a-dict", "no-item"])
def test_a_bad_change_is_refused_with_its_reason_and_changes_nothing(board, do, named):
    before_cfg, before_running = api.configuration(), runner.router.cfg
    with pytest.raises(ValueError) as e:
        do()
    assert named in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert api.configuration() == before_cfg and runner.router.cfg is before_running
    assert api.pending() == []


def test_addresses_wait_for_apply_which_restarts_forwarding(board):
    exchange(board.lan, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    result = api.change({"wan.addr": "198.51.100.7", "table.udp": 32})
    assert result == {"applied": [], "pending": ["wan", "table"]}
    assert api.status()["wan"]["addr"] == WAN and api.pending() == ["wan", "table"]
    opened = board.opened
    assert api.apply() == {"restarted": True, "pending": []}
    assert board.opened == opened + 1
    s = api.status()
    assert s["wan"]["addr"] == "198.51.100.7" and s["flows"]["udp"] == (0, 32)
    _, wan_out = exchange(board.lan, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53))
    assert [p.src for p in wan_out] == ["198.51.100.7"]
    assert api.apply() == {"restarted": False, "pending": []}


def test_save_keeps_the_edited_configuration(board):
    api.add_forward("udp", 6000, HOST2)
    api.set("wan.addr", "198.51.100.7")  # pending: saved all the same
    assert api.save() == {"saved": board.CONFIG_PATH, "pending": ["wan"]}
    cfg, problems = config.load(board.CONFIG_PATH)
    assert problems == [] and cfg["wan"]["addr"] == "198.51.100.7"
    assert cfg["forwards"][-1] == dict(cfg["forwards"][-1], proto="udp", port=6000, to=HOST2)


def test_forget_removes_a_hosts_flows_and_the_forwards_to_it(board):
    exchange(board.lan, IP(src=HOST1, dst=SERVER) / UDP(sport=4000, dport=53),
             IP(src=HOST2, dst=SERVER) / UDP(sport=4000, dport=53))
    exchange(board.wan, IP(src=CLIENT, dst=WAN) / TCP(sport=3333, dport=8080, flags="S"))
    assert api.remove_connections(HOST1) == {"tcp": 1, "udp": 1, "icmp": 0}
    assert [f["inside"] for f in api.flows()] == [HOST2 + ":4000"]


def test_dhcp_is_served_on_the_lan(board):
    discover = (IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                / BOOTP(chaddr=bytes.fromhex("020000000042"), xid=7)
                / DHCP(options=[("message-type", "discover"), "end"]))
    lan_out, wan_out = exchange(board.lan, discover)
    assert wan_out == [] and len(lan_out) == 1
    offer = lan_out[0]
    assert (offer.src, offer.dst, offer[UDP].sport, offer[UDP].dport) == (LAN, "255.255.255.255", 67, 68)
    assert offer[BOOTP].yiaddr == "192.168.4.100" and ("message-type", 2) in offer[DHCP].options
    assert ("name_server", "9.9.9.9") in offer[DHCP].options
    # scapy recomputes every checksum from scratch: they must be what we sent
    again = IP(raw(offer))
    del again.chksum, again[UDP].chksum
    assert raw(IP(raw(again))) == raw(offer)
    assert api.status()["dhcp"]["offers"] == 1


def test_the_repl_prints_what_manage_returns(board, capsys):
    exchange(board.lan, IP(src=HOST1, dst=SERVER) / ICMP(type=8, id=77))
    nr.help()
    nr.status()
    nr.flows()
    nr.forwards()
    nr.forward("udp", 6000, HOST2, 7000)
    nr.unforward("udp", 6000)
    nr.set("wan.addr", "198.51.100.7")
    nr.save()
    nr.config()
    nr.leases()
    nr.forget(HOST1)
    nr.apply()
    out = capsys.readouterr().out
    for text in ("nr.flows(proto=None", "natrouter running, up 0s",
                 "LAN 192.168.4.1/255.255.255.0 mtu 1500", "icmp 1/64",
                 "icmp 192.168.4.2:77", "tcp 8080 -> 192.168.4.2:80",
                 "in force: forwards; nr.save() keeps it",
                 "changed wan; nr.apply() puts it in force", "saved to ", "(not yet in force",
                 '"198.51.100.7"', "no leases", "removed 0 tcp, 0 udp, 1 icmp", "restarted"):
        assert text in out, (text, out)


# ---- the loop and the REPL at once, on the unix port (no GIL: the real test)

STRESS = r"""
import _thread, time, nat, pktlib
from manage import api, config
from manage.runner import runner
from memlink import MemoryLink

class Gen(MemoryLink):
    # hands the router a stream of packets of 64 flows, made on the router's thread
    def __init__(self, name):
        super().__init__(name, 1500, 4)
        self.pkts = [pktlib.udp("192.168.4.%d" % (2 + i % 8), "203.0.113.5", 4000 + i, 53)
                     for i in range(64)]
        self.i = 0
        self.sent = 0
    def recv_into(self, buf):
        if self.name != "lan":
            return 0
        p = self.pkts[self.i & 63]
        self.i += 1
        if self.i & 15 == 0:
            return 0  # now and then, nothing: the loop waits and runs its chores
        for j in range(len(p)):
            buf[j] = p[j]
        return len(p)
    def send(self, buf, n):
        self.sent += 1

class Board:
    CONFIG_PATH = "/tmp/stress-natrouter.json"
    def open_links(self, cfg):
        self.lan, self.wan = Gen("lan"), Gen("wan")
        return self.lan, self.wan
    def wait(self, ms):
        time.sleep_ms(1)
    def start(self, fn):
        _thread.start_new_thread(fn, ())

cfg = config.defaults()
cfg["table"] = {"tcp": 16, "udp": 32, "icmp": 8}
config.save(Board.CONFIG_PATH, cfg)
b = Board()
runner.start(b)
errors = 0
i = 0
# a second caller, as the page, the capture stream or MQTT would be: each call gets its
# own answer, none waits on another's lost turn
other = {"calls": 0, "failed": None, "stop": False, "done": False}
def other_caller():
    r = runner.router
    try:
        while not other["stop"]:
            n = other["calls"]
            got = r.call(lambda a: a + 1, n)
            assert got == n + 1, (n, got)
            other["calls"] = got
    except Exception as e:
        other["failed"] = repr(e)
    other["done"] = True
_thread.start_new_thread(other_caller, ())
# 150 rounds of changes at least, and on until the router has forwarded 1000 packets
# meanwhile (however fast the threads run here), within a bound
while i < 150 or (b.wan.sent <= 1000 and i < 50000):
    api.add_forward("udp", 6000 + i % 5, "192.168.4.%d" % (2 + i % 8)) if i % 10 < 5 else None
    try:
        api.remove_forward("udp", 6000 + i % 5)
    except ValueError:
        pass
    api.remove_connections("192.168.4.%d" % (2 + i % 8))
    rows = api.flows(limit=40)
    assert len(rows) <= 32, rows
    s = api.status()
    assert 0 <= s["flows"]["udp"][0] <= 32
    i += 1
other["stop"] = True
while not other["done"]:
    time.sleep_ms(10)
assert other["failed"] is None and other["calls"] > 100, other
r = runner.router
r.stop()
r.join()
t = r.table
# the table is whole: every flow in use is listed once
n = 0
for f in t.flows():
    n += 1
assert n == t.count(nat.UDP), (n, t.count(nat.UDP))
print("STRESS ok sent=%d errors=%d flows=%d other=%d" % (b.wan.sent, r.counters()["errors"], n,
                                                        other["calls"]))
"""


@pytest.mark.skipif(unix_binary() is None, reason="the MicroPython unix port is not installed")
def test_loop_and_repl_share_nothing_on_the_unix_port():
    out = run_unix(STRESS, timeout=120)
    line = [x for x in out.splitlines() if x.startswith("STRESS")]
    assert line and line[0].startswith("STRESS ok"), out
    words = dict(w.split("=") for w in line[0].split()[2:])
    assert int(words["sent"]) > 1000 and words["errors"] == "0", out


def test_a_heap_that_holds_neither_table_still_leaves_a_router(board, monkeypatch):
    """apply() with tables the heap cannot hold, in a heap so fragmented that the tables
    before no longer fit either: the runner forwards with its smallest tables and says
    so; a router runs, traffic crosses, the traffic ring is the one made at the start."""
    from manage import runner as runner_mod
    made = runner_mod.flow_table
    ring = runner.router.traffic

    def heap_full_but_for_the_smallest(cfg, clock=None, table=None):
        if cfg["table"] != runner_mod.LAST_RESORT:
            raise MemoryError("memory allocation failed")
        return made(cfg, clock, table)

    monkeypatch.setattr(runner_mod, "flow_table", heap_full_but_for_the_smallest)
    api.change({"table.tcp": 1024})
    with pytest.raises(ValueError, match=r"^table: the heap could not hold tcp 1024, udp 256, "
                                         r"icmp 64 flows; still forwarding, with tcp 16, "
                                         r"udp 16, icmp 8$"):
        api.apply()
    r = runner.router
    assert r.is_running() and r.traffic is ring
    assert [r.table.capacity(p) for p in (6, 17, 1)] == [16, 16, 8]
    _, wan = exchange(board.lan, IP(src=HOST1, dst=SERVER) / UDP(sport=5000, dport=53))
    assert len(wan) == 1 and wan[0].src == WAN

