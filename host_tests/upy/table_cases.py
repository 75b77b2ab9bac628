# Behaviour of nat.Table (firmware/nat/README.md), written once with plain asserts so the
# same cases run on CPython (host_tests/test_micropython.py imports them), the MicroPython
# unix port and the 32-bit WASI build (run_all() prints one line per failure, then
#   TABLE_CASES passed=<n> failed=<n>).
import nat
import pktlib
from pktlib import tcp, udp, echo, icmp_error, cut, valid, field

PURE = [False]  # run_all(pure=True): the engine's pure-Python path where it has a faster one

IN1 = nat.ip("192.168.4.2")
IN2 = nat.ip("192.168.4.3")
XL = nat.ip("203.0.113.5")
REMOTE = nat.ip("198.51.100.7")
REMOTE2 = nat.ip("198.51.100.8")
HOP = nat.ip("198.51.100.1")
FWD = nat.ip("192.168.4.1")
SERVER = nat.ip("192.168.4.10")


class Clock:
    """A fake seconds clock the cases move on by hand."""

    def __init__(self):
        self.now = 1000

    def __call__(self):
        return self.now


def table(tcp=8, udp=8, icmp=8, clock=None, **kw):
    return nat.Table(tcp=tcp, udp=udp, icmp=icmp, pure=PURE[0], clock=clock, **kw)


def later(t, clock, seconds):
    clock.now += seconds
    t.tick()


def packet():
    return nat.Packet(pure=True) if PURE[0] else nat.Packet()


def ports(*candidates):
    """A port generator offering the candidates in turn, then None; .calls counts calls."""
    state = {"i": 0, "calls": 0}

    def gen():
        state["calls"] += 1
        i = state["i"]
        if i < len(candidates):
            state["i"] = i + 1
            return candidates[i]
        return None
    return gen, state


def add(t, pkt, port, xl=XL, mode=nat.NAT, redirect=None):
    p = packet()
    assert p.parse(pkt) == nat.OK
    return t.add(p, xl, ports(port)[0], mode, redirect)


def translated(t, pkt):
    """(status, the buffer after translate(), the Packet)."""
    buf = bytearray(pkt)
    p = packet()
    assert p.parse(buf, len(buf)) == nat.OK
    return t.translate(p), buf, p


def goes(t, pkt, src, sport, dst, dport):
    status, buf, p = translated(t, pkt)
    assert status == nat.OK, nat.status_name(status)
    assert valid(buf)
    assert field(buf, "src") == src and field(buf, "dst") == dst
    assert field(buf, "ttl") == pkt[8] - 1
    if buf[9] == pktlib.ICMP:
        assert field(buf, "id") == sport
    else:
        assert (field(buf, "sport"), field(buf, "dport")) == (sport, dport)
    assert (p.src, p.dst, p.ttl) == (src, dst, pkt[8] - 1)
    return buf


def stays(t, pkt):
    status, buf, _ = translated(t, pkt)
    assert status == nat.UNTRANSLATED, nat.status_name(status)
    assert buf == pkt


# ---- the cases


def case_add_and_translate_both_ways():
    t = table()
    assert add(t, tcp(IN1, REMOTE, 40000, 443), 50000) == nat.OK
    goes(t, tcp(IN1, REMOTE, 40000, 443, payload=b"hello"), XL, 50000, REMOTE, 443)
    goes(t, tcp(REMOTE, XL, 443, 50000, payload=b"world"), REMOTE, 443, IN1, 40000)
    assert add(t, udp(IN1, REMOTE, 5353, 53), 50001) == nat.OK
    goes(t, udp(IN1, REMOTE, 5353, 53, payload=b"q"), XL, 50001, REMOTE, 53)
    goes(t, udp(REMOTE, XL, 53, 50001, payload=b"a"), REMOTE, 53, IN1, 5353)
    assert add(t, echo(IN1, REMOTE, 7), 700) == nat.OK
    goes(t, echo(IN1, REMOTE, 7), XL, 700, REMOTE, 700)
    goes(t, echo(REMOTE, XL, 700, reply=True), REMOTE, 7, IN1, 7)


def case_redirect():
    t = table()
    assert add(t, tcp(REMOTE, XL, 33000, 80), 60000, FWD, nat.REDIRECT, (SERVER, 8080)) == nat.OK
    goes(t, tcp(REMOTE, XL, 33000, 80), FWD, 60000, SERVER, 8080)
    goes(t, tcp(SERVER, FWD, 8080, 60000), XL, 80, REMOTE, 33000)
    stays(t, tcp(XL, REMOTE, 80, 33000))
    assert add(t, echo(REMOTE, XL, 9), 10, FWD, nat.REDIRECT, (SERVER, 0)) == nat.CANNOT_NAT


def case_untranslated_leaves_buffer():
    t = table()
    assert add(t, tcp(IN1, REMOTE, 40000, 443), 50000) == nat.OK
    stays(t, tcp(IN1, REMOTE, 40001, 443))
    stays(t, udp(IN1, REMOTE, 40000, 443))
    stays(t, tcp(REMOTE2, XL, 443, 50000))
    stays(t, echo(IN1, REMOTE, 40000))


def case_ttl_exceeded_leaves_buffer():
    t = table()
    assert add(t, udp(IN1, REMOTE, 1000, 53), 2000) == nat.OK
    for ttl in (1, 0):
        pkt = udp(IN1, REMOTE, 1000, 53, ttl=ttl)
        status, buf, _ = translated(t, pkt)
        assert status == nat.TTL_EXCEEDED and buf == pkt
    goes(t, udp(IN1, REMOTE, 1000, 53, ttl=2), XL, 2000, REMOTE, 53)


def case_udp_without_checksum():
    t = table()
    assert add(t, udp(IN1, REMOTE, 1000, 53), 2000) == nat.OK
    buf = goes(t, udp(IN1, REMOTE, 1000, 53, nocsum=True), XL, 2000, REMOTE, 53)
    assert buf[26] == 0 and buf[27] == 0


def case_icmp_error_translated_back():
    t = table()
    assert add(t, udp(IN1, REMOTE, 1000, 53), 2000) == nat.OK
    sent = udp(XL, REMOTE, 2000, 53, ttl=3, payload=b"query")
    err = icmp_error(HOP, XL, cut(sent), typ=11, code=0)
    status, buf, _ = translated(t, err)
    assert status == nat.OK and valid(buf)
    assert field(buf, "src") == HOP and field(buf, "dst") == IN1
    assert buf[28:] == cut(udp(IN1, REMOTE, 1000, 53, ttl=3, payload=b"query"))


def second_host_same_service():
    """A table holding IN1's flow to REMOTE:53 on XL:2000, and a Packet of IN2's flow to
    the same service, whose reply key clashes with it on port 2000."""
    t = table()
    assert add(t, udp(IN1, REMOTE, 1000, 53), 2000) == nat.OK
    p = packet()
    assert p.parse(udp(IN2, REMOTE, 1000, 53)) == nat.OK
    return t, p


def case_overlap():
    t, p = second_host_same_service()
    gen, state = ports(2000, 2000)
    assert t.add(p, XL, gen) == nat.OVERLAP
    assert t.add(p, XL, ports()[0]) == nat.OVERLAP  # port_gen gives None at once
    gen, state = ports(2000, 2001)
    assert t.add(p, XL, gen) == nat.OK and state["calls"] == 2
    goes(t, udp(IN2, REMOTE, 1000, 53), XL, 2001, REMOTE, 53)
    goes(t, udp(IN1, REMOTE, 1000, 53), XL, 2000, REMOTE, 53)
    # The same channel translated otherwise is another flow.
    assert add(t, udp(IN1, REMOTE, 1000, 53), 2002, xl=REMOTE2) == nat.OVERLAP


def case_port_gen_called_at_most_100_times():
    t, p = second_host_same_service()
    calls = [0]

    def always_taken():
        calls[0] += 1
        return 2000
    assert t.add(p, XL, always_taken) == nat.OVERLAP
    assert calls[0] == 100, calls[0]


def case_cannot_nat():
    t = table()
    for bad in ("0.0.0.1", "127.0.0.1", "169.254.9.9", "224.0.0.1", "239.1.2.3", "240.0.0.1",
                "255.255.255.255"):
        assert add(t, udp(IN1, nat.ip(bad), 1000, 53), 2000) == nat.CANNOT_NAT, bad
        assert add(t, udp(nat.ip(bad), REMOTE, 1000, 53), 2000) == nat.CANNOT_NAT, bad
    assert add(t, icmp_error(IN1, REMOTE, cut(udp(REMOTE, IN1, 1, 2))), 2000) == nat.CANNOT_NAT
    gre = pktlib.ipv4(47, IN1, REMOTE, bytes(8))
    assert add(t, gre, 2000) == nat.CANNOT_NAT
    for fine in ("1.0.0.1", "126.255.255.254", "169.253.0.1", "223.255.255.254"):
        assert add(t, udp(IN1, nat.ip(fine), 1000, 53), 2000) == nat.OK, fine


def case_full_table_makes_room_fairly():
    # room.py: expired first, then the longest idle unanswered flow, then the longest
    # idle flow of a host over its share; an answered flow within its host's share stays.
    clock = Clock()
    t = table(tcp=4, udp=1, icmp=1, clock=clock)
    a, b, c, d, e = (tcp(IN1, REMOTE, 1000 + i, 80) for i in range(5))
    for i, pkt in enumerate((a, b)):
        assert add(t, pkt, 5000 + i) == nat.OK
        later(t, clock, 1)
    assert add(t, tcp(IN2, REMOTE, 2000, 80), 6000) == nat.OK
    assert add(t, tcp(IN2, REMOTE, 2001, 80), 6001) == nat.OK
    for port in (6000, 6001, 5001):  # answered: IN2's two, IN1's b
        goes(t, tcp(REMOTE, XL, 80, port, flags=0x12), REMOTE, 80, IN2 if port > 5001 else IN1,
             port - 4000 if port > 5001 else 1001)
    later(t, clock, 10)
    # Full. IN1 (2 of 4: within its share) adds: a, unanswered and longest idle, goes.
    assert add(t, c, 5002) == nat.OK
    stays(t, a)
    goes(t, b, XL, 5001, REMOTE, 80)
    # IN1 again: no flow unanswered but c (just made, not idle); c goes.
    assert add(t, d, 5003) == nat.OK
    stays(t, c)
    goes(t, tcp(REMOTE, XL, 80, 5003, flags=0x12), REMOTE, 80, IN1, 1003)
    # Everything answered, IN1 and IN2 within their shares: no room for a fifth.
    assert add(t, e, 5004) == nat.FULL
    for port, host, sport in ((6000, IN2, 2000), (6001, IN2, 2001), (5001, IN1, 1001),
                              (5003, IN1, 1003)):
        goes(t, tcp(REMOTE, XL, 80, port), REMOTE, 80, host, sport)
    # An expired flow makes room at once: IN2's first goes quiet past its timeout.
    t.set_timeouts(tcp_established=30)
    for _ in range(3):
        later(t, clock, 11)
        for port, host, sport in ((6001, IN2, 2001), (5001, IN1, 1001), (5003, IN1, 1003)):
            goes(t, tcp(REMOTE, XL, 80, port), REMOTE, 80, host, sport)
    assert add(t, e, 5004) == nat.OK
    stays(t, tcp(REMOTE, XL, 80, 6000))
    # Each protocol has its own room.
    assert add(t, udp(IN1, REMOTE, 1, 2), 3) == nat.OK
    assert add(t, udp(IN1, REMOTE, 4, 5), 6) == nat.OK  # the first is unanswered: it goes
    stays(t, udp(IN1, REMOTE, 1, 2))
    goes(t, udp(IN1, REMOTE, 4, 5), XL, 6, REMOTE, 5)


def case_a_host_over_its_share_loses_its_own_flows():
    # IN2 floods (SYNs that get answers too); IN1 keeps its connection all along.
    clock = Clock()
    t = table(tcp=4, clock=clock, share=50)
    assert add(t, tcp(IN1, REMOTE, 1000, 80), 5000) == nat.OK
    goes(t, tcp(REMOTE, XL, 80, 5000, flags=0x12), REMOTE, 80, IN1, 1000)
    for i in range(12):
        later(t, clock, 1)
        assert add(t, tcp(IN2, REMOTE, 2000 + i, 80), 6000 + i) == nat.OK, i
        goes(t, tcp(REMOTE, XL, 80, 6000 + i, flags=0x12), REMOTE, 80, IN2, 2000 + i)
    goes(t, tcp(IN1, REMOTE, 1000, 80), XL, 5000, REMOTE, 80)
    assert t.count(nat.TCP) == 4


def case_idempotent_add():
    clock = Clock()
    t = table(tcp=2, clock=clock)
    a, b, c = (tcp(IN1, REMOTE, 1000 + i, 80) for i in range(3))
    assert add(t, a, 5000) == nat.OK
    assert add(t, b, 5001) == nat.OK
    later(t, clock, 5)
    assert add(t, a, 5000) == nat.OK  # exactly this flow: OK, and its use time is refreshed
    assert t.state(nat.TCP, IN1, REMOTE, 1000, 80)[2] == 0
    assert add(t, c, 5002) == nat.OK  # so b, the longer idle (both unanswered), makes room
    stays(t, b)
    goes(t, a, XL, 5000, REMOTE, 80)
    goes(t, tcp(REMOTE, XL, 80, 5000), REMOTE, 80, IN1, 1000)
    goes(t, c, XL, 5002, REMOTE, 80)


def case_flows_expire_by_protocol_and_state():
    clock = Clock()
    t = table(clock=clock)
    assert add(t, udp(IN1, REMOTE, 1000, 53), 6000) == nat.OK
    assert add(t, echo(IN1, REMOTE, 7), 7000) == nat.OK
    assert add(t, tcp(IN1, REMOTE, 1000, 80, flags=0x02), 5000) == nat.OK     # SYN
    assert add(t, tcp(IN1, REMOTE, 1001, 80, flags=0x02), 5001) == nat.OK
    goes(t, tcp(REMOTE, XL, 80, 5001, flags=0x12), REMOTE, 80, IN1, 1001)     # SYN-ACK
    # ICMP queries last 60 s (RFC 5508 REQ-2), an unanswered TCP open 240 s (transitory),
    # UDP 300 s (RFC 4787 REQ-5), an established TCP flow 7440 s (RFC 5382 REQ-5); any
    # packet of a flow refreshes it (outbound: REQ-6).
    at = clock.now
    later(t, clock, 60)                                                        # +60
    goes(t, echo(REMOTE, XL, 7000, reply=True), REMOTE, 7, IN1, 7)
    later(t, clock, 61)                                                        # +121
    stays(t, echo(REMOTE, XL, 7000, reply=True))
    goes(t, udp(REMOTE, XL, 53, 6000), REMOTE, 53, IN1, 1000)
    later(t, clock, 119)                                                       # +240
    goes(t, tcp(IN1, REMOTE, 1000, 80, flags=0x02), XL, 5000, REMOTE, 80)
    later(t, clock, 181)                                                       # +421
    goes(t, udp(IN1, REMOTE, 1000, 53), XL, 6000, REMOTE, 53)
    later(t, clock, 60)                                                        # +481
    stays(t, tcp(REMOTE, XL, 80, 5000, flags=0x12))
    goes(t, tcp(IN1, REMOTE, 1001, 80), XL, 5001, REMOTE, 80)
    later(t, clock, 241)                                                       # +722
    stays(t, udp(REMOTE, XL, 53, 6000))
    clock.now = at + 481 + 7440
    t.tick()
    goes(t, tcp(REMOTE, XL, 80, 5001), REMOTE, 80, IN1, 1001)
    # expire() reclaims what is over, a bounded number of slots at a time.
    assert t.count(nat.UDP) == 1 and t.count(nat.TCP) == 2 and t.count(nat.ICMP) == 1
    assert t.expire(2) <= 3
    t.expire(8)
    assert (t.count(nat.UDP), t.count(nat.TCP), t.count(nat.ICMP)) == (0, 1, 0)


def case_tcp_closing_and_resets_are_transitory():
    clock = Clock()
    t = table(clock=clock)
    syn = tcp(IN1, REMOTE, 1000, 80, flags=0x02)
    assert add(t, syn, 5000) == nat.OK
    goes(t, tcp(REMOTE, XL, 80, 5000, flags=0x12), REMOTE, 80, IN1, 1000)
    goes(t, tcp(IN1, REMOTE, 1000, 80, flags=0x11), XL, 5000, REMOTE, 80)   # FIN out: still
    later(t, clock, 1000)                                                    # established
    goes(t, tcp(REMOTE, XL, 80, 5000, flags=0x11), REMOTE, 80, IN1, 1000)   # FIN back: closing
    later(t, clock, 241)
    stays(t, tcp(IN1, REMOTE, 1000, 80, flags=0x10))
    # A SYN reopens the closed flow's key as a new flow (add makes it anew).
    assert add(t, syn, 5000) == nat.OK
    goes(t, tcp(REMOTE, XL, 80, 5000, flags=0x12), REMOTE, 80, IN1, 1000)
    # A RST is translated, then the flow lasts the transitory time, not refreshed by it.
    goes(t, tcp(REMOTE, XL, 80, 5000, flags=0x04), REMOTE, 80, IN1, 1000)
    later(t, clock, 200)
    goes(t, tcp(IN1, REMOTE, 1000, 80, flags=0x04), XL, 5000, REMOTE, 80)
    later(t, clock, 41)
    stays(t, tcp(IN1, REMOTE, 1000, 80, flags=0x10))
    # Simultaneous open (RFC 5382 REQ-2): SYN out, SYN in, both answered.
    assert add(t, tcp(IN1, REMOTE, 1002, 80, flags=0x02), 5002) == nat.OK
    goes(t, tcp(REMOTE, XL, 80, 5002, flags=0x02), REMOTE, 80, IN1, 1002)
    goes(t, tcp(IN1, REMOTE, 1002, 80, flags=0x12), XL, 5002, REMOTE, 80)
    later(t, clock, 1000)
    goes(t, tcp(REMOTE, XL, 80, 5002, flags=0x10), REMOTE, 80, IN1, 1002)


def case_icmp_errors_never_refresh_a_flow():
    # RFC 4787 REQ-12, RFC 5508 REQ-6: an error about a flow is translated, nothing more.
    clock = Clock()
    t = table(clock=clock)
    assert add(t, udp(IN1, REMOTE, 1000, 53), 6000) == nat.OK
    sent = udp(XL, REMOTE, 6000, 53, ttl=3)
    for _ in range(3):
        later(t, clock, 100)
        status, _, _ = translated(t, icmp_error(HOP, XL, cut(sent), typ=3, code=1))
        assert status == nat.OK
    later(t, clock, 1)
    stays(t, udp(REMOTE, XL, 53, 6000))
    assert translated(t, icmp_error(HOP, XL, cut(sent), typ=3, code=1))[0] == nat.UNTRANSLATED


def case_mappings_owners_and_permissions():
    # What endpoint-independent mapping and filtering ask of the table.
    clock = Clock()
    t = table(clock=clock)
    assert add(t, udp(IN1, REMOTE, 4000, 53), 7000) == nat.OK
    assert add(t, udp(IN1, REMOTE2, 4000, 3478), 7000) == nat.OK  # the same mapping
    assert t.mapping(nat.UDP, IN1, 4000) == (XL, 7000)
    assert t.mapping(nat.UDP, IN1, 4001) is None and t.mapping(nat.UDP, IN2, 4000) is None
    assert t.owner(nat.UDP, XL, 7000) == (IN1, 4000)
    assert t.owner(nat.UDP, XL, 7001) is None
    assert t.sent_to(nat.UDP, XL, 7000, REMOTE) and t.sent_to(nat.UDP, XL, 7000, REMOTE2, 3478)
    assert not t.sent_to(nat.UDP, XL, 7000, REMOTE2, 3479)
    assert not t.sent_to(nat.UDP, XL, 7000, HOP)
    # a port forward's flow: the inside end is the server
    assert add(t, tcp(REMOTE, XL, 33000, 80), 33000, REMOTE, nat.REDIRECT, (SERVER, 8080)) == nat.OK
    assert t.owner(nat.TCP, XL, 80) == (SERVER, 8080)
    assert t.mapping(nat.TCP, SERVER, 8080) == (XL, 80)
    assert t.sent_to(nat.TCP, XL, 80, REMOTE, 33000)
    # the last flow of a port gone: the port waits 120 s before it is handed out again
    assert not t.recently_freed(nat.UDP, 7000)
    t.remove_connections(IN1)
    assert t.mapping(nat.UDP, IN1, 4000) is None and t.recently_freed(nat.UDP, 7000)
    later(t, clock, 119)
    assert t.recently_freed(nat.UDP, 7000)
    later(t, clock, 1)
    assert not t.recently_freed(nat.UDP, 7000)
    # expired flows are no one's
    assert add(t, udp(IN2, REMOTE, 4000, 53), 7001) == nat.OK
    later(t, clock, 301)
    assert t.mapping(nat.UDP, IN2, 4000) is None and t.owner(nat.UDP, XL, 7001) is None


def case_remove_connections():
    t = table()
    assert add(t, tcp(IN1, REMOTE, 1000, 80), 5000) == nat.OK
    assert add(t, tcp(IN1, REMOTE2, 1001, 80), 5001) == nat.OK
    assert add(t, udp(IN1, REMOTE, 1000, 53), 6000) == nat.OK
    assert add(t, echo(IN1, REMOTE, 3), 7000) == nat.OK
    assert add(t, tcp(IN2, REMOTE, 1000, 80), 5002) == nat.OK
    assert add(t, tcp(REMOTE, XL, 2000, 22), 5003, FWD, nat.REDIRECT, (IN1, 22)) == nat.OK
    freed = t.remove_connections(IN1)
    assert sorted(freed.tcp) == [5000, 5001], freed
    assert list(freed.udp) == [6000] and list(freed.icmp) == [7000], freed
    assert freed[0] is freed.tcp
    for gone in (tcp(IN1, REMOTE, 1000, 80), tcp(REMOTE, XL, 80, 5000), tcp(REMOTE2, XL, 80, 5001),
                 udp(REMOTE, XL, 53, 6000), echo(REMOTE, XL, 7000, reply=True)):
        stays(t, gone)
    assert t.is_port_free(nat.TCP, REMOTE, XL, 80, 5000)
    goes(t, tcp(IN2, REMOTE, 1000, 80), XL, 5002, REMOTE, 80)
    goes(t, tcp(REMOTE, XL, 2000, 22), FWD, 5003, IN1, 22)  # its source is REMOTE: kept
    again = t.remove_connections(IN1)
    assert not (again.tcp or again.udp or again.icmp), again
    assert add(t, tcp(IN1, REMOTE, 1000, 80), 5000) == nat.OK


def case_is_port_free():
    t = table()
    assert t.is_port_free(nat.TCP, IN1, REMOTE, 1000, 80)
    assert add(t, tcp(IN1, REMOTE, 1000, 80), 5000) == nat.OK
    assert add(t, echo(IN1, REMOTE, 3), 7000) == nat.OK
    assert not t.is_port_free(nat.TCP, IN1, REMOTE, 1000, 80)
    assert not t.is_port_free(nat.TCP, REMOTE, XL, 80, 5000)   # the reply's key
    assert not t.is_port_free(nat.TCP, XL, REMOTE, 5000, 80)   # the same, the other way
    assert not t.is_port_free(nat.TCP, REMOTE, IN1, 80, 1000)
    assert t.is_port_free(nat.TCP, REMOTE, XL, 80, 5001)
    assert t.is_port_free(nat.UDP, REMOTE, XL, 80, 5000)
    assert t.is_port_free(nat.TCP, REMOTE2, XL, 80, 5000)
    assert not t.is_port_free(nat.ICMP, REMOTE, XL, 7000, 0)
    assert not t.is_port_free(nat.ICMP, REMOTE, XL, 7000, 12345)  # dst_port is ignored
    assert t.is_port_free(nat.ICMP, REMOTE, XL, 7001, 7000)


def case_reset():
    t = table(tcp=2)
    assert add(t, tcp(IN1, REMOTE, 1000, 80), 5000) == nat.OK
    assert add(t, udp(IN1, REMOTE, 1000, 53), 6000) == nat.OK
    t.reset()
    stays(t, tcp(IN1, REMOTE, 1000, 80))
    stays(t, udp(REMOTE, XL, 53, 6000))
    assert t.is_port_free(nat.TCP, REMOTE, XL, 80, 5000)
    for i in range(3):
        assert add(t, tcp(IN1, REMOTE, 1000 + i, 80), 5000 + i) == nat.OK
    goes(t, tcp(IN1, REMOTE, 1002, 80), XL, 5002, REMOTE, 80)


def case_packet_reuse():
    p = packet()
    assert p.parse(tcp(IN1, REMOTE, 1, 2)) == nat.OK
    assert (p.src, p.dst, p.proto, p.sport, p.dport) == (IN1, REMOTE, nat.TCP, 1, 2)
    assert p.parse(echo(REMOTE, IN2, 9, ttl=7)) == nat.OK
    assert (p.src, p.dst, p.proto, p.ttl) == (REMOTE, IN2, nat.ICMP, 7)
    assert (p.icmp_type, p.icmp_code, p.sport, p.dport) == (8, 0, 9, 9)
    big = bytearray(100)
    pkt = udp(IN1, REMOTE, 3, 4, payload=b"x")
    big[:len(pkt)] = pkt
    assert p.parse(big, len(pkt)) == nat.OK and p.length == len(pkt)
    assert p.parse(memoryview(big), len(pkt)) == nat.OK and p.sport == 3
    assert p.parse(big, len(pkt) - 1) == nat.MALFORMED


def case_addresses():
    assert nat.ip("192.168.4.2") == 0xC0A80402 and nat.ip_str(0xC0A80402) == "192.168.4.2"
    assert nat.ip("255.255.255.255") == 0xFFFFFFFF and nat.ip("0.0.0.0") == 0
    for bad in ("1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "", "a.b.c.d", "1..2.3"):
        try:
            nat.ip(bad)
        except ValueError:
            continue
        raise AssertionError("nat.ip(%r) accepted" % bad)
    assert [nat.status_name(s) for s in (nat.OK, nat.UNTRANSLATED, nat.TTL_EXCEEDED,
                                         nat.OVERLAP, nat.CANNOT_NAT, nat.MALFORMED)] == [
        "OK", "UNTRANSLATED", "TTL_EXCEEDED", "OVERLAP", "CANNOT_NAT", "MALFORMED"]


CASES = (case_add_and_translate_both_ways, case_redirect, case_untranslated_leaves_buffer,
         case_ttl_exceeded_leaves_buffer, case_udp_without_checksum,
         case_icmp_error_translated_back, case_overlap, case_port_gen_called_at_most_100_times,
         case_cannot_nat, case_full_table_makes_room_fairly,
         case_a_host_over_its_share_loses_its_own_flows, case_idempotent_add,
         case_flows_expire_by_protocol_and_state, case_tcp_closing_and_resets_are_transitory,
         case_icmp_errors_never_refresh_a_flow, case_mappings_owners_and_permissions,
         case_remove_connections, case_is_port_free, case_reset,
         case_packet_reuse, case_addresses)


def run_all(pure=False):
    return pktlib.run_cases(CASES, "TABLE_CASES", PURE, pure)
