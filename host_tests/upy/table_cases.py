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


def table(tcp=8, udp=8, icmp=8):
    if PURE[0]:
        return nat.Table(tcp=tcp, udp=udp, icmp=icmp, pure=True)
    return nat.Table(tcp=tcp, udp=udp, icmp=icmp)


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


def case_lru_reuse_when_full():
    t = table(tcp=4, udp=1, icmp=1)
    pkts = [tcp(IN1, REMOTE, 1000 + i, 80) for i in range(6)]
    for i in range(4):
        assert add(t, pkts[i], 5000 + i) == nat.OK
    goes(t, pkts[0], XL, 5000, REMOTE, 80)  # flow 0 used: flow 1 is now the oldest
    assert add(t, pkts[4], 5004) == nat.OK  # full: flow 1 makes room
    stays(t, pkts[1])
    stays(t, tcp(REMOTE, XL, 80, 5001))
    assert t.is_port_free(nat.TCP, REMOTE, XL, 80, 5001)
    for i in (0, 2, 3, 4):
        goes(t, pkts[i], XL, 5000 + i, REMOTE, 80)
        goes(t, tcp(REMOTE, XL, 80, 5000 + i), REMOTE, 80, IN1, 1000 + i)
    # The other protocols are full at one flow and never fail to add either.
    assert add(t, udp(IN1, REMOTE, 1, 2), 3) == nat.OK
    assert add(t, udp(IN1, REMOTE, 4, 5), 6) == nat.OK
    stays(t, udp(IN1, REMOTE, 1, 2))
    goes(t, udp(IN1, REMOTE, 4, 5), XL, 6, REMOTE, 5)


def case_idempotent_add():
    t = table(tcp=2)
    a, b, c = (tcp(IN1, REMOTE, 1000 + i, 80) for i in range(3))
    assert add(t, a, 5000) == nat.OK
    assert add(t, b, 5001) == nat.OK
    assert add(t, a, 5000) == nat.OK  # exactly this flow: OK, and its use time is refreshed
    assert add(t, c, 5002) == nat.OK  # so b, the least recently used, makes room
    stays(t, b)
    goes(t, a, XL, 5000, REMOTE, 80)
    goes(t, tcp(REMOTE, XL, 80, 5000), REMOTE, 80, IN1, 1000)
    goes(t, c, XL, 5002, REMOTE, 80)


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
         case_cannot_nat, case_lru_reuse_when_full, case_idempotent_add,
         case_remove_connections, case_is_port_free, case_reset,
         case_packet_reuse, case_addresses)


def run_all(pure=False):
    return pktlib.run_cases(CASES, "TABLE_CASES", PURE, pure)
