"""scapy as the independent oracle for the `nat` engine's tests.

Packets are built with scapy (which computes every length and checksum) and handed
to the engine as bytearrays. The *expected* result of a translation is never derived
from the engine's output: it is rebuilt with scapy from the expected field values, so
scapy recomputes every checksum from scratch and a byte-for-byte comparison checks
the engine's incremental (RFC 1624) updates.
"""
import copy

import pytest
from hypothesis import HealthCheck, settings
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.packet import Raw

import nat

# Deterministic property runs for CI: derandomized, no example database, no deadline.
# (The `engine` fixture only selects a core, the same for every example.)
PROPERTY = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def _engines():
    """The engine's cores this runtime runs: its fast core, and the pure-Python core
    beside it where they differ (on CPython the fast core is the pure one)."""
    from nat import core
    return ("fast",) if core.NAME == "python" else ("fast", "pure")


ENGINES = _engines()
_pure = [False]


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request):
    """Import into a test module to run each of its tests on every core."""
    _pure[0] = request.param == "pure"
    yield request.param
    _pure[0] = False


def new_packet():
    return nat.Packet(pure=True) if _pure[0] else nat.Packet()


def new_table(**capacities):
    return nat.Table(pure=True, **capacities) if _pure[0] else nat.Table(**capacities)


REQUEST_TYPES = (8, 13, 15, 17)   # ICMP echo, timestamp, information, address mask
# (type, code, extra ICMP fields) of the error kinds RFC 5508 translates.
ERROR_KINDS = (
    (3, 1, {}),                       # host unreachable
    (3, 3, {}),                       # port unreachable
    (3, 4, {"nexthopmtu": 1280}),     # fragmentation needed (RFC 1191)
    (3, 13, {}),                      # administratively prohibited
    (4, 0, {}),                       # source quench
    (5, 1, {"gw": "198.51.100.254"}), # redirect
    (11, 0, {}),                      # time exceeded in transit
    (12, 0, {"ptr": 20}),             # parameter problem
)


def addr(a):
    """An address for scapy: ints (the engine's form) become dotted quads."""
    return a if isinstance(a, str) else nat.ip_str(a)


def wire(pkt):
    """The packet's bytes as the engine gets them."""
    return bytearray(bytes(pkt))


def ip_header(src, dst, ttl=64, options=(), ident=0x1234, flags=0, frag=0, tos=0, proto=None):
    kw = {"proto": proto} if proto is not None else {}
    return IP(src=addr(src), dst=addr(dst), ttl=ttl, id=ident, flags=flags, frag=frag, tos=tos,
              options=list(options), **kw)


def tcp_packet(src, sport, dst, dport, payload=b"", tcp_options=(), flags="PA", **ip_kw):
    return (ip_header(src, dst, **ip_kw)
            / TCP(sport=sport, dport=dport, seq=0x01020304, ack=0x0A0B0C0D, flags=flags,
                  window=29200, options=list(tcp_options))
            / Raw(payload))


def udp_packet(src, sport, dst, dport, payload=b"", checksum=True, **ip_kw):
    udp = UDP(sport=sport, dport=dport) if checksum else UDP(sport=sport, dport=dport, chksum=0)
    return ip_header(src, dst, **ip_kw) / udp / Raw(payload)


def icmp_query(src, dst, ident, icmp_type=8, seq=1, payload=b"", **ip_kw):
    return ip_header(src, dst, **ip_kw) / ICMP(type=icmp_type, id=ident, seq=seq) / Raw(payload)


def ip_options(kind):
    """A few realistic IPv4 option lists (scapy pads them to 32-bit words)."""
    return {
        0: [],
        1: [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
        2: [IPOption_RR(routers=["10.9.8.7"])],
        3: [IPOption_NOP(), IPOption_RR(routers=["10.9.8.7", "10.6.5.4", "0.0.0.0"])],
    }[kind]


def rewritten(pkt, src=None, dst=None, sport=None, dport=None, ident=None, ttl=None):
    """A copy of `pkt` with the given fields changed and every checksum left to scapy
    (a UDP checksum of 0, "none", stays 0). This is what a translation must produce."""
    p = copy.deepcopy(pkt)
    ip = p[IP]
    if src is not None:
        ip.src = addr(src)
    if dst is not None:
        ip.dst = addr(dst)
    if ttl is not None:
        ip.ttl = ttl
    ip.chksum = None
    if TCP in p:
        l4 = p[TCP]
    elif UDP in p:
        l4 = p[UDP]
    else:
        l4 = None
    if l4 is not None:
        if sport is not None:
            l4.sport = sport
        if dport is not None:
            l4.dport = dport
        if not (isinstance(l4, UDP) and l4.chksum == 0):
            l4.chksum = None
    elif ICMP in p:
        ident = sport if ident is None else ident   # an ICMP query's id is its "port"
        if ident is not None:
            p[ICMP].id = ident
        p[ICMP].chksum = None
    return p


def first_fragment(pkt, nbytes, frag_ident=0x4242):
    """The first fragment (MF set, offset 0) of `pkt` holding `nbytes` (a multiple of 8)
    of its transport data. The transport checksum stays the whole datagram's."""
    assert nbytes % 8 == 0
    ip = pkt[IP]
    data = bytes(ip.payload)[:nbytes]
    return (IP(src=ip.src, dst=ip.dst, ttl=ip.ttl, id=frag_ident, flags="MF", frag=0,
               proto=ip.proto, options=ip.options) / Raw(data))


def later_fragment(pkt, offset_bytes, frag_ident=0x4242):
    """A non-first fragment (offset > 0) of `pkt`: no transport header in it."""
    ip = pkt[IP]
    data = bytes(ip.payload)[offset_bytes:]
    return (IP(src=ip.src, dst=ip.dst, ttl=ip.ttl, id=frag_ident, flags=0,
               frag=offset_bytes // 8, proto=ip.proto, options=ip.options) / Raw(data))


def quote_of(pkt, length=None):
    """What an ICMP error quotes of `pkt`: all of it, `length` bytes, or with
    length="short" the IP header plus 8 bytes (RFC 792's minimum)."""
    raw = bytes(pkt)
    if length == "short":
        length = (raw[0] & 15) * 4 + 8
    return raw if length is None else raw[:length]


def icmp_error(src, dst, icmp_type, icmp_code, quoted, ttl=64, options=(), **icmp_fields):
    """An ICMP error from `src` to `dst` carrying `quoted` (bytes) after its header."""
    return (ip_header(src, dst, ttl=ttl, options=options, ident=0x7777)
            / ICMP(type=icmp_type, code=icmp_code, **icmp_fields) / Raw(bytes(quoted)))


def sum16(data):
    """One's complement sum of `data` (an odd tail padded with 0), folded to 16 bits."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def word_for_zero_checksum(pkt):
    """For a TCP or UDP packet whose payload is two zero bytes: the payload word that
    makes its transport checksum compute to 0 (UDP then sends 0xFFFF, RFC 768)."""
    c0 = _built_checksum(pkt)
    # c0 = ~S0, so S0 + c0 == 0xFFFF: a payload word of c0 makes the sum all ones.
    return (0 if c0 == 0xFFFF else c0).to_bytes(2, "big")


def _built_checksum(pkt):
    raw = bytes(pkt)
    l4 = (raw[0] & 15) * 4
    at = l4 + (16 if raw[9] == 6 else 6)
    return int.from_bytes(raw[at:at + 2], "big")


class PortGen:
    """A port generator for Table.add that hands out `ports` in order (then None)
    and counts how often it was called."""

    def __init__(self, *ports, repeat=None):
        self.ports = list(ports)
        self.repeat = repeat
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.repeat is not None:
            return self.repeat
        return self.ports.pop(0) if self.ports else None


def parsed(buf, n=None):
    """A Packet parsed OK from `buf` (fails the test otherwise)."""
    p = new_packet()
    status = p.parse(buf) if n is None else p.parse(buf, n)
    assert status == nat.OK, "parse: %s" % nat.status_name(status)
    return p


def hexdiff(got, want):
    """A short description of where two packets differ, for assertion messages."""
    got, want = bytes(got), bytes(want)
    if got == want:
        return "equal"
    at = [i for i in range(min(len(got), len(want))) if got[i] != want[i]]
    return "len %d vs %d; differing offsets %s\n got  %s\n want %s" % (
        len(got), len(want), at[:16], got.hex(), want.hex())


def fix_ip_checksum(buf, at=0):
    """Recompute the IPv4 header checksum of the header at `at` (over its IHL, at least
    20 bytes), so a deliberately broken field is the packet's only fault."""
    hl = max(20, (buf[at] & 15) * 4)
    if at + hl > len(buf):
        return buf
    buf[at + 10] = buf[at + 11] = 0
    c = 0xFFFF - sum16(buf[at:at + hl])
    buf[at + 10] = c >> 8
    buf[at + 11] = c & 0xFF
    return buf


def establish(table, pkt, xl_host, port, mode=nat.NAT, redirect=None):
    """Add the flow of scapy packet `pkt`, translated to `port`; asserts OK."""
    gen = PortGen(port)
    kw = {} if redirect is None else {"redirect": (nat.ip(addr(redirect[0])), redirect[1])}
    status = table.add(parsed(wire(pkt)), nat.ip(addr(xl_host)), gen, mode, **kw)
    assert status == nat.OK, "add: %s" % nat.status_name(status)


def translate(table, pkt):
    """Translate scapy packet `pkt`: (status, resulting bytes, the Packet)."""
    buf = wire(pkt)
    p = parsed(buf)
    return table.translate(p), buf, p


def assert_translates(table, pkt, expected):
    """`pkt` translates OK to exactly scapy's `expected`; returns the Packet."""
    status, buf, p = translate(table, pkt)
    assert status == nat.OK, "translate: %s" % nat.status_name(status)
    assert buf == wire(expected), hexdiff(buf, wire(expected))
    return p


def assert_refused(table, pkt, status):
    """`pkt` is not translated (with `status`) and its buffer is untouched."""
    got, buf, _ = translate(table, pkt)
    assert got == status, "translate: %s, wanted %s" % (nat.status_name(got),
                                                         nat.status_name(status))
    assert buf == wire(pkt), hexdiff(buf, wire(pkt))
