"""Power cuts in the middle of a save on the MicroPython unix port, for every file the
board keeps (manage/store.py writes both): the configuration (config.save) and the DHCP
leases (services.dhcp_file.LeaseFile), the latter also as the DHCP server writes them:
bindings and releases from DHCP messages, batched, written by its tick().

A child `micropython` saves two valid versions alternately, as fast as it can, and is
killed (SIGKILL) after a random delay; loading, on CPython and on the unix port, must
then give one of the two, whole: never the defaults, never half a file. Twice: with the
host's rename (replaces its target in one step) and with a shim whose rename refuses an
existing target and is slow, as on FAT, where the save steps the old file aside first
and the load recovers the temporary file a cut leaves behind.
"""
import json
import os
import random
import select
import signal
import subprocess
import time

import pytest

from manage import config, store
from runtimes import FIRMWARE, UPY_TESTS, run_unix, unix_binary

ROUNDS = 30
MAX_DELAY = 0.25       # seconds from the child's first save to the cut
CHILD_SECONDS = 5      # the child stops by itself should nobody cut it
FAT_RENAME_MS = 3      # how long the shim's rename takes: cuts land between save()'s steps

A = {"forwards": [{"proto": "tcp", "port": 8080, "to": "192.168.4.2", "to_port": 80}],
     "table": {"tcp": 100, "udp": 50, "icmp": 10}}
B = {"wan": {"addr": "203.0.113.2", "mask": "255.255.255.0", "gateway": "203.0.113.1"},
     "forwards": [{"proto": "udp", "port": 5353, "to": "192.168.4.9", "to_port": 53}],
     "ports": {"first": 20000, "last": 30000}, "mtu": 1400}

# Two versions of the leases file, as DhcpServer writes it.
LEASES_A = {"leases": [{"key": "01" + "aa" * 6 + "00" * 9, "mac": "aa:aa:aa:aa:aa:aa",
                        "addr": "192.168.4.100", "remaining": 3000}]}
LEASES_B = {"leases": [{"key": "01" + "bb" * 6 + "00" * 9, "mac": "bb:bb:bb:bb:bb:bb",
                        "addr": "192.168.4.101", "remaining": 1000}] * 2}

# Two sets of clients bound by the DHCP server (keys as it makes them: by MAC).
SERVER_A = {"version": 1, "leases": [
    {"key": "fe" + "02aaaaaaaaaa" + "00" * 9, "mac": "02:aa:aa:aa:aa:aa",
     "addr": "192.168.4.100", "remaining": 3000}]}
SERVER_B = {"version": 1, "leases": [
    {"key": "fe" + "02bbbbbbbbbb" + "00" * 9, "mac": "02:bb:bb:bb:bb:bb",
     "addr": "192.168.4.101", "remaining": 1000},
    {"key": "fe" + "02cccccccccc" + "00" * 9, "mac": "02:cc:cc:cc:cc:cc",
     "addr": "192.168.4.102", "remaining": 2000}]}

# The server makes the bindings of a version by DHCP messages: RELEASEs of the others,
# REQUESTs (RENEWING) of its own; then a batch interval passes and tick() writes them.
SERVER_SAVE = """\
from services import dhcp
from services.dhcp_config import mac
from services.dhcp_file import dump
import dhcp_cases as d
srv = []
def save(path, v):
    if not srv:
        srv.append(dhcp.DhcpServer(None, d.LAN, d.MASK, store=dhcp.LeaseFile(path),
                                   clock=d.Clock(1000)))
    s = srv[0]
    for x in dump(s.pool, s.clock.t)["leases"]:
        d.send(s, d.message(dhcp.RELEASE, mac(x["mac"]), ciaddr=x["addr"]))
    for x in v["leases"]:
        r, _ = d.send(s, d.message(dhcp.REQUEST, mac(x["mac"]), ciaddr=x["addr"]))
        assert r["opts"][53] == b"\\x05"
    s.clock.t += dhcp.SAVE_S
    s.tick()
    assert s.counters()["save_errors"] == 0
"""

SAVERS = {  # how the child saves a version, what the path is called
    "config": ("from manage import config\nsave = config.save", "natrouter.json"),
    "leases": ("from services.dhcp_file import LeaseFile\n"
               "save = lambda path, v: LeaseFile(path).save(v)", "dhcp_leases.json"),
    "server": (SERVER_SAVE, "dhcp_leases.json"),
}

CHILD = """\
import json, os, time
from manage import store
%s
values = (json.loads(%r), json.loads(%r))
path = %r

class fat:
    # FAT's rename: an existing target makes it fail; it takes a while
    @staticmethod
    def rename(a, b):
        try:
            os.stat(b)
        except OSError:
            os.rename(a, b)
            time.sleep_ms(%d)
            return
        raise OSError(17)  # EEXIST
    stat = os.stat
    remove = os.remove

if %r:
    store.os = fat
save(path, values[1])
print('saving')
t0 = time.ticks_ms()
i = 0
while time.ticks_diff(time.ticks_ms(), t0) < %d:
    save(path, values[i & 1])
    i += 1
"""


def whole(raw):
    """What the file holds once raw is saved: every key, nothing derived."""
    return config.to_file(config.validate(raw, strict=True)[0])


def cut(workdir, what, a, b, fat, delay):
    """Run the child saving a and b in workdir and kill it `delay` seconds into its loop."""
    saver, name = SAVERS[what]
    code = CHILD % (saver, json.dumps(a), json.dumps(b), name, FAT_RENAME_MS, fat,
                    CHILD_SECONDS * 1000)
    proc = subprocess.Popen([unix_binary(), "-c", code], cwd=workdir,
                            env=dict(os.environ, MICROPYPATH="%s:%s" % (FIRMWARE, UPY_TESTS)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert select.select([proc.stdout], [], [], 10)[0], "the child did not start"
        line = proc.stdout.readline()
        assert line == b"saving\n", line + proc.stderr.read()
        time.sleep(delay)
        assert proc.poll() is None, "the child stopped before the cut: %s" % proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(5)


LOADERS = {  # [value, problems] of a load of `path`, on any runtime
    "config": "from manage import config\ncfg, p = config.load(path)\n"
              "got = [config.to_file(cfg), p]",
    "leases": "from manage import store\nfrom services.dhcp_file import LeaseFile\n"
              "v, p = store.load_json(path)\nassert v == LeaseFile(path).load()\n"
              "got = [v, [path + ': ' + p] if p else []]",
    # the clients bound, as a new boot's server restores them from the file
    "server": "from manage import store\nfrom services import dhcp\n"
              "v, p = store.load_json(path)\n"
              "srv = dhcp.DhcpServer(None, '192.168.4.1', '255.255.255.0',"
              " store=dhcp.LeaseFile(path))\n"
              "got = [sorted([x['mac'], x['addr']] for x in srv.leases()) if v else v,"
              " [path + ': ' + p] if p else []]",
}


def loads(what, path):
    """(runtime, value, problems) of loading path on CPython and on the unix port."""
    code = "path = %r\n" % str(path) + LOADERS[what]
    here = {}
    exec(code, here)
    there = json.loads(run_unix("import json\n" + code + "\nprint(json.dumps(got))", timeout=30))
    return [("CPython", here["got"][0], here["got"][1]), ("unix port", there[0], there[1])]


def bound(leases):
    """The clients of a version of the leases file, as the "server" loader lists them."""
    return sorted([x["mac"], x["addr"]] for x in leases["leases"])


@pytest.mark.parametrize("what", ["config", "leases", "server"])
@pytest.mark.parametrize("fat", [False, True], ids=["rename-replaces", "fat-rename"])
def test_power_cut_during_save_leaves_one_whole_file(tmp_path, fat, what):
    if unix_binary() is None:
        pytest.skip("the MicroPython unix port is not installed (make setup)")
    if what == "config":
        a, b = whole(A), whole(B)
        assert len({json.dumps(c, sort_keys=True) for c in (a, b, whole({}))}) == 3
        written_a, written_b = A, B
    elif what == "leases":
        a, b = written_a, written_b = LEASES_A, LEASES_B
    else:
        written_a, written_b = SERVER_A, SERVER_B
        a, b = bound(SERVER_A), bound(SERVER_B)
    path = tmp_path / SAVERS[what][1]
    recovered = ["%s: missing; recovered %s%s" % (path, path, spare) for spare in (".tmp", ".old")]
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    store.save_json(str(path), written_a)  # what the board holds before the first cut
    seen = []
    for n in range(ROUNDS):
        cut(tmp_path, what, written_a, written_b, fat, rng.uniform(0, MAX_DELAY))
        for runtime, cfg, problems in loads(what, path):
            where = "seed %d, round %d, %s: " % (seed, n, runtime)
            assert cfg in (a, b), where + "neither configuration: %r %r" % (cfg, problems)
            # only a non-replacing rename ever leaves the file missing for a moment
            assert problems == [] or (fat and problems[0] in recovered and len(problems) == 1), \
                where + repr(problems)
            seen.append(("a" if cfg == a else "b", bool(problems)))
    # the cuts fell at different points of the loop, not all before or after it
    assert {s[0] for s in seen} == {"a", "b"}, seen
    if fat:
        assert any(s[1] for s in seen), "no cut fell between the renames: %s" % seen
