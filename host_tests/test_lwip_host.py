"""The lwIP host board's own parts (boards/lwip_host): its rules on the configuration and
what natlink claims (CPython), the host program's command line, its links on the
MicroPython unix port against a stand-in host (no root needed), and the host program's
start and SIGTERM in a namespace. End to end with real traffic: test_vboard_e2e.py."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from manage import config
from hostenv import BOARDS, micropython_binary
from manage.validation import Problems

LWIP_HOST = BOARDS / "lwip_host"
sys.path[:0] = [str(LWIP_HOST), str(BOARDS / "natlink")]
import lwiprules  # noqa: E402
del sys.path[:2]

DGRAM = 1502


def _cfg(**raw):
    base = {"lan": {"addr": "192.168.4.1", "mask": "255.255.255.0"},
            "wan": {"addr": "198.51.100.2", "mask": "255.255.255.0", "gateway": "198.51.100.1"}}
    cfg, problems = config.validate(dict(base, **raw))
    assert problems == []
    checked = Problems()
    lwiprules.check(cfg, checked)
    return cfg, checked


def _fwd(proto, port):
    return {"proto": proto, "port": port, "to": "192.168.4.2", "to_port": 80}


def test_claims_cover_low_ports_the_nat_range_and_forwards_but_not_udp_68():
    cfg, problems = _cfg(ports={"first": 20000, "last": 29999},
                         forwards=[_fwd("tcp", 8080), _fwd("udp", 5353), _fwd("tcp", 25000)])
    assert problems == []
    assert lwiprules.claims(cfg) == {"tcp": [(0, 1023), (8080, 8080), (20000, 29999)],
                                     "udp": [(0, 67), (69, 1023), (5353, 5353), (20000, 29999)],
                                     "icmp": [(0, 0xFFFF)], "dhcp": True}
    # the same as the host program's control request (board.py sends it)
    assert lwiprules.claims_request(cfg) == ("claims tcp=0-1023,8080-8080,20000-29999 "
                                             "udp=0-67,69-1023,5353-5353,20000-29999 "
                                             "icmp=0-65535 dhcp=1")
    cfg, _ = _cfg(ports={"first": 1024, "last": 0xBFFF}, forwards=[_fwd("tcp", 8080)])
    assert lwiprules.claims(cfg)["tcp"] == [(0, 0xBFFF)]  # adjacent ranges joined


def test_rules_keep_lwips_ports_and_natlinks_limits():
    cfg, problems = _cfg(ports={"first": 1024, "last": 65535}, mtu=9000,
                         forwards=[_fwd("tcp", 50000), _fwd("udp", 68), _fwd("udp", 67)])
    assert cfg["ports"] == {"first": 1024, "last": 0xBFFF}
    assert [(f["proto"], f["port"]) for f in cfg["forwards"]] == [("udp", 67)]
    assert cfg["mtu"] == cfg["lan"]["mtu"] == cfg["wan"]["mtu"] == 1500
    assert len(problems) == 4 and any("ports.last: 65535" in p for p in problems), problems
    # a port forward per range, past natlink's 8 ranges: the ninth is left out
    cfg, problems = _cfg(ports={"first": 40000, "last": 40999},
                         forwards=[_fwd("tcp", 2000 + 2 * i) for i in range(8)])
    assert len(lwiprules.claims(cfg)["tcp"]) == 8 and len(cfg["forwards"]) == 6
    assert len(problems) == 2 and "at most 8 port ranges" in problems[0], problems


def test_hostargs_reads_natrouter_json_as_the_firmware_does(tmp_path):
    path = tmp_path / "natrouter.json"
    path.write_text(json.dumps({"wan": {"addr": "198.51.100.2", "mask": "255.255.255.0",
                                        "gateway": "198.51.100.1", "mtu": 1280},
                                "forwards": [_fwd("udp", 5353)]}))
    proc = subprocess.run([sys.executable, LWIP_HOST / "host" / "hostargs.py", path, "/x",
                           "tlan,02:00:00:00:00:01", "twan,02:00:00:00:00:02"],
                          capture_output=True, text=True, check=True)
    args = json.loads(proc.stdout)
    opt = dict(zip(args[::2], args[1::2]))
    assert opt["--lan"] == "tlan,02:00:00:00:00:01,192.168.4.1,255.255.255.0"
    assert opt["--wan"] == "twan,02:00:00:00:00:02,198.51.100.2,255.255.255.0,198.51.100.1"
    assert (opt["--lan-mtu"], opt["--wan-mtu"]) == ("1500", "1280")
    # the board's default NAT range stops below lwIP's ports
    assert opt["--tcp"] == "0-49151" and opt["--udp"] == "0-67,69-49151"
    assert opt["--icmp"] == "0-65535" and opt["--dir"] == "/x"
    assert args[-1] == "--dhcp"   # the firmware serves DHCP: natlink claims the requests


# ---- the links on the unix port, against a stand-in for the host program ----------

LINKS_SCRIPT = """
import micropython, board
from manage import config
cfg = config.validate(dict(config.defaults(), wan=dict(config.defaults()["wan"], mtu=1400)))[0]
lan, wan = board.open_links(cfg)
buf = board.packet_buffer()
print("mtu", lan.mtu, wan.mtu, len(buf))
def pump():
    got = 0
    micropython.heap_lock()
    try:
        for _ in range(3):
            n = lan.recv_into(buf)
            if n:
                wan.send(buf, n)
                got += 1
    finally:
        micropython.heap_unlock()
    return got
total = 0
for _ in range(100):  # until the stand-in has sent everything (at most 10 s)
    board.wait(100)
    total += pump()
    if total >= 2 and lan.rx_ignored:
        break
print("forwarded", total, lan.stats(), wan.stats())
"""


def _addr(path):
    return str(path)


def test_links_move_one_packet_per_datagram_without_allocating(tmp_path):
    if micropython_binary() is None:
        pytest.skip("the MicroPython unix port is not installed (make setup)")
    host = {}
    for name in ("lan", "wan"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(tmp_path / ("%s.host" % name)))
        s.settimeout(10)
        host[name] = s
    packets = [bytes([0x45]) + bytes(19) + bytes([i]) * (40 + i) for i in range(2)]

    failed = []

    def stand_in():  # what lwip_host.c does: hello first, then fixed-size datagrams
        try:
            greet()
        except Exception as e:  # reported by the test's own thread, below
            failed.append(e)

    def greet():
        hello, peer = host["lan"].recvfrom(64)
        assert hello == b"hello %d" % DGRAM and peer.endswith("lan.upy")
        assert host["wan"].recvfrom(64)[0] == b"hello %d" % DGRAM
        for p in packets:
            d = bytearray(DGRAM)
            d[:len(p)] = p
            d[-2:] = len(p).to_bytes(2, "big")
            host["lan"].sendto(d, peer)
        host["lan"].sendto(b"short", peer)  # not a host datagram: ignored, counted

    t = threading.Thread(target=stand_in, daemon=True)
    t.start()
    env = dict(os.environ, LWIP_HOST_DIR=str(tmp_path),
               MICROPYPATH="%s:%s:%s" % (LWIP_HOST, BOARDS / "natlink", BOARDS.parent / "firmware"))
    time.sleep(0.2)
    out = subprocess.run([micropython_binary(), "-c", LINKS_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    t.join(5)
    assert not failed, failed
    assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert "mtu 1500 1400 %d" % DGRAM in out.stdout, out.stdout
    assert "forwarded 2 " in out.stdout and "'rx_ignored': 1" in out.stdout, out.stdout
    sent = [host["wan"].recv(4096) for _ in packets]
    assert sent == packets  # one datagram per packet, exactly the packet
    for s in host.values():
        s.close()


# ---- the host program in a namespace -----------------------------------------------

def test_host_program_starts_and_stops_cleanly_on_sigterm():
    from netns import topology
    with topology("h", start=False, board="lwip_host") as topo:
        topo.start_lwip_host()
        state = topo.lwip_host_state()
        assert state is not None and state["lan"]["hellos"] == 0, state
        proc = topo.host_proc
        os.kill(proc.pid, signal.SIGTERM)  # through `ip netns exec`: it execs the program
        assert proc.wait(10) == 0
        log = (topo.workdir / "lwip_host.log").read_text()
        assert "lwip_host: stopping" in log, log
        assert not any(topo.sockets.iterdir()), list(topo.sockets.iterdir())
        topo.stop_lwip_host()
        links = topo.run(topo.rtr, "ip", "-o", "link").stdout
        assert "tlan" not in links and "twan" not in links  # the veths are plain again
        qdiscs = topo.run(topo.rtr, "tc", "qdisc", "show").stdout
        assert "ingress" not in qdiscs, qdiscs


# ---- the firmware's own DHCP and claims that follow it, end to end ------------------

@pytest.fixture(scope="module")
def ltopo():
    """The lwIP host board with a NAT range that leaves room for forwards outside it."""
    import topology as tp
    from netns import topology
    with topology("l", start=False, board="lwip_host") as topo:
        topo.install_flash(dict(tp.LWIP_CONFIG, ports={"first": 20000, "last": 29999}))
        topo.start_board()
        yield topo


def test_a_lan_client_gets_its_lease_from_the_firmware_through_natlink_and_lwip(ltopo):
    from test_vboard_manage import lease_of, readdress_lan2, udhcpc
    from topology import LAN_GW, SRV
    before = ltopo.lwip_host_state()["lan"]["claimed"]
    ltopo.run(ltopo.lan2, "ip", "addr", "flush", "dev", "eth0")
    try:
        lease = lease_of(udhcpc(ltopo, ltopo.lan2)) or {}
        want = {"mask": "24", "router": LAN_GW, "dns": "9.9.9.9", "serverid": LAN_GW}
        assert {k: lease.get(k) for k in want} == want, lease
        ip = lease["ip"]
        assert ip.startswith("192.168.4.") and 100 <= int(ip.split(".")[3]) <= 199
        assert ltopo.ping(ltopo.lan2, SRV)   # configured by the lease alone, through the NAT
        board = ltopo.eval_on_board("from manage import api; print(repr((api.status()['dhcp'], "
                                    "[x['addr'] for x in api.leases() if x['state'] == 'bound'])))")
        assert board[0]["offers"] >= 1 and board[0]["acks"] >= 1 and board[1] == [ip]
        # the DISCOVER and REQUEST broadcasts: claimed by natlink, not answered by lwIP
        assert ltopo.lwip_host_state()["lan"]["claimed"] - before >= 2
    finally:
        readdress_lan2(ltopo)


def test_a_port_forward_added_at_the_repl_is_claimed_without_a_restart(ltopo):
    from netns import background
    from topology import LAN1, SRV, WAN
    port = 9090   # outside the NAT range and the forwards: lwIP's until forwarded
    with background(ltopo.serve(ltopo.lan1, "tcp", 81, "lan1")):
        assert ltopo.talk(ltopo.srv, "tcp", WAN, port, ["x"], timeout=1) == ["REFUSED"]  # lwIP's RST
        pid = ltopo.board_proc.pid
        out = ltopo.exec_on_board("import nr; nr.forward('tcp', %d, '%s', 81)" % (port, LAN1))
        assert "in force: forwards" in out, out
        reply = ltopo.talk(ltopo.srv, "tcp", WAN, port, ["hello"])
        assert reply[0].startswith("lan1 hello from %s:" % SRV), reply
        out = ltopo.exec_on_board("import nr; nr.unforward('tcp', %d)" % port)
        assert "in force: forwards" in out, out
        assert ltopo.talk(ltopo.srv, "tcp", WAN, port, ["x"], timeout=1) == ["REFUSED"]
        assert ltopo.board_proc.pid == pid   # no restart: the same firmware process
    log = (ltopo.workdir / "lwip_host.log").read_text()
    assert "natlink claims tcp=0-1023,8080-8080,9090-9090,20000-29999" in log, log[-2000:]


def test_the_lwip_host_board_logged_no_exception(ltopo):
    assert "Traceback" not in ltopo.console.text()
    status = ltopo.eval_on_board("from manage import api; print(repr(api.status()))")
    assert status["counters"]["errors"] == 0 and status["last_error"] is None
