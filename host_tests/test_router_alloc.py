"""The router's per-packet path allocates nothing on MicroPython: host_tests/upy/
router_alloc.py runs each step under micropython.heap_lock() on the unix port and on the
32-bit WASI build (where a whole IPv4 address as an int would be a heap object)."""
import pytest

import router_alloc
from runtimes import run_unix, run_wasi

STEP_CASES = tuple(name for name, *_ in router_alloc.CASES if name not in ("poll", "capture_poll"))

_results = {}


def results(runtime):
    if runtime not in _results:
        run = run_unix if runtime == "unix" else run_wasi
        try:
            out = run("import router_alloc\nrouter_alloc.main()")
        except Exception as e:  # run once per runtime; every case reports the failure
            _results[runtime] = e
            raise
        assert out.rstrip().endswith("DONE"), out
        cases = {}
        assert out.count("CASE ") == len(router_alloc.CASES), out
        for line in out.splitlines():
            if line.startswith("CASE "):
                _, name, alloc, got, expect = line.split()
                cases[name] = (alloc, got, expect)
            elif line.startswith("FLOWS "):
                _, listed, capacity, proto = line.split()
                cases["flows"] = (int(listed), int(capacity), proto)
            elif line.startswith("CAPTURE "):
                cases["capture"] = tuple(int(v) for v in line.split()[1:])
            elif line.startswith("DRAIN "):
                _, kind, core_name = line.split()
                cases["drain"] = (kind, core_name)
        _results[runtime] = cases
    if isinstance(_results[runtime], Exception):
        raise _results[runtime]
    return _results[runtime]


@pytest.mark.parametrize("runtime", ["unix", "wasi"])
@pytest.mark.parametrize("case", STEP_CASES)
def test_step_allocates_nothing(runtime, case):
    alloc, got, expect = results(runtime)[case]
    assert got == expect, "%s: output went to %s, expected %s" % (case, got, expect)
    assert alloc == "ok", "%s allocated on the %s port" % (case, runtime)


@pytest.mark.parametrize("runtime", ["unix", "wasi"])
def test_loop_iteration_allocates_nothing(runtime):
    # poll(): table.tick() plus a drained batch; a loop iteration must not make garbage.
    alloc, got, expect = results(runtime)["poll"]
    assert alloc == "ok", "Router.poll (incl. Table.tick) allocated on the %s port" % runtime
    assert got == expect


@pytest.mark.parametrize("runtime", ["unix", "wasi"])
def test_flows_listing_on_micropython(runtime):
    listed, capacity, proto = results(runtime)["flows"]
    assert listed == capacity and proto in ("tcp", "udp", "icmp")


@pytest.mark.parametrize("runtime", ["unix", "wasi"])
def test_drain_loops_native_where_the_port_has_emitters(runtime):
    # A bytecode function of more than 11 words of state gets its frame from the heap on
    # each call (py/objfun.c): where native emitters exist the drain is machine code
    # (forward/_datapath_viper.py); the WASI build has none and runs its pure twin.
    expect = ("viper", "viper") if runtime == "unix" else ("python", "python")
    assert results(runtime)["drain"] == expect


@pytest.mark.parametrize("runtime", ["unix", "wasi"])
def test_a_capture_in_progress_allocates_nothing(runtime):
    # capture_* cases: the links tapped (filter/capture.py), a loop iteration included,
    # then a full ring dropping the newest
    alloc, got, expect = results(runtime)["capture_poll"]
    assert alloc == "ok" and got == expect
    packets, lost = results(runtime)["capture"]
    assert packets > 6 and lost >= 3, (packets, lost)   # the full ring's 3 steps were lost
