"""The nat engine behaves the same on CPython, the MicroPython unix port (viper core and
pure-Python path) and the 32-bit WASI build, and allocates nothing per packet there.

- scapy-built vectors (vectors.py), replayed by upy/replay.py on every runtime;
- table behaviour (upy/table_cases.py), the same asserts on every runtime;
- heap_lock() around parse + translate (upy/alloc_check.py) on both MicroPythons.
The vector file goes to pytest's temporary directory; the WASI guest sees it through an
extra read-only mount, as the repository itself is mounted read-only at /input.
"""
import json
import re
import sys

import pytest

import vectors
from runtimes import FIRMWARE, UPY_TESTS, MicroPythonError, run_unix, run_wasi

# The scripts of upy/ import each other by plain name, as on MicroPython.
if str(UPY_TESTS) not in sys.path:
    sys.path.insert(0, str(UPY_TESTS))
import replay as replay_mod  # noqa: E402
import table_cases  # noqa: E402

WASI_VECTORS = "/vectors"
SUMMARY = re.compile(r"REPLAY records=(\d+) checks=(\d+) mismatches=(\d+) core=(\S+)")
HAS_VIPER = (FIRMWARE / "nat" / "_viper.py").exists()


@pytest.fixture(scope="session")
def vector_file(tmp_path_factory):
    """(path, number of records) of the vectors, built once per session."""
    path = tmp_path_factory.mktemp("vectors") / "nat.jsonl"
    return path, vectors.write(path)


def replay_summary(out):
    m = SUMMARY.search(out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)


def assert_clean_replay(out, count, core=None):
    records, checks, mismatches, ran = replay_summary(out)
    assert mismatches == 0, out
    assert records == count and checks > 5 * count, out
    if core:
        assert ran == core, out


# ---- the runtime


def test_wasi_survives_allocation_churn():
    # With the WASI build's own collector on, this frees its live frame and dies
    # (guest exit 1) or computes garbage; run_wasi must keep it from collecting.
    code = ("def work():\n    garbage = []\n    s = 0\n    for i in range(60000):\n"
            "        s += i & 0xFFFF\n        garbage.append(bytearray(50))\n"
            "        if len(garbage) > 100:\n            garbage = []\n    return s\n"
            "print(work())")
    assert run_wasi(code).split() == [str(sum(i & 0xFFFF for i in range(60000)))]


# ---- the vectors


def test_oracle_checks_checksums():
    pkt = vectors.make(vectors.TCP_P, vectors.INSIDE, vectors.REMOTE, 1, 2, payload=b"abc")
    assert vectors.checksum_ok(pkt)
    for at in (10, 36, len(pkt) - 1):  # IP checksum, TCP checksum, payload
        bad = bytearray(pkt)
        bad[at] ^= 0x10
        assert not vectors.checksum_ok(bytes(bad))


def test_vectors_cover_the_contract(vector_file):
    path, count = vector_file
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == count
    seen = {(r["op"], r.get("want")) for r in records}
    for status in (vectors.OK, vectors.UNTRANSLATED, vectors.TTL_EXCEEDED):
        assert ("xl", status) in seen
    for status in (vectors.OK, vectors.OVERLAP, vectors.CANNOT_NAT):
        assert ("add", status) in seen
    assert ("parse", vectors.MALFORMED) in seen
    assert sum(r["name"].startswith("random") and r["op"] == "add" for r in records) >= 300


@pytest.mark.parametrize("pure", [False, True], ids=["default", "pure"])
def test_vectors_cpython(vector_file, pure, capsys):
    path, count = vector_file
    replay_mod.main(str(path), pure)
    assert_clean_replay(capsys.readouterr().out, count, "python" if pure else None)


def test_replay_reports_mismatches(vector_file, tmp_path):
    path, count = vector_file
    lines = path.read_text().splitlines()
    first_xl = next(i for i, line in enumerate(lines) if json.loads(line)["op"] == "xl")
    r = json.loads(lines[first_xl])
    r["out"] = r["out"][:-2] + ("00" if r["out"][-2:] != "00" else "01")
    lines[first_xl] = json.dumps(r)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code = "import replay\nreplay.main(%r)" % str(bad)
    out = run_unix(code)
    records, _, mismatches, _ = replay_summary(out)
    assert (records, mismatches) == (count, 1), out
    assert "MISMATCH xl [%s]" % r["name"] in out


@pytest.mark.parametrize("pure", [False, True], ids=["default", "pure"])
def test_vectors_unix(vector_file, pure):
    path, count = vector_file
    out = run_unix("import replay\nreplay.main(%r, %r)" % (str(path), pure))
    assert_clean_replay(out, count, "python" if pure else ("viper" if HAS_VIPER else None))


def test_vectors_wasi(vector_file):
    path, count = vector_file
    out = run_wasi("import replay\nreplay.main(%r)" % (WASI_VECTORS + "/" + path.name),
                   mounts={WASI_VECTORS: str(path.parent)})
    assert_clean_replay(out, count, "python")


# ---- table behaviour


@pytest.fixture
def pure_path():
    yield lambda pure: table_cases.PURE.__setitem__(0, pure)
    table_cases.PURE[0] = False


@pytest.mark.parametrize("pure", [False, True], ids=["default", "pure"])
@pytest.mark.parametrize("case", table_cases.CASES, ids=lambda c: c.__name__[5:])
def test_table_cpython(case, pure, pure_path):
    pure_path(pure)
    case()


def assert_table_cases_pass(out):
    lines = re.findall(r"TABLE_CASES passed=(\d+) failed=(\d+)", out)
    assert lines, out
    for passed, failed in lines:
        assert (int(passed), int(failed)) == (len(table_cases.CASES), 0), out


def test_table_unix():
    assert_table_cases_pass(run_unix(
        "import table_cases\ntable_cases.run_all()\ntable_cases.run_all(True)"))


def test_table_wasi():
    assert_table_cases_pass(run_wasi("import table_cases\ntable_cases.run_all()"))


def test_table_cases_can_fail():
    with pytest.raises(MicroPythonError) as failed:
        run_unix("import table_cases\n"
                 "def broken():\n    assert 1 == 2, 'expected failure'\n"
                 "table_cases.CASES = table_cases.CASES + (broken,)\n"
                 "table_cases.run_all()")
    out = str(failed.value)
    assert "FAIL broken" in out and "expected failure" in out
    assert "passed=%d failed=1" % len(table_cases.CASES) in out


# ---- no allocation per packet


ALLOC = re.compile(r"ALLOC (.+?) status=(\S+) allocated=(\d+)/(\d+) valid=(\d)")


def alloc_results(out):
    """{case: (status, runs that allocated, runs, valid)} for each run in out, in order."""
    runs = []
    for block in out.split("ALLOC_DONE")[:-1]:
        runs.append({m[0]: (m[1], int(m[2]), int(m[3]), m[4] == "1")
                     for m in ALLOC.findall(block)})
    assert runs, out
    return runs


def assert_no_allocation(out, wasi):
    for results in alloc_results(out):
        assert len(results) == 15, out
        for case, (status, allocated, runs, valid) in results.items():
            if case.startswith("probe-"):
                continue
            assert allocated == 0, "%s allocates on the per-packet path:\n%s" % (case, out)
            assert valid and runs > 0, "%s: wrong status or checksums:\n%s" % (case, out)
        # The check itself can fail: an allocating translate is caught everywhere, and
        # building an address as one int is caught on the 32-bit build only.
        _, allocated, runs, _ = results["probe-allocating"]
        assert allocated == runs > 0, out
        _, allocated, runs, _ = results["probe-src"]
        assert allocated == (runs if wasi else 0), out


def test_no_allocation_unix():
    out = run_unix("import alloc_check\nalloc_check.main()\nalloc_check.main(True)")
    assert len(alloc_results(out)) == 2
    assert_no_allocation(out, wasi=False)


def test_no_allocation_wasi():
    assert_no_allocation(run_wasi("import alloc_check\nalloc_check.main()"), wasi=True)


# ---- a table is allocated once


PEAK = re.compile(r"PEAK allocated=(\d+) kept=(\d+)")


def test_table_construction_has_no_temporary_copy_unix():
    # With the collector off every temporary stays counted: building the arrays through
    # a full-size temporary (bytes copied into the array) would allocate twice what stays.
    out = run_unix("import gc\nfrom nat.table import Table\n"
                   "gc.collect()\nbefore = gc.mem_free()\ngc.disable()\n"
                   "t = Table(tcp=2048, udp=1024, icmp=256)\n"
                   "allocated = before - gc.mem_free()\ngc.enable()\ngc.collect()\n"
                   "print('PEAK allocated=%d kept=%d' % (allocated, before - gc.mem_free()))")
    allocated, kept = map(int, PEAK.search(out).groups())
    assert kept > 2048 * 36, out
    assert allocated < kept * 1.1, out
