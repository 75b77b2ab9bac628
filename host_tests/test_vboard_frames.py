"""The virtual board's ARP (boards/vboard/arp.py) and Ethernet framing
(boards/vboard/frames.py), driven directly: scapy checks the frames; on the unix port
the viper framing is compared with its pure-Python twins and checked for allocation.
No namespaces needed."""
import importlib.util

import pytest

from runtimes import ROOT, run_unix, unix_binary

BOARD_DIR = ROOT / "boards" / "vboard"


def _load(name):
    # by path: putting boards/vboard on sys.path would shadow other tests' `board`
    spec = importlib.util.spec_from_file_location("vboard_" + name, BOARD_DIR / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


arp = _load("arp")
frames = _load("frames")


# ---- ARP

MAC = bytes.fromhex("02000000000a")
IP = IP_ = bytes([192, 168, 4, 1])
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
    a, _wire = _new(size=4)
    for i in range(6):
        ip = bytes([192, 168, 4, 10 + i])
        req = _arp_frame(1, "02:00:00:00:01:%02x" % i, ip, "00:00:00:00:00:00", IP)
        a.input(req, len(req), i * 10)
    known = [i for i in range(6) if a.lookup(bytes([192, 168, 4, 10 + i]), 0, 100) >= 0]
    assert known == [2, 3, 4, 5]


# ---- framing

OWN = bytes.fromhex("020000000001")
NET, MASK, GW = bytes([192, 168, 4, 0]), bytes([255, 255, 255, 0]), bytes([192, 168, 4, 254])


def _cache(entries, size=16):
    """ARP arrays with (ip bytes, mac bytes, state) entries in slots 0.."""
    ips, states, macs = bytearray(4 * size), bytearray(size), bytearray(6 * size)
    for s, (ip, mac, state) in enumerate(entries):
        ips[4 * s:4 * s + 4] = ip
        macs[6 * s:6 * s + 6] = mac
        states[s] = state
    return ips, states, macs, bytearray(size)


def _frame(dst):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return bytearray(bytes(Ether(dst="00:00:00:00:00:00", src="00:00:00:00:00:00")
                           / IP(src="192.168.4.2", dst=dst) / UDP() / b"x"))


@pytest.mark.parametrize("dst,gateway,expect_slot,expect_mac", [
    ("192.168.4.7", GW, 1, PEER_MAC),                 # on the link: its own entry
    ("8.8.8.8", GW, 2, bytes.fromhex("02000000000c")),  # off the link: the gateway's
    ("192.168.4.255", GW, frames.HOP_BROADCAST, b"\xff" * 6),
    ("255.255.255.255", GW, frames.HOP_BROADCAST, b"\xff" * 6),
    ("192.168.4.9", GW, frames.HOP_MISS, None),       # not in the cache
    ("192.168.4.8", GW, frames.HOP_MISS, None),       # in the cache, still unanswered
    ("8.8.8.8", None, frames.HOP_NO_ROUTE, None),
])
def test_egress_picks_the_next_hop_and_writes_the_header(dst, gateway, expect_slot, expect_mac):
    from scapy.layers.l2 import Ether
    cache = _cache([(bytes([192, 168, 4, 8]), bytes(6), 1),  # incomplete
                    (bytes([192, 168, 4, 7]), PEER_MAC, 2),
                    (GW, bytes.fromhex("02000000000c"), 2)])
    frame = _frame(dst)
    slot = frames.egress_py(frame, frames.route(NET, MASK, gateway, OWN), *cache)
    assert slot == expect_slot
    if expect_mac is not None:
        eth = Ether(bytes(frame))
        assert (eth.dst, eth.src, eth.type) == (_mac_str(expect_mac), _mac_str(OWN), 0x0800)
        if slot >= 0:
            assert cache[3][slot] == 1  # marked used: the refresh timer asks only for these


@pytest.mark.parametrize("dst,kind", [
    (OWN, frames.FRAME_IPV4), (b"\xff" * 6, frames.FRAME_IPV4), (PEER_MAC, frames.FRAME_OTHER)])
def test_classify_takes_ipv4_for_this_link_only(dst, kind):
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether
    f = bytes(Ether(dst=_mac_str(dst), src=_mac_str(PEER_MAC)) / IP() / (b"x" * 30))
    assert frames.classify_py(f, len(f), OWN, 1500) == kind
    arp_f = _arp_frame(1, _mac_str(PEER_MAC), PEER_IP, "00:00:00:00:00:00", IP_)
    assert frames.classify_py(arp_f, len(arp_f), OWN, 1500) == frames.FRAME_ARP
    assert frames.classify_py(f, len(f), OWN, len(f) - 15) == frames.FRAME_OTHER  # too long
    assert frames.classify_py(f[:33], 33, OWN, 1500) == frames.FRAME_OTHER      # too short


# The viper framing on the unix port must agree with the twins on random frames and
# caches, and allocate nothing.
FRAMES_ON_UNIX = r"""
import frames, micropython, random
random.seed(SEED)
assert frames.classify is not frames.classify_py and frames.egress is not frames.egress_py
own = bytes([2, 0, 0, 0, 0, 1])
agree = 0
for case in range(3000):
    n = random.choice((20, 34, 42, 60, 200))
    f = bytearray(random.getrandbits(8) for _ in range(n))
    if random.random() < 0.5:
        f[0:6] = own if random.random() < 0.5 else b"\xff" * 6
    if random.random() < 0.7:
        f[12] = 8
        f[13] = random.choice((0, 6, 0, 1))
    mtu = random.choice((1500, 100))
    assert frames.classify(f, n, own, mtu) == frames.classify_py(f, n, own, mtu), f
    size = 4
    ips = bytearray(random.choice((10, 192)) if i % 4 == 0 else random.getrandbits(2) for i in range(4 * size))
    states = bytearray(random.getrandbits(2) % 3 for _ in range(size))
    macs = bytearray(random.getrandbits(8) for _ in range(6 * size))
    net = bytes((ips[0], ips[1] & 0xFC, 0, 0))
    mask = bytes((255, random.choice((252, 255)), 0, 0))
    gw = random.choice((None, bytes(ips[4:8])))
    r = frames.route(net, mask, gw, own)
    if n >= 34:
        if random.random() < 0.6:
            f[30:34] = ips[4 * random.getrandbits(2):][:4]
        a, b = bytearray(f), bytearray(f)
        ua, ub = bytearray(size), bytearray(size)
        assert frames.egress(a, r, ips, states, macs, ua) == frames.egress_py(b, r, ips, states, macs, ub)
        assert a == b and ua == ub, (f, r, ips, states)
        agree += 1
frame = bytearray(60)
frame[0:6] = own
frame[12] = 8
frame[30:34] = bytes(ips[0:4])
states[0] = 2
k = s = None
micropython.heap_lock()
k = frames.classify(frame, 60, own, 1500)
s = frames.egress(frame, r, ips, states, macs, ua)
micropython.heap_unlock()
print("AGREE", agree, "NOALLOC", k, s)
"""


@pytest.mark.skipif(unix_binary() is None, reason="the MicroPython unix port is not installed")
def test_viper_framing_agrees_with_its_twins_and_allocates_nothing():
    out = run_unix(FRAMES_ON_UNIX.replace("SEED", "5"), path=[BOARD_DIR])
    words = out.split()
    assert words[0] == "AGREE" and int(words[1]) > 1000, out
    assert words[2] == "NOALLOC", out
