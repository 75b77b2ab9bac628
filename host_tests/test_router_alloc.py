"""The router's per-packet path allocates nothing on MicroPython: host_tests/upy/
router_alloc.py runs each step under micropython.heap_lock() on the unix port and on the
32-bit WASI build (where a whole IPv4 address as an int would be a heap object)."""
import pytest

from runtimes import run_unix, run_wasi

STEP_CASES = (
    "tcp_out", "tcp_in", "udp_out", "udp_in", "icmp_echo_out", "icmp_echo_in",
    "icmp_error_in", "forward_tcp_in", "forward_tcp_out", "forward_udp_in",
    "forward_udp_out", "echo_router_lan", "echo_router_wan", "ttl_exceeded",
    "unsolicited", "lan_local", "malformed",
)

_results = {}


def results(runtime):
    if runtime not in _results:
        run = run_unix if runtime == "unix" else run_wasi
        try:
            out = run("import router_alloc")
        except Exception as e:  # run once per runtime; every case reports the failure
            _results[runtime] = e
            raise
        assert out.rstrip().endswith("DONE"), out
        cases = {}
        for line in out.splitlines():
            if line.startswith("CASE "):
                _, name, alloc, got, expect = line.split()
                cases[name] = (alloc, got, expect)
            elif line.startswith("FLOWS "):
                _, listed, capacity, proto = line.split()
                cases["flows"] = (int(listed), int(capacity), proto)
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
