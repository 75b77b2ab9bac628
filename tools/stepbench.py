# The router's forwarding step without real I/O, and the engine's translation of a known
# flow, timed where this module runs: the unix port (tools/bench.py's router rows) or a
# board, sent over its REPL (tools/qemu.py bench: the emulated ESP32, where under QEMU's
# -icount shift=0 a microsecond of ticks_us is a thousand guest instructions).
# Plain MicroPython and CPython; never asserted by tests.
import gc
import sys

UPY = sys.implementation.name == "micropython"
BATCH = 32          # packets a drain takes under load (forward.router.BATCH)

if UPY:
    from time import ticks_us, ticks_diff

    def now():
        return ticks_us()

    def since(t0):
        return ticks_diff(ticks_us(), t0)  # µs
else:
    from time import perf_counter_ns

    def now():
        return perf_counter_ns()

    def since(t0):
        return (perf_counter_ns() - t0) / 1000.0


def tcp_packet(src, dst, sport, dport, size=40):
    """A size-byte IPv4 TCP packet (ACK, no options) with both checksums right (RFC
    1071); addresses as 4 bytes."""
    b = bytearray(size)
    b[0], b[2], b[3], b[8], b[9] = 0x45, size >> 8, size & 0xFF, 64, 6
    b[12:16], b[16:20] = src, dst
    _put(b, 10, _sum(b, 0, 20) ^ 0xFFFF)
    _put(b, 20, sport)
    _put(b, 22, dport)
    b[32], b[33] = 0x50, 0x10
    for i in range(40, size):
        b[i] = i & 0xFF
    pseudo = _sum(b, 12, 20) + 6 + size - 20
    _put(b, 36, _fold(pseudo + _sum(b, 20, size)) ^ 0xFFFF)
    return bytes(b)


def _put(b, at, v):
    b[at] = v >> 8
    b[at + 1] = v & 0xFF


def _fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum(b, start, end):
    s = 0
    for i in range(start, end - 1, 2):
        s += b[i] << 8 | b[i + 1]
    if (end - start) & 1:
        s += b[end - 1] << 8
    return _fold(s)


class FeedLink:
    """A link in memory: recv_into hands out the loaded packet while `left` says so
    (one memcpy from a preallocated memoryview, as cheap as a link can be); send
    swallows the packet and counts it."""
    name = "link"
    mtu = 1500

    def __init__(self):
        self.pkt = bytearray(1500)
        self.view = memoryview(self.pkt)[0:0]
        self.n = 0
        self.left = 0
        self.sent = 0

    def load(self, pkt):
        self.pkt[0:len(pkt)] = pkt
        self.n = len(pkt)
        self.view = memoryview(self.pkt)[0:len(pkt)]

    def recv_into(self, buf):
        if self.left <= 0:
            return 0
        self.left -= 1
        buf[0:self.n] = self.view
        return self.n

    def send(self, buf, n):
        self.sent += 1


# ---- the loops: each one the next minus what it accounts for

def step_loop(drain, path, lan, packets):
    t0 = now()
    for _ in range(packets // BATCH):
        lan.left = BATCH
        drain(path, BATCH)
    return since(t0)


def poll_loop(r, lan, packets):
    # a whole loop iteration per packet: the table's tick, both links drained
    t0 = now()
    for _ in range(packets):
        lan.left = 1
        r.poll()
    return since(t0)


def link_poll_loop(lan, wan, packets):
    # poll_loop's link calls alone: the LAN's packet and its empty read, the WAN's, the send
    buf = bytearray(1500)
    recv, send, recv_wan = lan.recv_into, wan.send, wan.recv_into
    t0 = now()
    for _ in range(packets):
        lan.left = 1
        recv(buf)
        recv(buf)
        recv_wan(buf)
        send(buf, 40)
    return since(t0)


def link_loop(lan, packets):
    # the batched loop with the link alone: what it spends outside the router
    buf = bytearray(1500)
    recv, send = lan.recv_into, lan.send
    t0 = now()
    for _ in range(packets // BATCH):
        lan.left = BATCH
        for _ in range(BATCH):
            recv(buf)
            send(buf, 40)
    return since(t0)


def translate_loop(parse, flow, f, mems, heads, buf, orig, n, iters):
    t0 = now()
    for _ in range(iters):
        buf[:] = orig
        parse(buf, n, f)
        flow(buf, f, mems, heads)
    return since(t0)


def restore_loop(buf, orig, iters):
    t0 = now()
    for _ in range(iters):
        buf[:] = orig
    return since(t0)


def best(rounds, *runs):
    """The fastest time of each run over rounds rounds, the runs taking turns."""
    fastest = [None] * len(runs)
    for _ in range(rounds):
        for i in range(len(runs)):
            gc.collect()
            us = runs[i]()
            if fastest[i] is None or us < fastest[i]:
                fastest[i] = us
    return fastest


def firewall_rules(n):
    """n firewall rules, none of which matches the step's flow (they would be tried, in
    order, only when a flow is opened): what a full rule list costs a known flow."""
    return [{"proto": "tcp", "lan": "192.168.4.%d" % (100 + i), "remote": "198.18.0.0/15",
             "port": [1000 + i, 2000 + i], "action": ("drop", "reject")[i & 1]}
            for i in range(n)]


def _router_with_flow(table=None, rules=0):
    """A Router between FeedLinks whose one flow the LAN's packet belongs to."""
    import nat
    from forward.router import Router
    from manage import config
    raw = config.defaults()
    if table:
        raw["table"] = table
    raw["firewall"]["rules"] = firewall_rules(rules)
    cfg = config.validate(raw)[0]
    lan, wan = FeedLink(), FeedLink()
    r = Router(cfg, lan, wan)
    lan.load(tcp_packet(nat.addr.ip_bytes(nat.ip("192.168.4.2")),
                        nat.addr.ip_bytes(nat.ip("203.0.113.5")), 40000, 443))
    lan.left = 1
    r.poll()  # the slow path: the flow is made here
    if wan.sent != 1:
        raise RuntimeError("router step: the first packet did not leave")
    return r, lan, wan


def capture_step(rounds=5, sweeps=1, packets=4000):
    """µs per packet of the batched step with a capture on, every packet kept (as
    received and as sent, 40 bytes each): the ring emptied before each timed loop."""
    from filter import capture
    from forward.datapath import drain
    r, lan, _ = _router_with_flow()
    cap = capture.Capture(1 << 20, 128)
    every = capture.check("both", None, None, None)
    capture.tap(r.shared, r.datapath, cap)
    path = r.datapath.lan
    best_us = None
    for _ in range(sweeps):
        for _ in range(rounds):
            cap.start(every)
            us = step_loop(drain, path, lan, packets)
            if cap.lost or cap.packets != 2 * (packets // BATCH * BATCH):
                raise RuntimeError("capture step: %d kept, %d lost" % (cap.packets, cap.lost))
            best_us = us if best_us is None else min(best_us, us)
    return best_us / packets


def router_step(rounds=5, sweeps=1, packets=20000, table=None, rules=0):
    """µs per packet of a known flow: (the batched step, one packet per poll, the
    in-memory links' share of each). table: the flow table's sizes (the configuration's
    defaults when None); rules: how many firewall rules are loaded."""
    from forward.datapath import drain
    r, lan, wan = _router_with_flow(table, rules)
    path = r.datapath.lan
    times = [None] * 4
    polls = packets // 4
    for _ in range(sweeps):
        got = best(rounds, lambda: step_loop(drain, path, lan, packets),
                   lambda: poll_loop(r, lan, polls),
                   lambda: link_loop(lan, packets),
                   lambda: link_poll_loop(lan, wan, polls))
        times = [g if t is None else min(t, g) for t, g in zip(times, got)]
    if r.counters()["translated_out"] != wan.sent - polls * sweeps * rounds:
        raise RuntimeError("router step: packets did not all leave (%d)" % wan.sent)
    # TTL: the packet is reloaded on every receive, so every step translates the same bytes.
    return (times[0] / packets, times[1] / polls, times[2] / packets, times[3] / polls)


def translate_cost(rounds=5, iters=2000, size=40):
    """µs per packet of a known flow through parse + translate_flow (the engine's fast
    core, as the router's datapath calls them), the restore of the packet subtracted."""
    import nat
    from nat import core
    t = nat.Table(tcp=64, udp=8, icmp=8)
    p = nat.Packet()
    src, dst = nat.ip("192.168.4.2"), nat.ip("203.0.113.5")
    out = tcp_packet(nat.addr.ip_bytes(src), nat.addr.ip_bytes(dst), 40000, 443, size)
    p.parse(out)
    if t.add(p, nat.ip("198.51.100.2"), lambda: 40000) != nat.OK:
        raise RuntimeError("translate: the flow was not added")
    buf = bytearray(len(out))
    p.bind(buf)
    restore, full = best(rounds, lambda: restore_loop(buf, out, iters),
                         lambda: translate_loop(core.parse, core.translate_flow, p.fields,
                                                t.mems, t.heads, buf, out, len(out), iters))
    buf[:] = out
    p.parse(buf, len(out))
    if t.translate(p) != nat.OK:
        raise RuntimeError("translate: the packet did not translate")
    return (full - restore) / iters
