"""The firmware on the virtual board (tools/topology.py), end to end, with real traffic
between Linux network namespaces. Needs root and `ip netns`; skipped otherwise.
The board's ARP and framing alone: test_vboard_frames.py.

Every test runs on both boards: "vboard" (the firmware's own ARP and framing on raw
sockets) and "lwip_host" (Debian's lwIP owns the router's addresses, natlink hands the
firmware its packets: boards/lwip_host), skipped with the reason when its host program
is not built."""
import ast
import hashlib
import json
import os
import random
import subprocess
import sys
import time

import pytest

import topology
from hostenv import PEERS
from netns import background, capture, topology as built_topology
from topology import FORWARD_TCP, FORWARD_UDP, LAN1, LAN2, LAN_GW, SRV, WAN


@pytest.fixture(scope="module", params=topology.BOARD_NAMES)
def vtopo(request):
    with built_topology("e", board=request.param) as topo:
        yield topo


# ---- end to end ----------------------------------------------------------------

def test_ping_server_and_both_router_addresses(vtopo):
    for dst in (SRV, LAN_GW, WAN):
        assert vtopo.ping(vtopo.lan1, dst, count=2), "no answer from %s" % dst


def test_tcp_download_of_8_mb_arrives_intact(vtopo):
    www = vtopo.workdir / "www"
    www.mkdir(exist_ok=True)
    data = os.urandom(8 << 20)
    (www / "blob").write_bytes(data)
    with vtopo.http_server(www, 8000):
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
    assert vtopo.traceroute(vtopo.lan1, SRV) == [LAN_GW, topology.ISP_WAN, SRV]


def _two_clients_same_source_port(topo, proto, port, sport):
    """lan1 and lan2 both talk from `sport` to SRV:port, their flows overlapping in time.
    Returns the four replies."""
    clients = [topo.peer_bg(ns, "client.py", proto, SRV, port, sport, 2, "first", "-", "second",
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
            background(vtopo.peer_bg(vtopo.lan1, "client.py", "tcp", SRV, 7008, 41234, 2,
                                       "hi", "-", "bye", stdin=subprocess.PIPE)) as held:
        assert held.stdout.readline().startswith("srv hi")  # a TCP flow, open meanwhile
        assert vtopo.talk(vtopo.lan1, "udp", SRV, 7009, ["hi"], sport=41235)[0].startswith("srv hi")
        assert vtopo.talk(vtopo.srv, "tcp", WAN, FORWARD_TCP, ["hi"])[0].startswith("lan1 hi")
        first = vtopo.exec_on_board("from manage.runner import runner; print(runner.router.counters())")
        time.sleep(0.5)
        out = vtopo.exec_on_board("from manage.runner import runner\nimport board\nprint(runner.router.counters())\n"
                                  "for f in runner.router.flows(): print(f)\n"
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


HOSTILE_COUNT = 40  # frames of each kind (hostile.py): ~500 a side, sent in about a second


def _flow_port(flows, start):
    """The translated port or id of the flow whose line starts with `start`."""
    for line in flows:
        if line.startswith(start):
            return int(line.split(" as ")[1].split()[0].split(":")[1])
    raise AssertionError("no flow %r in %s" % (start, flows))


def test_hostile_frames_from_both_sides_reach_nobody(vtopo):
    """Floods of malformed and hostile frames at layer 2 from the WAN (at the board's WAN
    MAC) and from a LAN host: nothing reaches lan1 or the WAN while live flows exist; the
    counters account for every kind; the board still routes afterwards."""
    with background(vtopo.serve(vtopo.srv, "udp", 7, "srv")):
        assert vtopo.talk(vtopo.lan1, "udp", SRV, 7, ["live"], sport=40007)[0].startswith("srv")
        assert vtopo.ping(vtopo.lan1, SRV)
        flows = vtopo.eval_on_board("from manage.runner import runner; print(runner.router.flows())")
        params = {"count": HOSTILE_COUNT, "wan": WAN, "wan_net": ["198.51.100.0", "198.51.100.255"],
                  "lan": LAN_GW, "lan_net": ["192.168.4.0", "192.168.4.255"], "inside": LAN1,
                  "remote": SRV, "forward": FORWARD_TCP,
                  "live_udp": [40007, _flow_port(flows, "udp %s:40007" % LAN1)],
                  "live_id": _flow_port(flows, "icmp %s:" % LAN1)}
        before = vtopo.eval_on_board("from manage.runner import runner; print(runner.router.counters())")
        links_before = vtopo.eval_on_board("import board; print(board.counters())")
        host_before = vtopo.lwip_host_state() if vtopo.board == "lwip_host" else None
        with capture(vtopo, vtopo.lan1, "eth0", 20) as at_lan1:
            sent_wan = json.loads(vtopo.peer(vtopo.isp, "hostile.py", "wan", "rtr",
                                             vtopo.mac(vtopo.rtr, "wan"), json.dumps(params),
                                             timeout=60).stdout)
            time.sleep(0.5)
        with capture(vtopo, vtopo.isp, "rtr", 20) as at_wan:
            sent_lan = json.loads(vtopo.peer(vtopo.lan2, "hostile.py", "lan", "eth0",
                                             vtopo.mac(vtopo.rtr, "lan"), json.dumps(params),
                                             timeout=60).stdout)
            time.sleep(0.5)
        after = vtopo.eval_on_board("from manage.runner import runner; print(runner.router.counters())")
        links_after = vtopo.eval_on_board("import board; print(board.counters())")
        host_after = vtopo.lwip_host_state() if vtopo.board == "lwip_host" else None
        # Still routing: the live flow answers, a new connection goes through.
        assert vtopo.talk(vtopo.lan1, "udp", SRV, 7, ["again"], sport=40007)[0].startswith("srv")
    assert vtopo.ping(vtopo.lan1, SRV)
    assert at_lan1 == [], at_lan1
    assert at_wan == [], at_wan
    d = {k: after[k] - before[k] for k in after}
    n = HOSTILE_COUNT
    assert sum(sent_wan.values()) == 13 * n and sum(sent_lan.values()) == 10 * n
    # Every frame reached the board exactly as sent (the bridge between lan2 and the
    # board has its netfilter off) and was dropped for what it is.
    ignored = sum(links_after[k]["rx_ignored"] - links_before[k]["rx_ignored"] for k in ("lan", "wan"))
    assert ignored == 0, links_after
    if vtopo.board == "lwip_host":
        # lwIP sees every frame first and natlink claims only what the router must see
        # (boards/natlink/README.md); lwIP keeps the rest, so the router never counts it:
        # frames that are not valid IPv4 headers (garbage, bad IP checksums, packets cut
        # short) and ICMP errors quoting garbage, which lwIP drops; the echo and timestamp
        # requests to the WAN address (lwIP answers the echoes, as on the ESP32); UDP to
        # 255.255.255.255, and ICMP errors sent to the WAN subnet's broadcast address.
        to_bcast = _sent_to(params, "wan", "error_to_elsewhere", params["wan_net"][1])
        kept_wan, kept_lan = 5 * n + to_bcast, 3 * n
        # Every frame natlink claimed reached the router, and only those.
        claimed = {k: host_after[k]["claimed"] - host_before[k]["claimed"] for k in ("lan", "wan")}
        assert claimed == {"wan": 13 * n - kept_wan, "lan": 10 * n - kept_lan}, (claimed, host_after)
        assert (d["rx_wan"], d["rx_lan"]) == (claimed["wan"], claimed["lan"]), (d, host_after)
        malformed, icmp_error, lan_local, to_router = 2 * n, 2 * n - to_bcast, 0, 0
    else:
        malformed, icmp_error, lan_local, to_router = 8 * n, 2 * n, n, n
    assert d["dropped_malformed"] == malformed, d   # garbage, checksums, UDP lengths, cut, quotes
    assert d["dropped_source_route"] == 2 * n, d
    assert d["dropped_martian"] == 2 * n, d
    assert d["dropped_bad_source"] == 2 * n, d  # a LAN source from the WAN, off-subnet on the LAN
    assert d["dropped_port_zero"] == 2 * n, d
    assert d["dropped_icmp_error"] == icmp_error, d  # errors about a live flow sent elsewhere
    assert d["dropped_unsolicited"] == n, d  # straight to a LAN host
    # Later fragments with no first fragment: held for it (RFC 4787 REQ-14), never sent
    # on; their time runs out (fragments.py) while the test goes on or after it.
    assert d["frag_held"] == n and d["frag_released"] == d["frag_rewritten"] == 0, d
    assert d["dropped_cannot_nat"] == n and d["dropped_lan_local"] == lan_local, d
    # Requests carrying the live ping's id: answered by the router (echo) or dropped.
    assert d["echo_replies"] + d["dropped_to_router"] == to_router, d
    assert d["echo_replies"] > 0 or not to_router, d
    assert d["translated_in"] == d["translated_out"] == 0 and d["errors"] == 0, d


def _sent_to(params, side, kind, dst):
    """How many frames of one kind hostile.py sent to dst: it builds them from
    random.Random(7) in a fixed order, so its generator replayed gives the same bytes."""
    sys.path.insert(0, str(PEERS))
    try:
        import hostile
    finally:
        sys.path.pop(0)
    r = random.Random(7)
    want = bytes(int(x) for x in dst.split("."))
    count = 0
    for name, build in (hostile.kinds_wan if side == "wan" else hostile.kinds_lan)(params):
        for _ in range(params["count"]):
            frame = build(r)
            count += name == kind and frame[16:20] == want
    return count


def test_board_logged_no_exception(vtopo):
    # last in the module: whatever the traffic above did, the firmware survived it
    assert vtopo.ping(vtopo.lan1, LAN_GW)
    console = vtopo.console.text()
    assert "natrouter: LAN 192.168.4.1" in console
    assert "Traceback" not in console and "Unhandled exception" not in console, console
    counters = ast.literal_eval(vtopo.exec_on_board(
        "from manage.runner import runner; print(runner.router.counters())").strip())
    assert counters["errors"] == 0
