# Runs on MicroPython (unix port and the 32-bit WASI build): the router's per-packet
# path must not allocate. Builds a Router on MemoryLinks, establishes flows (TCP, UDP,
# ICMP echo, port forwards; both directions) in a full table, then runs single steps
# under micropython.heap_lock().
#
# main() prints one line per case of CASES, after heap_unlock:
#   CASE <name> <ok|ALLOC> <got> <expected>
# where got/expected list, for each of three runs, which link the step's output went
# out of (lan, wan, none; "unread" if the step failed before receiving).
# and DONE at the end. host_tests/test_router_alloc.py takes the case names from CASES
# (importing this module on CPython) and checks the lines.
from heaplock import heap_lock, heap_unlock

import nat
from forward.datapath import drain, drain_py
from forward.router import Router
from filter.ruleconfig import RULES_MAX
from filter import capture
from manage import config
from memlink import MemoryLink

LAN_HOST = "192.168.4.2"
LAN_HOST2 = "192.168.4.3"
REMOTE = "203.0.113.5"
CLIENT = "203.0.113.9"
WAN = "198.51.100.2"
LAN = "192.168.4.1"
SIZES = {"tcp": 96, "udp": 96, "icmp": 24}


# ---- packet building (slow, allocates; never under the lock)

def _addr(text):
    return bytes(int(x) for x in text.split("."))


def _csum(b):
    s = 0
    n = len(b)
    for i in range(0, n - 1, 2):
        s += b[i] << 8 | b[i + 1]
    if n & 1:
        s += b[n - 1] << 8
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s ^ 0xFFFF


def _put16(b, at, v):
    b[at] = v >> 8
    b[at + 1] = v & 0xFF


def ip(src, dst, proto, l4, ttl=64):
    h = bytearray(20)
    h[0] = 0x45
    _put16(h, 2, 20 + len(l4))
    h[8] = ttl
    h[9] = proto
    h[12:16] = _addr(src)
    h[16:20] = _addr(dst)
    _put16(h, 10, _csum(h))
    l4 = bytearray(l4)
    if proto == 1:
        _put16(l4, 2, _csum(l4))
    else:
        pseudo = h[12:20] + bytes([0, proto, len(l4) >> 8, len(l4) & 0xFF])
        c = _csum(pseudo + l4)
        _put16(l4, 16 if proto == 6 else 6, c or 0xFFFF)
    return bytes(h + l4)


def tcp(src, sport, dst, dport, flags=0x10, ttl=64, payload=b"data"):
    t = bytearray(20)
    _put16(t, 0, sport)
    _put16(t, 2, dport)
    t[12] = 5 << 4
    t[13] = flags
    _put16(t, 14, 65535)
    return ip(src, dst, 6, t + payload, ttl)


def udp(src, sport, dst, dport, ttl=64, payload=b"data"):
    u = bytearray(8)
    _put16(u, 0, sport)
    _put16(u, 2, dport)
    _put16(u, 4, 8 + len(payload))
    return ip(src, dst, 17, u + payload, ttl)


def icmp(src, dst, typ, ident, seq=1, ttl=64, payload=b"ping"):
    m = bytearray(8)
    m[0] = typ
    _put16(m, 4, ident)
    _put16(m, 6, seq)
    return ip(src, dst, 1, m + payload, ttl)


def port_of(pkt, at):
    hl = (pkt[0] & 15) * 4
    return pkt[hl + at] << 8 | pkt[hl + at + 1]


# ---- the check

def locked(step):
    """Run step() with the heap locked: 1 if it allocated nothing, else 0."""
    heap_lock()
    try:
        step()
        ok = 1
    except MemoryError:
        ok = 0
    heap_unlock()
    return ok


def exchange(lan, wan, link, pkt, poll):
    """Send one packet through the router, unlocked (the slow path); return what came out."""
    link.inject(pkt)
    poll()
    return lan.take_all(), wan.take_all()


# (name, link the packet arrives on, the packet given the translated ports x, where the
# router's output must go). x.tcp / x.udp / x.icmp: the WAN ports of the flows under test.
CASES = (
    ("tcp_out", "lan", lambda x: tcp(LAN_HOST, 40000, REMOTE, 80), "wan"),
    ("tcp_in", "wan", lambda x: tcp(REMOTE, 80, WAN, x.tcp), "lan"),
    ("udp_out", "lan", lambda x: udp(LAN_HOST, 5000, REMOTE, 53), "wan"),
    ("udp_in", "wan", lambda x: udp(REMOTE, 53, WAN, x.udp), "lan"),
    ("icmp_echo_out", "lan", lambda x: icmp(LAN_HOST, REMOTE, 8, 77), "wan"),
    ("icmp_echo_in", "wan", lambda x: icmp(REMOTE, WAN, 0, x.icmp), "lan"),
    ("icmp_error_in", "wan", lambda x: ip(REMOTE, WAN, 1, UNREACHABLE + udp(WAN, x.udp, REMOTE, 53)[:28]),
     "lan"),
    ("forward_tcp_in", "wan", lambda x: tcp(CLIENT, 5555, WAN, 8080), "lan"),
    ("forward_tcp_out", "lan", lambda x: tcp(LAN_HOST, 80, CLIENT, 5555), "wan"),
    ("forward_udp_in", "wan", lambda x: udp(CLIENT, 5556, WAN, 6000), "lan"),
    ("forward_udp_out", "lan", lambda x: udp(LAN_HOST2, 7000, CLIENT, 5556), "wan"),
    ("echo_router_lan", "lan", lambda x: icmp(LAN_HOST, LAN, 8, 5), "lan"),
    ("echo_router_wan", "wan", lambda x: icmp(REMOTE, WAN, 8, 6), "wan"),
    ("ttl_exceeded", "lan", lambda x: tcp(LAN_HOST, 40000, REMOTE, 80, ttl=1), "lan"),
    ("unsolicited", "wan", lambda x: tcp(CLIENT, 4444, WAN, 9999, flags=0x02), "none"),
    ("lan_local", "lan", lambda x: udp(LAN_HOST, 5000, LAN_HOST2, 53), "none"),
    ("martian", "wan", lambda x: udp("127.0.0.1", 53, WAN, x.udp), "none"),
    ("malformed", "lan", lambda x: b"\x45" + bytes(30), "none"),
    ("poll", "lan", lambda x: tcp(LAN_HOST, 40000, REMOTE, 80), "wan"),
    # the same with a capture on (filter/capture.py): noted both ways, then a full ring
    ("capture_tcp_out", "lan", lambda x: tcp(LAN_HOST, 40000, REMOTE, 80), "wan"),
    ("capture_udp_in", "wan", lambda x: udp(REMOTE, 53, WAN, x.udp), "lan"),
    ("capture_poll", "lan", lambda x: tcp(LAN_HOST, 40000, REMOTE, 80), "wan"),
    ("capture_full", "lan", lambda x: tcp(LAN_HOST, 40000, REMOTE, 80), "wan"),
)
UNREACHABLE = b"\x03\x03" + bytes(6)  # ICMP port unreachable header (checksum filled by ip())


class Ports:
    def __init__(self, tcp, udp, icmp):
        self.tcp, self.udp, self.icmp = tcp, udp, icmp


def main():
    raw = config.defaults()
    raw["table"] = SIZES
    raw["forwards"] = [{"proto": "tcp", "port": 8080, "to": LAN_HOST, "to_port": 80},
                       {"proto": "udp", "port": 6000, "to": LAN_HOST2, "to_port": 7000}]
    # A full firewall: tried when a flow opens, never by a known flow's packets.
    raw["firewall"] = {"default": "allow", "blocked": ["192.168.4.50"], "rules": [
        {"proto": "udp", "lan": "192.168.4.%d" % (100 + i), "port": [i + 1, i + 100],
         "action": "drop"} for i in range(RULES_MAX)]}
    cfg, problems = config.validate(raw)
    assert not problems, problems
    lan = MemoryLink("lan", 1500, 4)
    wan = MemoryLink("wan", 1500, 4)
    # a clock that stands still: the once-a-second chores (which may allocate) stay out
    r = Router(cfg, lan, wan, clock=lambda: 1000)
    poll = r.poll

    # Fill every protocol's table (older flows get reused once it is full).
    for i in range(SIZES["tcp"] + 2):
        exchange(lan, wan, lan, tcp(LAN_HOST2, 20000 + i, REMOTE, 443, flags=0x02), poll)
    for i in range(SIZES["udp"] + 2):
        exchange(lan, wan, lan, udp(LAN_HOST2, 20000 + i, REMOTE, 123), poll)
    for i in range(SIZES["icmp"] + 2):
        exchange(lan, wan, lan, icmp(LAN_HOST2, REMOTE, 8, 1000 + i), poll)

    # The flows under test: the first packet of each is the slow path.
    out = exchange(lan, wan, lan, tcp(LAN_HOST, 40000, REMOTE, 80, flags=0x02), poll)[1]
    tcp_x = port_of(out[0], 0)
    out = exchange(lan, wan, lan, udp(LAN_HOST, 5000, REMOTE, 53), poll)[1]
    udp_x = port_of(out[0], 0)
    out = exchange(lan, wan, lan, icmp(LAN_HOST, REMOTE, 8, 77), poll)[1]
    icmp_x = port_of(out[0], 4)
    back = exchange(lan, wan, wan, tcp(CLIENT, 5555, WAN, 8080, flags=0x02), poll)[0]
    assert back and port_of(back[0], 2) == 80, "tcp port forward did not pass"
    back = exchange(lan, wan, wan, udp(CLIENT, 5556, WAN, 6000), poll)[0]
    assert back and port_of(back[0], 2) == 7000, "udp port forward did not pass"
    for name, n in (("tcp", nat.TCP), ("udp", nat.UDP), ("icmp", nat.ICMP)):
        assert r.table.count(n) == r.table.capacity(n), "table not full: " + name

    x = Ports(tcp_x, udp_x, icmp_x)
    d = r.datapath
    steps = {"lan": lambda: drain(d.lan, 1), "wan": lambda: drain(d.wan, 1), "poll": poll}
    links = {"lan": lan, "wan": wan}
    results = []
    cap = capture.Capture(2048, 96)
    for name, side, packet, expect in CASES:
        if name == "capture_tcp_out":   # from here on, with the links tapped
            cap.start(capture.check("both", LAN_HOST, None, None))
            capture.tap(r.shared, d, cap)
            steps = {"lan": lambda: drain(d.lan, 1), "wan": lambda: drain(d.wan, 1),
                     "poll": poll}
        if name == "capture_full":
            while cap.lost == 0:   # fill the ring (unlocked)
                exchange(lan, wan, lan, packet(x), poll)
        link = links[side]
        step = steps["poll" if name in ("poll", "capture_poll") else side]
        pkt = packet(x)
        ok = 1
        where = []
        for _ in range(3):
            link.inject(pkt)
            ok &= locked(step)
            got_lan, got_wan = lan.take_all(), wan.take_all()
            if link.pending():  # the step failed before receiving
                where.append("unread")
                link.rx.get()
            else:
                where.append(("lan" if got_lan else "") + ("wan" if got_wan else "") or "none")
        results.append("CASE %s %s %s %s" % (name, "ok" if ok else "ALLOC", ",".join(where),
                                             ",".join((expect,) * 3)))
    for line in results:
        print(line)
    print("CAPTURE", cap.packets, cap.lost)
    print("COUNTERS", sorted(r.counters().items()))
    # The REPL's view works here too: one readable line per flow of the full table.
    lines = r.flows()
    print("FLOWS", len(lines), sum(SIZES.values()), lines[0].split()[0])
    print("DRAIN", "python" if drain is drain_py else "viper", nat.core.NAME)
    print("DONE")
