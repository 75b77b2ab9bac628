"""Firewall rules (issue 21) with real traffic, on the virtual board and the lwIP host
board: curl in lan1 refused at once by a `reject` (a RST from the router) and timing out
on a `drop`, its port 443 still open while its port 80 is refused; lan2 blocked entirely
(nr.block); a port forward allowed only from one remote address; an established download
cut when its host is blocked; the rule counters against what the hosts sent (capture on
lan1's link). Needs root and `ip netns`."""
import sys
import time

import pytest

import topology
from hostenv import wait_port
from netns import background, capture, topology as built_topology
from topology import FORWARD_TCP, LAN1, LAN2, SRV, SRV2, WAN

DROPPED_PORT = 8000   # srv's port lan1 may not reach: dropped
BIG = 8 << 20         # the download cut by a block


@pytest.fixture(scope="module", params=topology.BOARD_NAMES)
def ftopo(request):
    with built_topology("f", board=request.param) as topo:
        (topo.workdir / "index.html").write_text("natrouter firewall test\n")
        (topo.workdir / "big").write_bytes(bytes(range(256)) * (BIG // 256))
        servers = [topo.popen(topo.srv, sys.executable, "-m", "http.server", "-d",
                              topo.workdir, "-b", SRV, port) for port in (80, 443, DROPPED_PORT)]
        servers.append(topo.popen(topo.lan1, sys.executable, "-m", "http.server", "-d",
                                  topo.workdir, "-b", LAN1, 80))
        try:
            for p in servers:
                if p.poll() is not None:
                    raise RuntimeError("http.server: %s" % p.communicate()[0])
            for port in (80, 443, DROPPED_PORT):
                wait_port(topo.srv, SRV, port, timeout=15)
            wait_port(topo.lan1, LAN1, 80, timeout=15)
            yield topo
        finally:
            for p in servers:
                p.terminate()
                p.wait(5)


def api(topo, call):
    """The value of manage.api's call on the board."""
    return topo.eval_on_board("from manage import api; print(repr(api.%s))" % call)


def curl(topo, ns, url, *args, timeout=3):
    """(curl's exit code, seconds it took): 0 fetched, 7 refused, 28 timed out."""
    t0 = time.monotonic()
    out = topo.run(ns, "curl", "-s", "-o", "/dev/null", "--connect-timeout", timeout,
                   "--max-time", timeout + 2, *args, url, check=False, timeout=timeout + 10)
    return out.returncode, time.monotonic() - t0


@pytest.fixture
def rules(ftopo):
    """The rules of the test below, then none again, whatever happens."""
    api(ftopo, "change({'firewall': %r})" % {
        "default": "allow", "blocked": [],
        "rules": [{"lan": LAN1, "proto": "tcp", "remote": SRV, "port": 80, "action": "reject"},
                  {"lan": LAN1, "proto": "tcp", "port": DROPPED_PORT, "action": "drop"},
                  {"dir": "in", "proto": "tcp", "remote": SRV + "/32", "port": FORWARD_TCP,
                   "action": "allow"},
                  {"dir": "in", "proto": "tcp", "port": FORWARD_TCP, "action": "drop"},
                  {"lan": LAN1, "proto": "udp", "port": 9999, "action": "drop"}]})
    yield
    api(ftopo, "change({'firewall': {'default': 'allow', 'rules': [], 'blocked': []}})")


def test_reject_refuses_at_once_drop_times_out_and_the_counters_match(ftopo, rules):
    assert curl(ftopo, ftopo.lan1, "http://%s:443/" % SRV)[0] == 0     # not blocked
    code, took = curl(ftopo, ftopo.lan1, "http://%s:80/" % SRV)
    assert code == 7 and took < 1.5, (code, took)                      # refused at once
    with capture(ftopo, ftopo.lan1, "eth0", 6) as frames:
        code, took = curl(ftopo, ftopo.lan1, "http://%s:%d/" % (SRV, DROPPED_PORT), timeout=2)
        ftopo.peer(ftopo.lan1, "udp_send.py", 41000, SRV, 9999, "x", 5, timeout=10)
        time.sleep(0.5)
    assert code == 28 and took >= 1.9, (code, took)                    # a timeout
    syns = [f for f in frames if f[:2] == (LAN1, SRV) and f[4] == DROPPED_PORT]
    datagrams = [f for f in frames if f[:2] == (LAN1, SRV) and f[4] == 9999]
    assert syns and len(datagrams) == 5, frames
    fw = api(ftopo, "rules()")
    assert [r["hits"] for r in fw["rules"]] == [1, len(syns), 0, 0, 5], fw
    counters = api(ftopo, "status()['counters']")
    assert counters["dropped_firewall"] == 1 + len(syns) + 5
    assert counters["firewall_rejects_sent"] == 1


def test_a_forward_only_from_one_remote_address(ftopo, rules):
    url = "http://%s:%d/" % (WAN, FORWARD_TCP)
    assert curl(ftopo, ftopo.srv, url, "--interface", SRV)[0] == 0
    assert curl(ftopo, ftopo.srv, url, "--interface", SRV2, timeout=2)[0] == 28
    assert [r["hits"] for r in api(ftopo, "rules()")["rules"]][2:4] != [0, 0]


def test_a_blocked_host_has_no_internet_and_its_download_stops(ftopo):
    try:
        assert curl(ftopo, ftopo.lan2, "http://%s:443/" % SRV)[0] == 0
        fetch = ftopo.popen(ftopo.lan2, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                            "--limit-rate", "400k", "--max-time", "30",
                            "http://%s:80/big" % SRV)
        with background(fetch):
            time.sleep(1.5)
            assert fetch.poll() is None  # running
            t0 = time.monotonic()
            api(ftopo, "block(%r)" % LAN2)
            got = fetch.communicate(timeout=20)[0]
            took = time.monotonic() - t0
        assert fetch.returncode not in (0, 28) and took < 10, (fetch.returncode, took)
        assert 0 < int(got) < BIG, got
        assert not ftopo.ping(ftopo.lan2, SRV, count=3)
        code, took = curl(ftopo, ftopo.lan2, "http://%s:443/" % SRV)
        assert code == 7 and took < 1.5, (code, took)
        assert ftopo.ping(ftopo.lan1, SRV)                           # lan1 is not blocked
        fw = api(ftopo, "rules()")
        assert fw["blocked"][0]["host"] == LAN2 and fw["blocked"][0]["hits"] >= 1 + 3 + 1, fw
    finally:
        api(ftopo, "unblock(%r)" % LAN2)
    assert ftopo.ping(ftopo.lan2, SRV)


def test_the_board_logged_no_exception(ftopo):
    assert "Traceback" not in ftopo.console.text()
    assert api(ftopo, "status()['counters']['errors']") == 0
