"""The firmware on the virtual board (tools/vboard.py), end to end, with real traffic
between Linux network namespaces. Needs root and `ip netns`; skipped otherwise.

The ARP tests at the end need neither: they drive boards/vboard/arp.py directly
(scapy checks the frames) and check on the unix port that a lookup allocates nothing.
"""
import ast
import hashlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vboard
from netns import background, capture, vtopo, wait_port  # noqa: F401 (vtopo: fixture)
from vboard import FORWARD_TCP, FORWARD_UDP, LAN1, LAN2, LAN_GW, SRV, WAN

BOARD_DIR = Path(vboard.BOARD)


def _load_arp():
    # by path: putting boards/vboard on sys.path would shadow other tests' `board`
    spec = importlib.util.spec_from_file_location("vboard_arp", BOARD_DIR / "arp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arp = _load_arp()


# ---- end to end ----------------------------------------------------------------

def test_ping_server_and_both_router_addresses(vtopo):
    for dst in (SRV, LAN_GW, WAN):
        assert vtopo.ping(vtopo.lan1, dst, count=2), "no answer from %s" % dst


def test_tcp_download_of_8_mb_arrives_intact(vtopo):
    www = vtopo.workdir / "www"
    www.mkdir(exist_ok=True)
    data = os.urandom(8 << 20)
    (www / "blob").write_bytes(data)
    web = vtopo.popen(vtopo.srv, sys.executable, "-m", "http.server", "-d", www, "-b", SRV, "8000")
    with background(web):
        wait_port(vtopo, vtopo.srv, SRV, 8000)
        size, digest = vtopo.fetch(vtopo.lan1, "http://%s:8000/blob" % SRV)
    assert size == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


def test_udp_answer_and_closed_port_refused(vtopo):
    with background(vtopo.serve(vtopo.srv, "udp", 7, "srv")):
        reply = vtopo.talk(vtopo.lan1, "udp", SRV, 7, ["ping"])
    assert len(reply) == 1 and reply[0].startswith("srv ping from %s:" % WAN), reply
    # the ICMP port unreachable from the server is translated back to the client
    assert vtopo.talk(vtopo.lan1, "udp", SRV, 9, ["anyone?"]) == ["REFUSED"]


def test_traceroute_shows_router_isp_server(vtopo):
    assert vtopo.traceroute(vtopo.lan1, SRV) == [LAN_GW, vboard.ISP_WAN, SRV]


def _two_clients_same_source_port(topo, proto, port, sport):
    """lan1 and lan2 both talk from `sport` to SRV:port, their flows overlapping in time.
    Returns the four replies."""
    clients = [topo.python_bg(ns, vboard.CLIENT, proto, SRV, port, sport, 2, "first", "-", "second",
                              stdin=subprocess.PIPE)
               for ns in (topo.lan1, topo.lan2)]
    replies = []
    with background(clients[0]), background(clients[1]):
        for c in clients:
            replies.append(c.stdout.readline().strip())
        for c in clients:
            c.stdin.write("\n")
            c.stdin.flush()
            replies.append(c.stdout.readline().strip())
    return replies


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_two_lan_hosts_same_source_port_same_server_port(vtopo, proto):
    port = 7 if proto == "udp" else 7007
    with background(vtopo.serve(vtopo.srv, proto, port, "srv")):
        replies = _two_clients_same_source_port(vtopo, proto, port, 40123)
    assert all(r.startswith("srv ") for r in replies), replies
    # "srv first from 198.51.100.2:P": both from the WAN address, on different ports,
    # each keeping its own port for its second message
    seen = [r.split()[-1] for r in replies]
    assert all(s.startswith(WAN + ":") for s in seen), replies
    first1, first2, second1, second2 = seen
    assert first1 != first2
    assert (second1, second2) == (first1, first2)


def test_port_forwards_reach_lan1_and_keep_the_client_address(vtopo):
    with background(vtopo.serve(vtopo.lan1, "tcp", 80, "lan1")), \
            background(vtopo.serve(vtopo.lan1, "udp", 5353, "lan1")):
        tcp = vtopo.talk(vtopo.srv, "tcp", WAN, FORWARD_TCP, ["hello"])
        udp = vtopo.talk(vtopo.srv, "udp", WAN, FORWARD_UDP, ["hello"])
    assert len(tcp) == 1 and tcp[0].startswith("lan1 hello from %s:" % SRV), tcp
    assert len(udp) == 1 and udp[0].startswith("lan1 hello from %s:" % SRV), udp


def test_unmapped_wan_ports_get_no_answer(vtopo):
    with capture(vtopo, vtopo.srv, "eth0", 6) as frames:
        tcp = vtopo.talk(vtopo.srv, "tcp", WAN, 9999, ["x"], timeout=2)
        udp = vtopo.talk(vtopo.srv, "udp", WAN, 9998, ["x"], timeout=0.5)
    assert tcp == ["TIMEOUT"]  # not REFUSED: no RST
    assert udp == ["TIMEOUT"]  # not REFUSED: no ICMP port unreachable
    asked = [f for f in frames if f[1] == WAN and f[4] in (9999, 9998)]
    answers = [f for f in frames if f[0] == WAN and (f[2] == 1 or f[3] in (9999, 9998))]
    assert asked, "the capture saw none of the probes: it proves nothing"
    assert answers == []


def test_board_state_over_mpremote_while_traffic_flows(vtopo):
    with background(vtopo.serve(vtopo.srv, "tcp", 7008, "srv")), \
            background(vtopo.serve(vtopo.srv, "udp", 7009, "srv")), \
            background(vtopo.serve(vtopo.lan1, "tcp", 80, "lan1")), \
            background(vtopo.popen(vtopo.lan2, "ping", "-n", "-c", "60", "-i", "0.1", SRV)) as ping, \
            background(vtopo.python_bg(vtopo.lan1, vboard.CLIENT, "tcp", SRV, 7008, 41234, 2,
                                       "hi", "-", "bye", stdin=subprocess.PIPE)) as held:
        assert held.stdout.readline().startswith("srv hi")  # a TCP flow, open meanwhile
        assert vtopo.talk(vtopo.lan1, "udp", SRV, 7009, ["hi"], sport=41235)[0].startswith("srv hi")
        assert vtopo.talk(vtopo.srv, "tcp", WAN, FORWARD_TCP, ["hi"])[0].startswith("lan1 hi")
        first = vtopo.exec_on_board("import router; print(router.running.counters())")
        time.sleep(0.5)
        out = vtopo.exec_on_board("import router, board\nprint(router.running.counters())\n"
                                  "for f in router.running.flows(): print(f)\n"
                                  "print(board.counters())")
        assert ping.poll() is None, "the traffic ended before the board was read"
    lines = out.splitlines()
    before, after = ast.literal_eval(first.strip()), ast.literal_eval(lines[0])
    assert after["rx_lan"] > before["rx_lan"] and after["translated_in"] > before["translated_in"]
    assert after["errors"] == 0 and after["forwards_hit"] >= 1
    flows = lines[1:-1]
    expected = ["icmp %s:" % LAN2,                                      # the ping
                "tcp %s:41234 -> %s:7008 as %s:" % (LAN1, SRV, WAN),    # the open connection
                "udp %s:41235 -> %s:7009 as %s:" % (LAN1, SRV, WAN),    # the UDP exchange
                "tcp %s:" % SRV]                                        # the port forward
    for start in expected:
        assert any(f.startswith(start) for f in flows), (start, flows)
    assert any(f.startswith("tcp %s:" % SRV) and "-> %s:%d as" % (WAN, FORWARD_TCP) in f
               and f.split(" as ")[1].split()[2] == "%s:80" % LAN1 for f in flows), flows
    links = ast.literal_eval(lines[-1])
    assert links["lan"]["rx"] >= after["rx_lan"] and links["wan"]["tx"] >= after["translated_out"]


def test_board_logged_no_exception(vtopo):
    # last in the module: whatever the traffic above did, the firmware survived it
    assert vtopo.ping(vtopo.lan1, LAN_GW)
    console = vtopo.console.text()
    assert "natrouter: LAN 192.168.4.1" in console
    assert "Traceback" not in console and "Unhandled exception" not in console, console
    counters = ast.literal_eval(vtopo.exec_on_board(
        "import router; print(router.running.counters())").strip())
    assert counters["errors"] == 0


# ---- ARP (boards/vboard/arp.py), no namespaces needed --------------------------

MAC = bytes.fromhex("02000000000a")
IP = bytes([192, 168, 4, 1])
PEER_MAC = bytes.fromhex("02000000000b")
PEER_IP = bytes([192, 168, 4, 2])


class Wire:
    def __init__(self):
        self.frames = []

    def __call__(self, frame, n):
        self.frames.append(bytes(frame[:n]))


def _arp_frame(op, sha, spa, tha, tpa, dst=b"\xff" * 6):
    from scapy.layers.l2 import ARP, Ether
    return bytes(Ether(dst=dst, src=sha, type=0x0806) /
                 ARP(op=op, hwsrc=sha, psrc=".".join(map(str, spa)),
                     hwdst=tha, pdst=".".join(map(str, tpa))))


def _mac_str(b):
    return ":".join("%02x" % x for x in b)


def _new(**kw):
    wire = Wire()
    return arp.Arp(MAC, IP, wire, **kw), wire


def test_arp_answers_requests_for_its_address_only():
    from scapy.layers.l2 import ARP, Ether
    a, wire = _new()
    req = _arp_frame(1, _mac_str(PEER_MAC), PEER_IP, "00:00:00:00:00:00", IP)
    a.input(req, len(req), 0)
    other = _arp_frame(1, _mac_str(PEER_MAC), PEER_IP, "00:00:00:00:00:00", bytes([192, 168, 4, 9]))
    a.input(other, len(other), 0)
    assert len(wire.frames) == 1
    reply = Ether(wire.frames[0])
    assert reply.dst == _mac_str(PEER_MAC) and reply.src == _mac_str(MAC)
    assert reply[ARP].op == 2 and reply[ARP].hwsrc == _mac_str(MAC) and reply[ARP].psrc == "192.168.4.1"
    assert reply[ARP].hwdst == _mac_str(PEER_MAC) and reply[ARP].pdst == "192.168.4.2"
    assert a.lookup(PEER_IP, 0, 0) >= 0  # learnt: the asker is about to talk to us


def test_arp_does_not_learn_strangers_talking_to_others():
    a, wire = _new()
    req = _arp_frame(1, _mac_str(PEER_MAC), PEER_IP, "00:00:00:00:00:00", bytes([192, 168, 4, 9]))
    a.input(req, len(req), 0)
    assert a.lookup(PEER_IP, 0, 0) == -1 and wire.frames == []


def test_arp_holds_frames_until_the_reply_then_sends_them():
    from scapy.layers.l2 import ARP, Ether
    a, wire = _new()
    frame = b"\x00" * 6 + MAC + b"\x08\x00" + b"payload-1"
    assert a.hold(frame, len(frame), PEER_IP, 0, 0)
    assert a.hold(frame[:-1] + b"2", len(frame), PEER_IP, 0, 10)
    assert len(wire.frames) == 1  # one request for both
    req = Ether(wire.frames[0])
    assert req.dst == "ff:ff:ff:ff:ff:ff" and req[ARP].op == 1 and req[ARP].pdst == "192.168.4.2"
    rep = _arp_frame(2, _mac_str(PEER_MAC), PEER_IP, _mac_str(MAC), IP, dst=_mac_str(MAC))
    a.input(rep, len(rep), 20)
    sent = wire.frames[1:]
    assert [f[14:] for f in sent] == [b"payload-1", b"payload-2"]
    assert all(f[:6] == PEER_MAC for f in sent)
    slot = a.lookup(PEER_IP, 0, 30)
    assert slot >= 0 and bytes(a.mac_of(slot)) == PEER_MAC
    assert not a.busy()


def test_arp_retries_once_a_second_then_drops_what_waits():
    a, wire = _new()
    frame = bytes(20)
    a.hold(frame, 20, PEER_IP, 0, 0)
    for t in range(100, 5000, 100):
        a.poll(t)
    assert len(wire.frames) == arp.TRIES  # RFC 1122: at most one per second
    assert a.dropped == 1 and not a.busy()
    assert a.lookup(PEER_IP, 0, 5000) == -1


def test_arp_held_queue_keeps_the_newest_frames():
    a, wire = _new(held=2)
    for i in range(3):
        a.hold(bytes([i]) * 20, 20, PEER_IP, 0, i)
    rep = _arp_frame(2, _mac_str(PEER_MAC), PEER_IP, _mac_str(MAC), IP, dst=_mac_str(MAC))
    a.input(rep, len(rep), 10)
    assert [f[14] for f in wire.frames[1:]] == [1, 2]
    assert a.dropped == 1


def test_arp_entries_refresh_by_unicast_then_expire():
    from scapy.layers.l2 import Ether
    a, wire = _new()
    req = _arp_frame(1, _mac_str(PEER_MAC), PEER_IP, "00:00:00:00:00:00", IP)
    a.input(req, len(req), 0)
    wire.frames.clear()
    assert a.lookup(PEER_IP, 0, arp.REFRESH_MS - 1) >= 0 and wire.frames == []
    assert a.lookup(PEER_IP, 0, arp.REFRESH_MS) >= 0  # still used while asking
    assert len(wire.frames) == 1 and Ether(wire.frames[0]).dst == _mac_str(PEER_MAC)
    assert a.lookup(PEER_IP, 0, arp.EXPIRE_MS) == -1


def test_arp_cache_is_fixed_size_and_forgets_the_oldest():
    a, wire = _new(size=4)
    for i in range(6):
        ip = bytes([192, 168, 4, 10 + i])
        req = _arp_frame(1, "02:00:00:00:01:%02x" % i, ip, "00:00:00:00:00:00", IP)
        a.input(req, len(req), i * 10)
    known = [i for i in range(6) if a.lookup(bytes([192, 168, 4, 10 + i]), 0, 100) >= 0]
    assert known == [2, 3, 4, 5]


ARP_ALLOC = """
import micropython, arp
wire = []
a = arp.Arp(b'\\x02\\x00\\x00\\x00\\x00\\x0a', bytes([192, 168, 4, 1]), lambda f, n: wire.append(n))
req = bytes(b'\\xff' * 6 + b'\\x02\\x00\\x00\\x00\\x00\\x0b' + b'\\x08\\x06\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01'
            + b'\\x02\\x00\\x00\\x00\\x00\\x0b' + bytes([192, 168, 4, 2]) + bytes(6) + bytes([192, 168, 4, 1]))
a.input(req, len(req), 0)
pkt = bytearray(40)
pkt[16:20] = bytes([192, 168, 4, 2])
s = m = None  # globals exist before the lock
micropython.heap_lock()
s = a.lookup(pkt, 16, 5)
m = a.mac_of(s)
micropython.heap_unlock()
print(s, wire, m)
"""


def test_arp_lookup_allocates_nothing_on_the_unix_port():
    from runtimes import run_unix, unix_binary
    if unix_binary() is None:
        pytest.skip("the MicroPython unix port is not installed")
    out = run_unix(ARP_ALLOC, path=[BOARD_DIR])
    assert out.split()[0] == "0" and "[42]" in out
