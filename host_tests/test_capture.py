"""Packet capture (firmware/filter/capture.py, issue 21) on CPython: the router between
MemoryLinks with its links tapped; the ring read out as a pcap file that scapy's rdpcap
reads back, both versions of a translated packet, the filters, a full ring dropping the
newest, the taps gone when it stops; the management API and nr. With real traffic, and
tcpdump reading the file: test_vboard_capture.py."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.utils import rdpcap

import nr
from filter import capture, captureconfig
from manage import api, capture_api
from test_firewall import board  # noqa: F401  (the running router's fixture)
from test_manage import exchange
from runtimes import run_unix, unix_binary
from test_router import HOST1, HOST2, SERVER, WAN_ADDR, Net


def started(net, size=4096, snap=96, side="both", host=None, proto=None, port=None):
    cap = capture.Capture(size, snap)
    cap.start(capture.check(side, host, proto, port))
    capture.tap(net.r.shared, net.r.datapath, cap)
    return cap


def packets(data, tmp_path):
    path = tmp_path / "out.pcap"
    path.write_bytes(data)
    return rdpcap(str(path))


def test_both_versions_of_a_translated_packet_in_a_pcap_file(tmp_path):
    net = Net()
    cap = started(net)
    out = net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(sport=40000, dport=80, flags="S"))[1]
    xport = out[0][TCP].sport
    net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=80, dport=xport, flags="SA")
                 / (b"x" * 200))
    got = packets(capture.file_header(cap.snap) + cap.read(1 << 20), tmp_path)
    seen = [(p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport) for p in got]
    assert seen == [(HOST1, SERVER, 40000, 80), (WAN_ADDR, SERVER, xport, 80),     # out: pre, post
                    (SERVER, WAN_ADDR, 80, xport), (SERVER, HOST1, 80, 40000)]     # in: pre, post
    assert len(bytes(got[2])) == 96 and got[2].wirelen == 240     # cut at the snap length
    times = [float(p.time) for p in got]
    assert times == sorted(times) and times[-1] - times[0] < 1
    assert cap.status()["packets"] == 4 and cap.read(1 << 20) == b""


@pytest.mark.parametrize("filters,want", [
    ({"side": "lan"}, [(HOST1, SERVER), (SERVER, HOST2)]),
    ({"side": "wan"}, [(WAN_ADDR, SERVER), (SERVER, WAN_ADDR)]),
    ({"host": HOST2}, [(SERVER, HOST2)]),
    ({"proto": "udp"}, [(SERVER, WAN_ADDR), (SERVER, HOST2)]),
    ({"port": 53}, [(SERVER, WAN_ADDR), (SERVER, HOST2)]),
])
def test_filters_by_side_host_proto_and_port(filters, want, tmp_path):
    net = Net()   # udp 6000 -> HOST2:7000
    cap = started(net, **filters)
    net.from_lan(IP(src=HOST1, dst=SERVER) / ICMP(type=8, id=5))
    net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / UDP(sport=53, dport=6000) / b"q")
    got = packets(capture.file_header(cap.snap) + cap.read(1 << 20), tmp_path)
    assert [(p[IP].src, p[IP].dst) for p in got] == want


def test_timestamps_run_on_across_seconds(monkeypatch, tmp_path):
    now = [1000]
    monkeypatch.setattr(capture, "ticks_ms", lambda: now[0])
    net = Net()
    cap = started(net, side="lan")
    for step in (0, 999, 1, 1500, 70000):   # ms: up to 999 within a second, then on
        now[0] += step
        net.from_lan(IP(src=HOST1, dst=SERVER) / UDP(sport=5000, dport=53))
    got = packets(capture.file_header(cap.snap) + cap.read(1 << 20), tmp_path)
    times = [round(float(p.time) - float(got[0].time), 3) for p in got]
    assert times == [0, 0.999, 1.0, 2.5, 72.5]


def test_a_full_ring_keeps_the_oldest_and_counts_the_newest_lost(tmp_path):
    net = Net()
    cap = started(net, size=2048, snap=64, side="lan")
    for i in range(40):
        net.from_lan(IP(src=HOST1, dst=SERVER) / UDP(sport=5000 + i, dport=53) / (b"z" * 100))
    s = cap.status()
    assert s["packets"] == 2048 // (16 + 64) and s["lost"] == 40 - s["packets"]
    got = packets(capture.file_header(cap.snap) + cap.read(1 << 20), tmp_path)
    assert [p[UDP].sport for p in got] == list(range(5000, 5000 + s["packets"]))
    # read, the room is back: the ring wraps around its end
    for i in range(5):
        net.from_lan(IP(src=HOST1, dst=SERVER) / UDP(sport=6000 + i, dport=53) / b"w")
    got = packets(capture.file_header(cap.snap) + cap.read(1 << 20), tmp_path)
    assert [p[UDP].sport for p in got] == list(range(6000, 6005))


def test_stopped_the_links_are_untapped():
    net = Net()
    recv = net.r.datapath.lan[0]
    started(net)
    assert net.r.datapath.lan[0] is not recv
    capture.untap(net.r.shared, net.r.datapath)
    assert net.r.datapath.lan[0] is recv and net.r.shared.sends[1] == net.wan.send


def test_bad_filters_and_config_name_the_field():
    for args, field in ((("up", None, None, None), "side"), (("lan", "1.2.3", None, None), "1.2.3"),
                        (("lan", None, "sctp", None), "sctp"), (("lan", None, None, 0), "port")):
        with pytest.raises(ValueError, match=field):
            capture.check(*args)
    problems = []

    class P(list):
        def add(self, wrong, instead):
            problems.append(wrong)
    assert captureconfig.validate({"size": 10, "snap": 128}, captureconfig.defaults(),
                                  P())["size"] == 16384
    assert problems == ["capture.size: 10 must be an integer 2048..1048576"]


def test_capture_through_the_api_and_nr(board, capsys, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="side"):
        capture_api.capture_start(side="up")
    assert capture_api.capture_status()["on"] is False
    api.change({"capture.port": 0})   # no TCP stream here: MemoryLinks, no IP stack
    nr.capture(host=HOST1)
    exchange(board.lan, IP(src=HOST1, dst=SERVER) / ICMP(type=8, id=77))
    nr.capture_stop()
    got = packets(capture_api.capture_header() + capture_api.capture_read(), tmp_path)
    # the host's own packet; its translation (from the WAN address) is not the host's
    assert [(p[IP].src, p[IP].dst) for p in got] == [(HOST1, SERVER)]
    out = capsys.readouterr().out
    assert "capture on: 0 packets" in out and "capture off: 1 packets, 0 lost" in out, out


VIPER_TWINS = r"""
from filter import capture, captureconfig
from nat import core
assert core.NAME == "viper" and capture.put32 is not capture.put32_py
buf = bytearray(list(range(256)) * 6)
for size in (20, 37, 64, 1500, 2048):
    for at in (0, 3, size - 5, size - 1):
        for n in (0, 1, 19, 40, 1500):
            for hi, lo in ((0, 0), (0x1234, 0xABCD), (0xFFFF, 0xFFFF), (0x0F, 0x4240)):
                a, b = bytearray(size), bytearray(size)
                ra = capture.put32(a, at, hi, lo)
                rb = capture.put32_py(b, at, hi, lo)
                ra = capture.copy(a, ra, buf, min(n, size))
                rb = capture.copy_py(b, rb, buf, min(n, size))
                assert (ra, a) == (rb, b), (size, at, n, hi, lo)
print("TWINS same")
"""


@pytest.mark.skipif(unix_binary() is None, reason="the MicroPython unix port is not installed")
def test_the_viper_writes_match_their_pure_twins():
    assert "TWINS same" in run_unix(VIPER_TWINS, timeout=120)
