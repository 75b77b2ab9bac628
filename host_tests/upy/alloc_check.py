# Does the per-packet path allocate? Fills a Table(tcp=64, udp=64, icmp=64), then runs
# p.parse(buf, n) + t.translate(p) under micropython.heap_lock() for packets of known
# flows, both ways, and reports every case in which a run raised MemoryError. Addresses
# are >= 128.0.0.0, heap ints on a 32-bit MicroPython, so building one would show.
# Nothing is printed while the heap is locked (print allocates). Output, one line a case:
#   ALLOC <case> status=<status name> allocated=<runs that raised>/<runs> valid=<0|1>
# then ALLOC_DONE cases=<n>. Cases named probe-* are the check's own controls.
import micropython

import nat
from pktlib import tcp, udp, echo, icmp_error, cut, valid

RUNS = 200
N = 64
XL = nat.ip("203.0.113.1")


def inside(i):
    return nat.ip("192.168.%d.%d" % (1 + i // 200, 10 + i % 200))


def remote(i):
    return nat.ip("203.0.113.%d" % (100 + i % 100))


def fill(t, p):
    """N flows of each protocol; flow i of TCP/UDP uses xl port 20000+i, of ICMP id 30000+i."""
    for i in range(N):
        for pkt, port in ((tcp(inside(i), remote(i), 40000 + i, 443), 20000 + i),
                          (udp(inside(i), remote(i), 50000 + i, 53), 20000 + i),
                          (echo(inside(i), remote(i), 1000 + i), 30000 + i)):
            assert p.parse(pkt) == nat.OK
            assert t.add(p, XL, lambda: port) == nat.OK


def cases():
    """(name, packet, expected status) for flow 7 of each protocol, both ways."""
    i = 7
    a, b = inside(i), remote(i)
    tcp_out = tcp(XL, b, 20000 + i, 443, ttl=3, payload=b"data")
    udp_out = udp(XL, b, 20000 + i, 53, ttl=3, payload=b"query")
    echo_out = echo(XL, b, 30000 + i, ttl=3)
    return (
        ("tcp out", tcp(a, b, 40000 + i, 443, payload=b"GET /"), nat.OK),
        ("tcp in", tcp(b, XL, 443, 20000 + i, payload=b"200 OK"), nat.OK),
        ("udp out", udp(a, b, 50000 + i, 53, payload=b"query"), nat.OK),
        ("udp in", udp(b, XL, 53, 20000 + i, payload=b"answer"), nat.OK),
        ("udp no checksum", udp(a, b, 50000 + i, 53, nocsum=True), nat.OK),
        ("echo out", echo(a, b, 1000 + i), nat.OK),
        ("echo in", echo(b, XL, 30000 + i, reply=True), nat.OK),
        ("error in, quoting tcp", icmp_error(b, XL, tcp_out), nat.OK),
        ("error in, quoting udp cut", icmp_error(remote(99), XL, cut(udp_out), typ=11, code=0),
         nat.OK),
        ("error in, quoting echo", icmp_error(remote(98), XL, echo_out, typ=11, code=0), nat.OK),
        ("error out, quoting udp", icmp_error(a, b, cut(udp(b, a, 53, 50000 + i, ttl=60))),
         nat.OK),
        ("ttl exceeded", tcp(a, b, 40000 + i, 443, ttl=1), nat.TTL_EXCEEDED),
        ("untranslated", tcp(a, b, 40000 + i, 444), nat.UNTRANSLATED),
    )


def locked_runs(p, translate, buf, orig, n, runs):
    """Runs parse + translate under heap_lock; (last status, runs that raised MemoryError)."""
    failed = 0
    status = -1
    for _ in range(runs):
        buf[:] = orig  # restore outside the locked region
        micropython.heap_lock()
        try:
            status = p.parse(buf, n)
            if status == 0:
                status = translate(p)
        except MemoryError:
            failed += 1
        micropython.heap_unlock()
    return status, failed


def report(name, status, failed, runs, ok):
    print("ALLOC %s status=%s allocated=%d/%d valid=%d" % (
        name, nat.status_name(status) if 0 <= status <= 5 else status, failed, runs,
        1 if ok else 0))


def main(pure=False, runs=RUNS):
    kw = {"pure": True} if pure else {}
    p = nat.Packet(**kw)
    t = nat.Table(tcp=N, udp=N, icmp=N, **kw)
    fill(t, p)
    count = 0
    for name, pkt, want in cases():
        orig = bytes(pkt)
        buf = bytearray(orig)
        status, failed = locked_runs(p, t.translate, buf, orig, len(buf), runs)
        report(name, status, failed, runs, status == want and valid(buf))
        count += 1
    # The check's own controls: a translate that allocates must be seen on every runtime;
    # reading p.src builds a whole address, which allocates only on a 32-bit port.
    buf = bytearray(tcp(inside(7), remote(7), 40000 + 7, 443))
    orig = bytes(buf)

    def allocating(p):
        return len(bytearray(4)) - 4

    def reads_src(p):
        return 0 if p.src else 1
    for name, translate in (("probe-allocating", allocating), ("probe-src", reads_src)):
        status, failed = locked_runs(p, translate, buf, orig, len(buf), 5)
        report(name, status, failed, 5, True)
        count += 1
    print("ALLOC_DONE cases=%d" % count)
