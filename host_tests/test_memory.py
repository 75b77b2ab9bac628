"""Flow tables and the heap (firmware/manage/memory.py, nat.table.table_bytes): what a
table costs, tables the heap cannot hold refused at apply() with the reason and the
router left forwarding as before, a saved configuration too big for the heap booting on
the defaults. On CPython with the heap's figures given, and on the unix port with a
real, small heap (-X heapsize)."""
import re

import pytest

from manage import memory
from nat.table import table_bytes
from runtimes import run_unix, unix_binary

needs_unix = pytest.mark.skipif(unix_binary() is None,
                                reason="the MicroPython unix port is not installed")


def cfg(tcp, udp, icmp):
    return {"table": {"tcp": tcp, "udp": udp, "icmp": icmp}}


class Board:
    def __init__(self, room):
        self.room = room

    def heap_room(self):
        return self.room


@pytest.fixture
def heap(monkeypatch):
    """The heap's free bytes, as the test sets them (CPython has no fixed heap)."""
    free = {"bytes": 0}
    monkeypatch.setattr(memory, "mem_free", lambda: free["bytes"])
    monkeypatch.setattr(memory, "mem_alloc", lambda: 1000)
    return free


def test_tables_that_fit_pass_and_the_others_are_named(heap):
    need = table_bytes(512, 256, 64)
    heap["bytes"] = need + memory.MARGIN
    memory.check_tables(cfg(512, 256, 64))
    heap["bytes"] -= 1
    with pytest.raises(ValueError) as e:
        memory.check_tables(cfg(512, 256, 64))
    assert re.match(r"table: tcp 512, udp 256, icmp 64 flows need %d bytes of heap; %d are "
                    r"free" % (need, need + memory.MARGIN - 1), str(e.value)), str(e.value)


def test_the_running_tables_and_the_boards_room_count(heap):
    need = table_bytes(1024, 512, 64)
    heap["bytes"] = need + memory.MARGIN - table_bytes(512, 256, 64)
    with pytest.raises(ValueError):
        memory.check_tables(cfg(1024, 512, 64))
    memory.check_tables(cfg(1024, 512, 64), running=cfg(512, 256, 64))  # freed first
    heap["bytes"] -= 5000
    with pytest.raises(ValueError):
        memory.check_tables(cfg(1024, 512, 64), running=cfg(512, 256, 64))
    memory.check_tables(cfg(1024, 512, 64), running=cfg(512, 256, 64), board=Board(5000))


def test_report_takes_the_boards_figures(heap):
    heap["bytes"] = 1234

    class WithMemory:
        def memory(self):
            return {"idf_free": 1, "idf_largest": 2, "idf_min_free": 3, "idf_reserve": 4}
    assert memory.report() == {"heap_free": 1234, "heap_used": 1000}
    assert memory.report(WithMemory())["idf_largest"] == 2


def test_cpython_has_no_bound():
    memory.check_tables(cfg(8192, 8192, 8192))   # mem_free is None here: nothing to check
    assert memory.report() == {"heap_free": None, "heap_used": None}


SIZES = r"""
import gc
from nat.table import Table, table_bytes
for sizes in ((512, 256, 64), (192, 96, 32), (2048, 1024, 256), (1, 1, 1)):
    gc.collect()
    before = gc.mem_free()
    t = Table(*sizes)
    gc.collect()
    print("SIZE", before - gc.mem_free(), table_bytes(*sizes))
    t = None
"""


@needs_unix
def test_table_bytes_bounds_what_a_table_keeps():
    rows = [tuple(map(int, x.split()[1:])) for x in run_unix(SIZES).splitlines()
            if x.startswith("SIZE")]
    assert len(rows) == 4
    for kept, said in rows:
        assert kept <= said and (kept >= 0.97 * said or said - kept < 512), rows


# The router on MemoryLinks in a heap of 512 KB: the defaults (512/256/64, 38 KB of tables)
# fit, 4096/4096/1024 (350 KB) cannot.
# A board of MemoryLinks, its configuration at %(path)s: what both scripts below run on.
BOARD = r"""
import _thread, time
from manage import api, config
from manage.runner import runner
from memlink import MemoryLink

class Board:
    CONFIG_PATH = "%(path)s"
    def open_links(self, cfg):
        return MemoryLink("lan", cfg["mtu"], 4), MemoryLink("wan", cfg["mtu"], 4)
    def wait(self, ms):
        time.sleep_ms(1)
    def start(self, fn):
        _thread.start_new_thread(fn, ())
"""

APPLY = BOARD + r"""
def capacity():
    return tuple(api.status()["flows"][p][1] for p in ("tcp", "udp", "icmp"))

raw = config.defaults()
raw["table"] = {"tcp": 4096, "udp": 4096, "icmp": 1024}
config.save(Board.CONFIG_PATH, raw)
runner.start(Board())   # the file's tables cannot be made: the defaults instead
print("BOOT", capacity(), runner.router.is_running())
api.change({"table.tcp": 4096, "table.udp": 4096, "table.icmp": 1024})
try:
    api.apply()
    print("APPLY applied")
except ValueError as e:
    print("APPLY refused:", e)
print("AFTER", capacity(), runner.router.is_running(), api.pending())
# past the check (a heap too fragmented for what it counted): the runner's own fallback
cfg = config.validate(dict(config.to_file(runner.router.cfg),
                           table={"tcp": 4096, "udp": 4096, "icmp": 1024}))[0]
try:
    runner.restart(cfg)
except ValueError as e:
    print("RESTART refused:", e)
print("STILL", capacity(), runner.router.is_running())
api.change({"table.tcp": 1024, "table.udp": 256, "table.icmp": 64})
print("GROWN", api.apply()["restarted"], capacity())
runner.stop()
"""


@needs_unix
def test_tables_the_heap_cannot_hold_never_stop_the_router(tmp_path):
    out = run_unix(APPLY % {"path": tmp_path / "natrouter.json"}, heapsize="512K")
    assert "natrouter: config: table: too big for the heap; using" in out, out
    assert "BOOT (512, 256, 64) True" in out, out
    assert re.search(r"APPLY refused: table: tcp 4096, udp 4096, icmp 1024 flows need \d+ "
                     r"bytes of heap; \d+ are free", out), out
    assert "AFTER (512, 256, 64) True ['table']" in out, out
    assert ("RESTART refused: table: the heap could not hold tcp 4096, udp 4096, icmp 1024 "
            "flows; still forwarding, with tcp 512, udp 256, icmp 64") in out, out
    assert "STILL (512, 256, 64) True" in out, out
    assert "GROWN True (1024, 256, 64)" in out, out


# A restart at the same sizes keeps the table's arrays; a stale handle on the old Router
# (another thread's local) does not keep its tables: the heap in use after a resize is the
# new tables' more, not the old ones' too.
RESTARTS = BOARD + r"""
import gc
from nat.table import table_bytes

def used():
    gc.collect()
    return gc.mem_alloc()

# (in functions: a module-level statement's dead stack slots would hold what it touched,
# and MicroPython's collector scans them)
def same():
    t0 = runner.router.table
    api.change({"wan.addr": "198.51.100.7"})
    api.apply()
    print("SAME", runner.router.table is t0, runner.router.cfg["wan"]["addr"])

def resize(stale):
    api.change({"table.tcp": 2048})
    print("RESIZED", api.apply()["restarted"], api.status()["flows"]["tcp"][1], stale.table)
    return stale

config.save(Board.CONFIG_PATH, config.defaults())
runner.start(Board())
same()
api.status()   # its first call imports what it needs
before = used()
stale = resize(runner.router)
print("GREW", used() - before, table_bytes(2048, 256, 64) - table_bytes(512, 256, 64))
runner.stop()
"""


@needs_unix
def test_restarts_reuse_the_table_and_never_hold_two(tmp_path):
    out = run_unix(RESTARTS % {"path": tmp_path / "natrouter.json"}, heapsize="2M")
    assert "SAME True 198.51.100.7" in out, out
    assert "RESIZED True 2048 None" in out, out
    grew, tables = map(int, re.search(r"GREW (-?\d+) (\d+)", out).groups())
    assert abs(grew - tables) < 4096, out   # not the old ones' 38 KB on top (nor 45 KB more
    # of the old router's buffers)


def _udp(sport):
    from scapy.layers.inet import IP, UDP
    from scapy.packet import raw
    return bytearray(raw(IP(src="192.168.4.2", dst="203.0.113.5") / UDP(sport=sport, dport=53)))


def test_a_table_reshaped_in_its_own_arrays_works_at_its_new_size():
    """Table.reshape: smaller tables in the arrays a table has (a restart that allocates
    nothing); flows fill exactly the new capacity and translate; larger is refused."""
    import nat
    t = nat.Table(tcp=64, udp=32, icmp=16)
    p = nat.Packet()
    p.parse(_udp(1000))
    assert t.add(p, nat.ip("198.51.100.2"), lambda: 41000) == nat.OK
    mems = [bytes(m) for m in t.mems[1:]]
    arrays = list(t.mems[1:])
    assert t.holds(64, 32, 16) and t.holds(8, 4, 1) and not t.holds(64, 33, 16)
    t.reshape(8, 4, 1)
    assert [t.capacity(x) for x in (6, 17, 1)] == [8, 4, 1] and t.count(17) == 0
    assert [bytes(m) for m in t.mems[1:]] != mems          # emptied and reshaped ...
    assert all(a is b for a, b in zip(t.mems[1:], arrays))  # ... in place
    ports = iter(range(42000, 43000))
    for sport in range(2000, 2006):   # a full table makes room (nat/room.py): 4 at most
        p.parse(_udp(sport))
        assert t.add(p, nat.ip("198.51.100.2"), lambda: next(ports)) == nat.OK
        assert t.count(17) == min(sport - 1999, 4)
    buf = _udp(2005)
    p.parse(buf)
    assert t.translate(p) == nat.OK and bytes(buf[12:16]) == bytes([198, 51, 100, 2])
    with pytest.raises(ValueError, match="too small for tcp 64, udp 33, icmp 16"):
        t.reshape(64, 33, 16)
