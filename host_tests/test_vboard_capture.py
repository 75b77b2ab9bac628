"""Packet capture (issue 21) during real transfers, on the virtual board and the lwIP host
board: pulled over the REPL by tools/capture.py, and streamed over TCP from the LAN
address (as `nc 192.168.4.1 19000 | wireshark -k -i -` would take it). The files are read
by tcpdump -r and scapy's rdpcap and hold exactly the packets host-side captures saw on
lan1's and srv's links: before translation with lan1's address, after with the WAN's;
timestamps in order. Needs root and `ip netns`."""
import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

import topology
from hostenv import ROOT, wait_port
from netns import background, capture, on_board, topology as built_topology
from topology import LAN1, LAN2, LAN_GW, SRV, WAN

HTTP_PORT = 8004
BLOB = 100 * 1024


@pytest.fixture(scope="module", params=topology.BOARD_NAMES)
def ctopo(request):
    with built_topology("c", board=request.param) as topo:
        (topo.workdir / "blob").write_bytes(bytes(range(256)) * (BLOB // 256))
        server = topo.popen(topo.srv, sys.executable, "-m", "http.server", "-d", topo.workdir,
                            "-b", SRV, HTTP_PORT)
        with background(server):
            wait_port(topo.srv, SRV, HTTP_PORT, timeout=15)
            # a ring the transfer fits in: nothing lost, so every packet can be compared
            on_board(topo, "from manage import api; api.change({'capture.size': 262144})")
            yield topo


def five_tuples(pkts):
    out = []
    for p in pkts:
        ip = p[IP]
        ports = (ip[TCP].sport, ip[TCP].dport) if TCP in ip else (0, 0)
        out.append((ip.src, ip.dst, ip.proto) + ports)
    return out


def read_pcap(path):
    """The packets, after tcpdump -r read the same file and counted as many."""
    pkts = rdpcap(str(path))
    out = subprocess.run(["tcpdump", "-Z", "root", "-n", "-r", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(pkts) > 0, out.stdout[-2000:]
    times = [float(p.time) for p in pkts]
    assert times == sorted(times)
    return pkts


@pytest.fixture(autouse=True)
def tcpdump_needed():
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (make setup)")


def test_pulled_over_the_repl_holds_what_both_links_saw(ctopo, tmp_path):
    out = tmp_path / "repl.pcap"
    with capture(ctopo, ctopo.lan1, "eth0", 9) as lan_seen, \
            capture(ctopo, ctopo.srv, "eth0", 9) as srv_seen:
        with ctopo.pty_released():
            tool = subprocess.Popen([sys.executable, ROOT / "tools" / "capture.py", "--port",
                                     ctopo.pty, "-w", out, "--seconds", "6", "--host", SRV,
                                     "--proto", "tcp"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            with background(tool):
                time.sleep(2.5)   # mpremote is in and the capture on
                size, _ = ctopo.fetch(ctopo.lan1, "http://%s:%d/blob" % (SRV, HTTP_PORT))
                said = tool.communicate(timeout=60)[0]
    assert size == BLOB and tool.returncode == 0, said
    assert " 0 lost" in said, said
    got = Counter(five_tuples(read_pcap(out)))
    want_lan = Counter(f for f in lan_seen if f[2] == 6 and SRV in f[:2])
    want_srv = Counter(f for f in srv_seen if f[2] == 6 and SRV in f[:2])
    assert sum(want_lan.values()) > 60, lan_seen   # a real transfer: 100 KB of segments
    # before translation lan1's own address, after it the WAN's
    assert {f[0] for f in want_lan} == {LAN1, SRV} and {f[0] for f in want_srv} == {WAN, SRV}
    assert got == want_lan + want_srv


def test_streamed_over_tcp_on_the_lan_address(ctopo, tmp_path):
    out = tmp_path / "stream.pcap"
    assert "'on': True" in on_board(ctopo, "from manage import capture_api as c; "
                                           "print(c.capture_start(host=%r))" % SRV)
    try:
        reader = ctopo.peer_bg(ctopo.lan1, "tcp_read.py", LAN_GW, 19000, out, 6)
        with background(reader):
            assert reader.stdout.readline().strip() == "connected"
            with capture(ctopo, ctopo.lan2, "eth0", 4) as lan_seen, \
                    capture(ctopo, ctopo.srv, "eth0", 4) as srv_seen:
                assert ctopo.ping(ctopo.lan2, SRV, count=3)
            written = int(reader.communicate(timeout=20)[0].split()[-1])
    finally:
        on_board(ctopo, "from manage import capture_api as c; c.capture_stop()")
    assert written > 24
    got = Counter(five_tuples(read_pcap(out)))
    pings = Counter(f for f in lan_seen + srv_seen if f[2] == 1 and SRV in f[:2])
    assert sum(pings.values()) == 12 and got == pings, (got, pings)  # 3 each way on each side
    assert {f[0] for f in got} == {LAN2, WAN, SRV}


def test_capture_leaves_the_board_as_it_was(ctopo):
    status = ctopo.eval_on_board("from manage import capture_api as c; print(repr(c.capture_status()))")
    assert status["on"] is False
    assert ctopo.ping(ctopo.lan1, SRV)
    assert "Traceback" not in ctopo.console.text()
    counters = ctopo.eval_on_board("from manage import api; print(repr(api.status()['counters']))")
    assert counters["errors"] == 0
