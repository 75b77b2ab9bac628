"""Power cuts in the middle of config.save() on the MicroPython unix port.

A child `micropython` saves two valid configurations alternately, as fast as it can, and
is killed (SIGKILL) after a random delay; config.load, on CPython and on the unix port,
must then give one of the two, whole: never the defaults, never half a file. Twice: with
the host's rename (replaces its target in one step) and with a shim whose rename refuses
an existing target and is slow, as on FAT, where save() steps the old file aside first and
load() recovers the temporary file a cut leaves behind.
"""
import json
import os
import random
import select
import signal
import subprocess
import time

import pytest

import config
from runtimes import FIRMWARE, run_unix, unix_binary

ROUNDS = 30
MAX_DELAY = 0.25       # seconds from the child's first save to the cut
CHILD_SECONDS = 5      # the child stops by itself should nobody cut it
FAT_RENAME_MS = 3      # how long the shim's rename takes: cuts land between save()'s steps

A = {"forwards": [{"proto": "tcp", "port": 8080, "to": "192.168.4.2", "to_port": 80}],
     "table": {"tcp": 100, "udp": 50, "icmp": 10}}
B = {"wan": {"addr": "203.0.113.2", "mask": "255.255.255.0", "gateway": "203.0.113.1"},
     "forwards": [{"proto": "udp", "port": 5353, "to": "192.168.4.9", "to_port": 53}],
     "ports": {"first": 20000, "last": 30000}, "mtu": 1400}

CHILD = """\
import config, json, os, time
cfgs = (json.loads(%r), json.loads(%r))

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
    config.os = fat
config.save('natrouter.json', cfgs[1])
print('saving')
t0 = time.ticks_ms()
i = 0
while time.ticks_diff(time.ticks_ms(), t0) < %d:
    config.save('natrouter.json', cfgs[i & 1])
    i += 1
"""


def whole(raw):
    """What the file holds once raw is saved: every key, nothing derived."""
    return config.to_file(config.validate(raw, strict=True)[0])


def cut(workdir, fat, delay):
    """Run the saving child in workdir and kill it `delay` seconds into its loop."""
    code = CHILD % (json.dumps(A), json.dumps(B), FAT_RENAME_MS, fat, CHILD_SECONDS * 1000)
    proc = subprocess.Popen([unix_binary(), "-c", code], cwd=workdir,
                            env=dict(os.environ, MICROPYPATH=str(FIRMWARE)),
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


def loads(path):
    """(runtime, file keys, problems) of config.load on CPython and on the unix port."""
    cfg, problems = config.load(str(path))
    there = json.loads(run_unix(
        "import config, json\ncfg, p = config.load(%r)\nprint(json.dumps([config.to_file(cfg), p]))"
        % str(path), timeout=30))
    return [("CPython", config.to_file(cfg), problems), ("unix port", there[0], there[1])]


@pytest.mark.parametrize("fat", [False, True], ids=["rename-replaces", "fat-rename"])
def test_power_cut_during_save_leaves_one_whole_configuration(tmp_path, fat):
    if unix_binary() is None:
        pytest.skip("the MicroPython unix port is not installed (make setup)")
    a, b = whole(A), whole(B)
    assert len({json.dumps(c, sort_keys=True) for c in (a, b, whole({}))}) == 3
    path = tmp_path / "natrouter.json"
    recovered = ["%s: missing; recovered %s%s" % (path, path, spare) for spare in (".tmp", ".old")]
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    config.save(str(path), A)  # the board's configuration before the first cut
    seen = []
    for n in range(ROUNDS):
        cut(tmp_path, fat, rng.uniform(0, MAX_DELAY))
        for runtime, cfg, problems in loads(path):
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
