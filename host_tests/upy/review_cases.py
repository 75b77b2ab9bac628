# Review cases (host_tests/test_review.py): engine behaviour that needs MicroPython to show
# (the viper core on the unix port, the 32-bit WASI build), written with plain asserts so
# CPython runs them too. run_all() prints one FAIL line per failing case, then
#   REVIEW_CASES passed=<n> failed=<n> pure=<0|1>
import nat
import pktlib
from pktlib import udp, tcp, echo, icmp_error, cut, valid, field, checksum

PURE = [False]

IN1 = nat.ip("192.168.4.2")
IN2 = nat.ip("192.168.4.3")
XL = nat.ip("203.0.113.5")
REMOTE = nat.ip("198.51.100.7")
HOP = nat.ip("198.51.100.1")
FWD = nat.ip("192.168.4.1")
SERVER = nat.ip("192.168.4.10")


def table(**caps):
    return nat.Table(pure=True, **caps) if PURE[0] else nat.Table(**caps)


def packet(pure=None):
    return nat.Packet(pure=True) if (PURE[0] if pure is None else pure) else nat.Packet()


def add(t, pkt, port, xl=XL, mode=nat.NAT, redirect=None):
    p = packet()
    assert p.parse(bytearray(pkt)) == nat.OK
    return t.add(p, xl, lambda: port, mode, redirect)


class Rng:
    """A small LCG: the same sequence on every runtime (no dependency on `random`)."""

    def __init__(self, seed):
        self.x = seed & 0xFFFFFF

    def below(self, n):
        self.x = (self.x * 1103 + 12345) & 0xFFFFFF
        return (self.x >> 8) % n


# ---------------------------------------------------------------- read-only buffers


def case_readonly_buffer_is_never_written():
    # The contract's buf is "bytearray or memoryview"; a memoryview of bytes is read-only.
    # Translating it must not rewrite the immutable bytes object (CPython raises; viper's
    # ptr8 wrote straight into the bytes object).
    t = table(tcp=2, udp=2, icmp=2)
    pkt = udp(IN1, REMOTE, 5353, 53, payload=b"ro")
    assert add(t, pkt, 61000) == nat.OK
    frozen = bytes(pkt)
    p = packet()
    assert p.parse(memoryview(frozen)) == nat.OK
    try:
        t.translate(p)
    except TypeError:
        pass
    assert frozen == bytes(pkt), "translate wrote into an immutable bytes object"


# ---------------------------------------------------------------- expiry and room model


class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


TIMEOUT = 5  # the UDP idle timeout of the model's tables, seconds


def run_model(ops, cap, check=None):
    """Run ops against a UDP table of capacity cap (idle timeout TIMEOUT, a fake clock one
    second on per op) and a plain model of it. ops: (name, a, b) with names add, out, in,
    err, remove, reset, wait (the clock jumps b + 3 s), expire. Flows: IN1/IN2 : sport a
    -> REMOTE:53, translated to XL : 7000 + b. A full table must make room as room.py
    says: an expired flow, else the longest idle unanswered one, else the longest idle of
    a host over its share (50 %): the model accepts any flow that ties for the choice."""
    clock = FakeClock()
    t = nat.Table(tcp=1, udp=cap, icmp=1, pure=PURE[0], clock=clock,
                  timeouts={"udp": TIMEOUT})
    model = []  # [host, sport, port, last use, answered]
    hosts = (IN1, IN2)

    def live(fl):
        return clock.now - fl[3] <= TIMEOUT

    def lookup(match):
        for i, fl in enumerate(model):
            if match(fl) and live(fl):
                return i
        return -1

    def victims(host):
        expired = [fl for fl in model if not live(fl)]
        if expired:
            return expired
        mine = sum(1 for fl in model if fl[0] == host) * 100 > 50 * cap
        ranked = []
        for fl in model:
            if not fl[4]:
                rank = 0
            elif fl[0] == host and mine:
                rank = 1
            elif fl[0] != host and not mine and sum(1 for g in model if g[0] == fl[0]) * 100 > 50 * cap:
                rank = 2
            else:
                continue
            ranked.append((rank, -(clock.now - fl[3]), fl))
        if not ranked:
            return []
        best = min(r[:2] for r in ranked)
        return [r[2] for r in ranked if r[:2] == best]

    step = 0
    for name, a, b in ops:
        step += 1
        clock.now += 1
        t.tick()
        host, sport, port = hosts[a % 2], 1 + a // 2 % 2, 7000 + b % 3
        where = "step %d %s(%d, %d) cap=%d" % (step, name, a, b, cap)
        if name == "add":
            pkt = udp(host, REMOTE, sport, 53)
            got = add(t, pkt, port)
            i = lookup(lambda fl: fl[0] == host and fl[1] == sport)
            if i >= 0:
                want = nat.OK
                model[i][3] = clock.now
            else:
                # an expired flow of the same key, or holding the port, is reclaimed
                model[:] = [fl for fl in model if live(fl) or not (
                    (fl[0] == host and fl[1] == sport) or fl[2] == port)]
                if lookup(lambda fl: fl[2] == port) >= 0:
                    want = nat.OVERLAP
                elif len(model) < cap:
                    want = nat.OK
                else:
                    could = victims(host)
                    want = nat.OK if could else nat.FULL
                    if could:  # which one went: the table says
                        gone = [fl for fl in could if t.state(nat.UDP, REMOTE, XL, 53, fl[2]) is None]
                        assert len(gone) == 1, "%s: evicted %s of %s" % (where, gone, could)
                        model.remove(gone[0])
                if want == nat.OK:
                    model.append([host, sport, port, clock.now, False])
            assert got == want, "%s: add %s, model %s" % (where, nat.status_name(got), model)
        elif name in ("out", "in", "err"):
            if name == "out":
                pkt = udp(host, REMOTE, sport, 53, payload=b"o")
                i = lookup(lambda fl: fl[0] == host and fl[1] == sport)
            elif name == "in":
                pkt = udp(REMOTE, XL, 53, port, payload=b"i")
                i = lookup(lambda fl: fl[2] == port)
            else:
                pkt = icmp_error(HOP, XL, cut(udp(XL, REMOTE, port, 53, ttl=3)), typ=11, code=0)
                i = lookup(lambda fl: fl[2] == port)
            buf = bytearray(pkt)
            p = packet()
            assert p.parse(buf) == nat.OK
            got = t.translate(p)
            assert got == (nat.OK if i >= 0 else nat.UNTRANSLATED), "%s: %s, model %s" % (
                where, nat.status_name(got), model)
            if i >= 0:
                assert valid(buf), where
                fl = model[i]
                if name == "out":
                    assert (field(buf, "src"), field(buf, "sport")) == (XL, fl[2]), where
                elif name == "in":
                    assert (field(buf, "dst"), field(buf, "dport")) == (fl[0], fl[1]), where
                    fl[4] = True
                else:
                    assert field(buf, "dst") == fl[0], where
                if name != "err":  # RFC 5508 REQ-6: errors never refresh a flow
                    fl[3] = clock.now
        elif name == "remove":
            got = t.remove_connections(host)
            want = sorted(fl[2] for fl in model if fl[0] == host)
            assert sorted(got.udp) == want and not got.tcp and not got.icmp, where
            model[:] = [fl for fl in model if fl[0] != host]
        elif name == "wait":
            clock.now += b + 3
            t.tick()
        elif name == "expire":
            t.expire(cap)
            model[:] = [fl for fl in model if live(fl)]
        else:  # reset
            t.reset()
            model[:] = []
        assert t.count(nat.UDP) == len(model), "%s: count %d, model %s" % (
            where, t.count(nat.UDP), model)
        listed = sorted((f[1], f[2], f[6]) for f in t.flows() if f[0] == nat.UDP)
        want = sorted((fl[0], fl[1], fl[2]) for fl in model if live(fl))
        assert listed == want, "%s: flows() %s, model %s" % (where, listed, want)
        if check is not None:
            check(t)
    return t


OPS = ("add", "add", "add", "out", "in", "in", "err", "remove", "reset", "wait", "expire")


def random_ops(rng, n):
    ops = []
    for _ in range(n):
        name = OPS[rng.below(len(OPS))]
        if name == "reset" and rng.below(4):
            name = "out"  # resets are rare
        ops.append((name, rng.below(4), rng.below(3)))
    return ops


def case_room_model_small_tables():
    rng = Rng(2026)
    for cap in (1, 2, 3, 1, 2, 4):
        run_model(random_ops(rng, 150), cap)


def case_room_at_cap_1():
    # cap=1: the only flow makes room only when expired or unanswered.
    ops = [("add", 0, 0), ("out", 0, 0), ("add", 1, 1), ("in", 0, 1), ("out", 0, 0),
           ("add", 1, 1), ("in", 0, 1), ("add", 3, 2), ("remove", 1, 0), ("add", 1, 1),
           ("in", 0, 1), ("wait", 0, 4), ("add", 3, 2), ("reset", 0, 0), ("add", 1, 1),
           ("add", 3, 2), ("in", 0, 2), ("out", 3, 0), ("err", 0, 2), ("wait", 0, 5),
           ("err", 0, 2), ("expire", 0, 0)]
    run_model(ops, 1)


# ---------------------------------------------------------------- fast core vs twin


def _mutate(rng, base):
    b = bytearray(base)
    for _ in range(rng.below(4)):
        b[rng.below(len(b))] = rng.below(256)
    if rng.below(2):  # keep the IP header checksum right so the mutation reaches translate
        hl = (b[0] & 15) * 4
        if 20 <= hl <= len(b):
            b[10] = b[11] = 0
            c = checksum(b[:hl])
            b[10] = c >> 8
            b[11] = c & 255
    return b


def _flow_tables(pure):
    t = nat.Table(tcp=4, udp=4, icmp=4, pure=pure)
    p = nat.Packet(pure=pure)
    for pkt, port, mode, redirect in (
            (tcp(IN1, REMOTE, 40000, 443), 61000, nat.NAT, None),
            (udp(IN1, REMOTE, 5353, 53), 61001, nat.NAT, None),
            (echo(IN1, REMOTE, 0x101), 0x2222, nat.NAT, None),
            (tcp(REMOTE, XL, 33000, 80), 62000, nat.REDIRECT, (SERVER, 8080))):
        assert p.parse(pkt) == nat.OK
        assert t.add(p, FWD if redirect else XL, lambda: port, mode, redirect) == nat.OK
    return t


def case_fast_core_agrees_with_twin():
    """The runtime's fast core (viper on the unix port) and the pure-Python twin, on
    mutated packets of known flows seen through memoryviews at odd offsets, n < len."""
    fast, twin = _flow_tables(False), _flow_tables(True)
    sent = udp(XL, REMOTE, 61001, 53, ttl=3, payload=b"q")
    bases = (tcp(IN1, REMOTE, 40000, 443, payload=b"abc"),
             udp(IN1, REMOTE, 5353, 53, payload=b"ab"),
             echo(IN1, REMOTE, 0x101), tcp(REMOTE, XL, 443, 61000), udp(REMOTE, XL, 53, 61001),
             echo(REMOTE, XL, 0x2222, reply=True), tcp(REMOTE, XL, 33000, 80),
             tcp(SERVER, FWD, 8080, 62000), icmp_error(HOP, XL, cut(sent)))
    rng = Rng(7)
    bad = []
    for i in range(3000):
        b = _mutate(rng, bases[rng.below(len(bases))])
        off = rng.below(5)
        n = len(b) - rng.below(3) * rng.below(2)
        frames = [bytearray(off) + b + bytearray(3) for _ in (0, 1)]
        views = [memoryview(fr)[off:off + len(b)] for fr in frames]
        pa, pb = nat.Packet(), nat.Packet(pure=True)
        sa, sb = pa.parse(views[0], n), pb.parse(views[1], n)
        if sa != sb or (sa == nat.OK and list(pa.fields) != list(pb.fields)):
            bad.append(("parse", i, sa, sb, bytes(b)))
            continue
        ra, rb = fast.translate(pa), twin.translate(pb)
        if ra != rb or frames[0] != frames[1] or list(pa.fields) != list(pb.fields):
            bad.append(("translate", i, ra, rb, bytes(b)))
    assert not bad, bad[:3]


# ---------------------------------------------------------------- no allocation


def case_no_allocation_memoryview_redirect_and_errors():
    """parse + translate under heap_lock for packets in a memoryview at an offset: a
    REDIRECT flow both ways, an IP-options packet, RFC 4884 errors. Skipped where
    heap_lock is missing (CPython)."""
    try:
        from micropython import heap_lock, heap_unlock
    except ImportError:
        return
    t = table(tcp=8, udp=8, icmp=8)
    assert add(t, tcp(REMOTE, XL, 33000, 80), 62000, FWD, nat.REDIRECT, (SERVER, 8080)) == nat.OK
    assert add(t, udp(IN1, REMOTE, 5353, 53), 61001) == nat.OK
    sent = bytearray(udp(XL, REMOTE, 61001, 53, ttl=3, payload=b"q"))
    padded = bytes(sent) + bytes(128 - len(sent))
    rfc4884 = bytearray(icmp_error(HOP, XL, padded + b"\x20\x00\xdf\xff", typ=11, code=0))
    rfc4884[20 + 5] = 32  # length: 32 words of quote, then the extension
    rfc4884[22] = rfc4884[23] = 0
    c = checksum(rfc4884[20:])
    rfc4884[22], rfc4884[23] = c >> 8, c & 255
    cases = (tcp(REMOTE, XL, 33000, 80, payload=b"GET"), tcp(SERVER, FWD, 8080, 62000),
             icmp_error(SERVER, FWD, cut(tcp(FWD, SERVER, 62000, 8080))),
             rfc4884, icmp_error(HOP, XL, cut(sent, 5)), udp(IN1, REMOTE, 5353, 54))
    p = packet()
    frame = bytearray(300)
    for k, pkt in enumerate(cases):
        frame[:] = bytearray(300)
        frame[14:14 + len(pkt)] = pkt
        view = memoryview(frame)[14:]
        n = len(pkt)
        failed = 0
        status = -1
        for _ in range(20):
            frame[14:14 + len(pkt)] = pkt
            heap_lock()
            try:
                status = p.parse(view, n)
                if status == 0:
                    status = t.translate(p)
            except MemoryError:
                failed += 1
            heap_unlock()
        assert failed == 0, "case %d allocated (%d/20)" % (k, failed)
        assert status in (nat.OK, nat.UNTRANSLATED, nat.MALFORMED), (k, status)
        if k < 4:
            assert status == nat.OK and valid(frame[14:14 + n]), (k, status)


CASES = (case_readonly_buffer_is_never_written, case_room_model_small_tables,
         case_room_at_cap_1, case_fast_core_agrees_with_twin,
         case_no_allocation_memoryview_redirect_and_errors)


def run_all(pure=False, names=None):
    return pktlib.run_cases(CASES, "REVIEW_CASES", PURE, pure, names)
