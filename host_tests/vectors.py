"""Packet vectors for the nat engine, with scapy as the oracle.

`build()` returns a list of records; `write(path)` stores them as JSON lines, which
host_tests/upy/replay.py replays on CPython, the MicroPython unix port and the 32-bit
WASI build (all three have json and binascii). Every expected output packet is built by
scapy from the fields it must have (scapy computes the checksums); none comes from the
engine. Records (key "op"; every record has a "name"; addresses are ints, packets hex):

  table  tcp, udp, icmp      a fresh Table(tcp=, udp=, icmp=)
  add    pkt, xl, ports, mode, redir, want
                             parse pkt, then t.add(p, xl, gen, mode, redir) == want, where
                             gen() returns ports[0], ports[1], ... then None
  xl     pkt, n, want, out, f
                             parse pkt (n bytes valid; the rest is link-layer padding), then
                             t.translate(p) == want; the whole buffer must equal out (pkt
                             itself when want is not OK) and p's attributes f
  parse  pkt, n, want, f     p.parse(buf, n) == want; on OK, p's attributes f
"""
import ipaddress
import json
import random

from scapy.all import (ICMP, IP, TCP, UDP, IPOption_EOL, IPOption_NOP, IPOption_Router_Alert,
                       IPOption_RR, Raw, raw)

from nat import (CANNOT_NAT, MALFORMED, NAT, OK, OVERLAP, REDIRECT, TTL_EXCEEDED,
                 UNTRANSLATED)

ICMP_P, TCP_P, UDP_P = 1, 6, 17
ECHO_REQUEST, ECHO_REPLY = 8, 0


def A(text):
    return int(ipaddress.IPv4Address(text))


def dotted(n):
    return str(ipaddress.IPv4Address(n))


# ---- packets, built by scapy


def make(proto, src, dst, sport, dport, ttl=64, ipid=1, ipopts=None, payload=b"",  # noqa: PLR0913, PLR0917
         flags="S", tcpopts=None, nocsum=False, itype=ECHO_REQUEST, seq=1, frag=0, mf=False):
    """One packet of `proto` between (src, sport) and (dst, dport); for an ICMP query
    sport is its id (dport is ignored). Everything but the endpoints and TTL is style,
    so make(...) with translated endpoints is the expected output."""
    ip = IP(src=dotted(src), dst=dotted(dst), ttl=ttl, id=ipid, options=ipopts or [],
            flags="MF" if mf else 0, frag=frag)
    if proto == TCP_P:
        l4 = TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=0 if flags == "S" else 77,
                 window=8192, options=tcpopts or [])
    elif proto == UDP_P:
        l4 = UDP(sport=sport, dport=dport, chksum=0 if nocsum else None)
    else:
        l4 = ICMP(type=itype, code=0, id=sport, seq=seq)
        if itype in (13, 14):
            l4.ts_ori, l4.ts_rx, l4.ts_tx = 1000, 2000 if itype == 14 else 0, 3000
        elif itype in (17, 18):
            l4.addr_mask = "255.255.255.0" if itype == 18 else "0.0.0.0"
    return raw(ip / l4 / Raw(payload)) if payload else raw(ip / l4)


def icmp_error(src, dst, quoted, ttl=64, itype=3, code=3, ipid=7):
    """An ICMP error (type itype) from src to dst quoting the bytes `quoted`."""
    kw = {}
    if itype == 3 and code == 4:
        kw["nexthopmtu"] = 1400
    elif itype == 5:
        kw["gw"] = "203.0.113.254"
    elif itype == 12:
        kw["ptr"] = 8
    return raw(IP(src=dotted(src), dst=dotted(dst), ttl=ttl, id=ipid)
               / ICMP(type=itype, code=code, **kw) / Raw(quoted))


def quote(pkt, cut):
    """What an error quotes of pkt: all of it (cut None) or its IP header plus cut bytes."""
    if cut is None:
        return pkt
    return pkt[:(pkt[0] & 15) * 4 + cut]


def fields(pkt):
    """The Packet attributes the contract defines for pkt, read by scapy."""
    ip = IP(pkt)
    f = {"src": A(ip.src), "dst": A(ip.dst), "proto": ip.proto, "ttl": ip.ttl,
         "length": ip.len}
    if ip.frag:
        return f
    if ip.proto in (TCP_P, UDP_P):
        l4 = ip[TCP] if ip.proto == TCP_P else ip[UDP]
        f["sport"], f["dport"] = l4.sport, l4.dport
    elif ip.proto == ICMP_P:
        icmp = ip[ICMP]
        f["icmp_type"], f["icmp_code"] = icmp.type, icmp.code
        if icmp.type in (0, 8, 13, 14, 15, 16, 17, 18):
            f["sport"] = f["dport"] = icmp.id
    return f


def _ones(b):
    s = sum(b[i] << 8 | b[i + 1] for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum_ok(pkt):
    """Whether scapy finds pkt's IP and transport checksums right (the oracle's self-check)."""
    ip = IP(pkt)
    again = IP(pkt)
    del again.chksum
    layer = {TCP_P: TCP, UDP_P: UDP, ICMP_P: ICMP}.get(ip.proto)
    if layer is not None and not ip.frag and not ip.flags.MF and layer in again:
        if not (layer is UDP and ip[UDP].chksum == 0):
            del again[layer].chksum
    return raw(again) == pkt


# ---- flows: what the table must do with each direction


class Flow:
    """A flow of `proto` from (src, sport) to (dst, dport), translated to (xl, xport);
    REDIRECT sends it on to (final, fport). For ICMP, ports are the query id."""

    def __init__(self, proto, src, sport, dst, dport, xl, xport, final=None, fport=None):
        self.proto = proto
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.xl, self.xport = xl, xport
        self.mode = NAT if final is None else REDIRECT
        self.final = dst if final is None else final
        self.fport = dport if fport is None else fport
        if proto == ICMP_P:  # the id is both ports, inside (sport) and outside (xport)
            self.dport, self.fport = sport, xport

    def request(self):
        return (self.src, self.dst, self.sport, self.dport)

    def request_out(self):
        return (self.xl, self.final, self.xport, self.fport)

    def reply(self):
        return (self.final, self.xl, self.fport, self.xport)

    def reply_out(self):
        return (self.dst, self.src, self.dport, self.sport)

    def keys(self):
        """Both directions' table keys, as the engine must see them."""
        def key(t):
            if self.proto == ICMP_P:
                return (ICMP_P, t[0], t[1], t[2])
            return (self.proto,) + t
        return key(self.request()), key(self.reply())

    def redirect(self):
        return None if self.mode == NAT else [self.final, self.fport]


class Vectors:
    def __init__(self):
        self.records = []

    def _put(self, op, name, **kw):
        kw["op"] = op
        kw["name"] = name
        self.records.append(kw)

    def table(self, name, tcp=64, udp=64, icmp=64):
        self._put("table", name, tcp=tcp, udp=udp, icmp=icmp)

    def add(self, name, pkt, xl, ports, mode=NAT, redir=None, want=OK):
        self._put("add", name, pkt=pkt.hex(), xl=xl, ports=list(ports), mode=mode,
                  redir=redir, want=want)

    def add_flow(self, name, flow, ports=None, want=OK, **style):
        itype = {"itype": ECHO_REQUEST} if flow.proto == ICMP_P else {}
        pkt = make(flow.proto, *flow.request(), **dict(itype, **style))
        self.add(name, pkt, flow.xl, [flow.xport] if ports is None else ports, flow.mode,
                 flow.redirect(), want)

    def xl(self, name, pkt, want=OK, out=None, pad=b""):
        if want == OK:
            assert checksum_ok(out), name
            f = fields(out)
        else:
            out, f = pkt, {}
        self._put("xl", name, pkt=(pkt + pad).hex(), n=len(pkt) + len(pad), want=want,
                  out=(out + pad).hex(), f=f)

    def parse(self, name, pkt, want=OK, n=None):
        f = fields(pkt) if want == OK else {}
        self._put("parse", name, pkt=pkt.hex(), n=len(pkt) if n is None else n, want=want, f=f)

    def both_ways(self, name, flow, ttl=64, **style):
        """The flow's request and its reply, each translated."""
        req_style = dict(style)
        rep_style = dict(style)
        if flow.proto == ICMP_P:
            itype = style.get("itype", ECHO_REQUEST)
            req_style["itype"] = itype
            rep_style["itype"] = itype + 1 if itype != ECHO_REQUEST else ECHO_REPLY
        self.xl(name + " request", make(flow.proto, *flow.request(), ttl=ttl, **req_style),
                out=make(flow.proto, *flow.request_out(), ttl=ttl - 1, **req_style))
        self.xl(name + " reply", make(flow.proto, *flow.reply(), ttl=ttl, **rep_style),
                out=make(flow.proto, *flow.reply_out(), ttl=ttl - 1, **rep_style))

    def error_in(self, name, flow, cut, router=None, itype=3, code=3, ttl=50, qttl=3,
                 want=OK, **style):
        """An error about the flow's translated request, from `router` (default: the
        final destination itself) to xl: translated back to the inside host, quoting
        the request as the inside host sent it (TTL aside)."""
        if flow.proto == ICMP_P:
            style = dict(style, itype=ECHO_REQUEST)
        sent = make(flow.proto, *flow.request_out(), ttl=qttl, **style)
        orig = make(flow.proto, *flow.request(), ttl=qttl, **style)
        frm = flow.final if router is None else router
        # RFC 5508 REQ-5: an error from the quoted packet's destination itself appears
        # to come from where the inside host sent its packet; an outside router's address
        # is kept. A REDIRECT flow's request goes inwards: errors about it come from the
        # inside and leave from the public address (4.2.2), whoever sent them.
        out_src = flow.dst if frm == flow.final or flow.mode == REDIRECT else frm
        pkt = icmp_error(frm, flow.xl, quote(sent, cut), ttl, itype, code)
        out = icmp_error(out_src, flow.src, quote(orig, cut), ttl - 1, itype, code)
        self.xl(name, pkt, want, out if want == OK else None)

    def error_out(self, name, flow, cut, ttl=64, qttl=60, **style):
        """The inside host reports an error about the reply it received: the error leaves
        from xl, quoting the reply as the remote sent it."""
        if flow.proto == ICMP_P:
            style = dict(style, itype=ECHO_REPLY)
        got = make(flow.proto, *flow.reply_out(), ttl=qttl, **style)
        sent = make(flow.proto, *flow.reply(), ttl=qttl, **style)
        pkt = icmp_error(flow.src, flow.dst, quote(got, cut), ttl, 3, 3)
        out = icmp_error(flow.xl, flow.final, quote(sent, cut), ttl - 1, 3, 3)
        self.xl(name, pkt, OK, out)


# ---- addresses

INSIDE = A("192.168.4.2")
INSIDE2 = A("192.168.4.3")
PUBLIC = A("203.0.113.5")      # the router's outside address (xl_host for NAT)
ROUTER_IN = A("192.168.4.1")   # the router's inside address (xl_host for REDIRECT)
REMOTE = A("198.51.100.7")
REMOTE2 = A("198.51.100.8")
HOP = A("198.51.100.1")        # an intermediate router
CLIENT = A("198.51.100.99")    # outside client of a port forward
SERVER = A("192.168.4.10")     # inside server behind a port forward
TCP_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
            ("WScale", 7)]
IP_OPTS = [IPOption_Router_Alert(), IPOption_NOP(), IPOption_EOL()]


def core(v):
    """Hand-written cases: each contract rule at least once."""
    v.table("core", tcp=16, udp=16, icmp=16)
    tcp = Flow(TCP_P, INSIDE, 40000, REMOTE, 443, PUBLIC, 50000)
    udp = Flow(UDP_P, INSIDE, 5353, REMOTE, 53, PUBLIC, 50001)
    udp0 = Flow(UDP_P, INSIDE, 6000, REMOTE, 7000, PUBLIC, 50002)
    echo = Flow(ICMP_P, INSIDE, 0x1234, REMOTE, 0, PUBLIC, 0x4321)
    fwd = Flow(TCP_P, CLIENT, 33000, PUBLIC, 80, ROUTER_IN, 60000, SERVER, 8080)
    fwd_udp = Flow(UDP_P, CLIENT, 33001, PUBLIC, 5000, ROUTER_IN, 60001, SERVER, 5001)
    opts = Flow(TCP_P, INSIDE, 40001, REMOTE2, 22, PUBLIC, 50003)
    for name, flow in (("tcp", tcp), ("udp", udp), ("udp0", udp0), ("echo", echo),
                       ("fwd", fwd), ("fwd-udp", fwd_udp), ("opts", opts)):
        v.add_flow("add " + name, flow)
    v.add_flow("add tcp again (idempotent)", tcp)

    v.both_ways("tcp", tcp, payload=b"GET / HTTP/1.0\r\n\r\n", flags="PA")
    v.both_ways("tcp syn+options", tcp, tcpopts=TCP_OPTS)
    v.both_ways("tcp ip-options", opts, ipopts=IP_OPTS, tcpopts=TCP_OPTS, payload=b"x" * 33)
    v.both_ways("tcp ip-record-route", opts, ipopts=[IPOption_RR(routers=["0.0.0.0"] * 3)])
    v.both_ways("udp", udp, payload=b"\x12\x34\x01\x00\x00\x01" + bytes(10))
    v.both_ways("udp odd length", udp, payload=b"abc")
    v.both_ways("udp no checksum", udp0, payload=b"no checksum", nocsum=True)
    v.both_ways("echo", echo, payload=b"ping" * 14)
    v.both_ways("redirect tcp", fwd, payload=b"hello", flags="PA")
    v.both_ways("redirect udp", fwd_udp, payload=b"q")
    v.both_ways("tcp big", tcp, payload=bytes(range(256)) * 5 + b"tail", flags="PA")
    v.both_ways("tcp ttl 2", tcp, ttl=2)
    big = make(TCP_P, *tcp.request(), payload=b"p" * 100, flags="PA")
    v.xl("tcp padded frame", big, out=make(TCP_P, *tcp.request_out(), ttl=63,
                                           payload=b"p" * 100, flags="PA"), pad=b"\xee" * 6)

    # TTL: RFC 1812 5.3.1, never forward with TTL 0.
    for ttl in (1, 0):
        v.xl("tcp ttl %d" % ttl, make(TCP_P, *tcp.request(), ttl=ttl), TTL_EXCEEDED)
        v.xl("udp reply ttl %d" % ttl, make(UDP_P, *udp.reply(), ttl=ttl), TTL_EXCEEDED)
        v.xl("echo ttl %d" % ttl, make(ICMP_P, *echo.request(), ttl=ttl), TTL_EXCEEDED)
    v.xl("unknown ttl 1", make(TCP_P, INSIDE, REMOTE, 1, 2, ttl=1), UNTRANSLATED)

    # No flow: untouched.
    v.xl("unknown tcp", make(TCP_P, INSIDE, REMOTE, 40000, 444), UNTRANSLATED)
    v.xl("tcp flow, udp packet", make(UDP_P, *tcp.request()), UNTRANSLATED)
    v.xl("udp flow, tcp packet", make(TCP_P, *udp.reply()), UNTRANSLATED)
    v.xl("reply from other port", make(TCP_P, REMOTE, PUBLIC, 444, 50000), UNTRANSLATED)
    v.xl("reply to other xl port", make(TCP_P, REMOTE, PUBLIC, 443, 50009), UNTRANSLATED)
    v.xl("echo other id", make(ICMP_P, INSIDE, REMOTE, 0x1235, 0), UNTRANSLATED)
    v.xl("redirect: request's original destination as reply",
         make(TCP_P, PUBLIC, CLIENT, 80, 33000), UNTRANSLATED)
    v.xl("other protocol (GRE)", raw(IP(src=dotted(INSIDE), dst=dotted(REMOTE), proto=47)
                                     / Raw(bytes(8))), UNTRANSLATED)
    v.xl("non-first fragment", make(TCP_P, *tcp.request(), frag=10), UNTRANSLATED)

    # ICMP errors quoting each protocol, full and cut to 8 bytes (RFC 792), and more.
    for name, flow, style in (("tcp", tcp, dict(payload=b"data" * 5, flags="PA")),
                              ("tcp options", opts, dict(tcpopts=TCP_OPTS, ipopts=IP_OPTS)),
                              ("udp", udp, dict(payload=b"query")),
                              ("udp no checksum", udp0, dict(nocsum=True, payload=b"z")),
                              ("echo", echo, dict(payload=b"ping")),
                              ("redirect tcp", fwd, dict(payload=b"hi", flags="PA")),
                              ("redirect udp", fwd_udp, dict(payload=b"q"))):
        for cut in (None, 8):
            what = "full" if cut is None else "cut 8"
            v.error_in("unreachable from dst, %s, %s" % (name, what), flow, cut, **style)
            v.error_in("time exceeded from hop, %s, %s" % (name, what), flow, cut, router=HOP,
                       itype=11, code=0, **style)
    v.error_in("unreachable, tcp cut 20 (checksum quoted)", tcp, 20, router=HOP, payload=b"d")
    v.error_in("unreachable, tcp cut 28", tcp, 28, router=HOP, payload=b"d" * 20, flags="PA")
    v.error_in("frag needed", tcp, 8, router=HOP, code=4, payload=b"x" * 40)
    v.error_in("source quench", udp, 8, itype=4, code=0)
    v.error_in("redirect", udp, None, router=HOP, itype=5, code=1)
    v.error_in("parameter problem", tcp, 8, router=HOP, itype=12, code=0)
    v.error_in("time exceeded, echo ip-options", echo, None, router=HOP, itype=11, code=0,
               ipopts=IP_OPTS)
    v.error_in("error ttl 1", tcp, 8, router=HOP, ttl=1, want=TTL_EXCEEDED)
    v.error_in("error ttl 2", tcp, 8, router=HOP, ttl=2)
    v.error_out("inside host: udp port unreachable", udp, None, payload=b"answer")
    v.error_out("inside host: tcp unreachable, cut 8", tcp, 8, flags="SA")
    v.error_out("inside host: echo reply unreachable", echo, None, payload=b"pong")
    stray = make(TCP_P, PUBLIC, REMOTE, 40404, 443, ttl=3)
    v.xl("error quoting an unknown flow", icmp_error(HOP, PUBLIC, quote(stray, 8)), UNTRANSLATED)

    # An error goes back to the source of what it quotes: elsewhere, it is not translated.
    sent = make(UDP_P, *udp.request_out(), ttl=3)
    for dst in (A("10.1.2.3"), A("203.0.113.255"), INSIDE, REMOTE2):
        v.xl("error about a live flow to %s" % dotted(dst), icmp_error(HOP, dst, quote(sent, 8)),
             UNTRANSLATED)
    got = make(UDP_P, *udp.reply_out(), ttl=60)
    v.xl("inside host's error not to the quoted source",
         icmp_error(INSIDE, REMOTE2, quote(got, 8)), UNTRANSLATED)

    # Queries: requests in the direction that opened the flow, replies in the other.
    v.xl("outside echo request with the flow's id",
         make(ICMP_P, REMOTE, PUBLIC, echo.xport, 0, itype=ECHO_REQUEST), UNTRANSLATED)
    v.xl("outside timestamp request with the flow's id",
         make(ICMP_P, REMOTE, PUBLIC, echo.xport, 0, itype=13), UNTRANSLATED)
    v.xl("inside echo reply with the flow's id",
         make(ICMP_P, INSIDE, REMOTE, echo.sport, 0, itype=ECHO_REPLY), UNTRANSLATED)

    # Checksum corner cases (RFC 1624 section 3, RFC 768): aim the translated packet's
    # checksum at 0 and see the engine land on the same value scapy computes.
    checksum_corners(v, tcp, udp, echo)


def _aim(build, find_word):
    """A style value that makes build(value)'s checksum 0 (0xFFFF for UDP): the
    checksum computed with the word at 0 is exactly the word that completes the sum."""
    return find_word(build(0))


def checksum_corners(v, tcp, udp, echo):
    def payload(w):
        return b"abcd" + bytes([w >> 8, w & 255])

    def l4sum(pkt, at):
        return pkt[at] << 8 | pkt[at + 1]

    # TCP and ICMP: a transport checksum of 0 after translation.
    for name, flow, proto, at in (("tcp", tcp, TCP_P, 36), ("echo", echo, ICMP_P, 22)):
        for direction, before, after in (("request", flow.request(), flow.request_out()),
                                         ("reply", flow.reply(), flow.reply_out())):
            style = {"itype": ECHO_REQUEST if direction == "request" else ECHO_REPLY} \
                if proto == ICMP_P else {"flags": "PA"}
            w = _aim(lambda w: make(proto, *after, ttl=63, payload=payload(w), **style),
                     lambda pkt: l4sum(pkt, at))
            out = make(proto, *after, ttl=63, payload=payload(w), **style)
            assert l4sum(out, at) == 0, name
            v.xl("%s %s checksum becomes 0" % (name, direction),
                 make(proto, *before, payload=payload(w), **style), out=out)
    # UDP: a sum that would give 0 is sent as 0xFFFF.
    w = _aim(lambda w: make(UDP_P, *udp.request_out(), ttl=63, payload=payload(w)),
             lambda pkt: l4sum(pkt, 26))
    out = make(UDP_P, *udp.request_out(), ttl=63, payload=payload(w))
    assert l4sum(out, 26) == 0xFFFF
    v.xl("udp checksum becomes 0xFFFF", make(UDP_P, *udp.request(), payload=payload(w)), out=out)
    # IPv4 header checksum of 0 after translation.
    ipid = _aim(lambda i: make(TCP_P, *tcp.request_out(), ttl=63, ipid=i),
                lambda pkt: l4sum(pkt, 10))
    out = make(TCP_P, *tcp.request_out(), ttl=63, ipid=ipid)
    assert l4sum(out, 10) == 0
    v.xl("ip header checksum becomes 0", make(TCP_P, *tcp.request(), ipid=ipid), out=out)


def adds(v):
    """add(): CANNOT_NAT, OVERLAP, retries, REDIRECT of ICMP, query types."""
    v.table("adds", tcp=8, udp=16, icmp=8)
    for bad in ("0.1.2.3", "127.0.0.1", "169.254.1.1", "224.0.0.251", "239.255.255.250",
                "240.0.0.1", "255.255.255.255"):
        v.add("cannot nat: dst %s" % bad, make(UDP_P, INSIDE, A(bad), 1000, 53), PUBLIC, [9],
              want=CANNOT_NAT)
        v.add("cannot nat: src %s" % bad, make(UDP_P, A(bad), REMOTE, 1000, 53), PUBLIC, [9],
              want=CANNOT_NAT)
    for edge in ("1.0.0.0", "126.255.255.255", "128.0.0.0", "169.253.255.255",
                 "169.255.0.0", "223.255.255.255"):
        v.add("edge of a special range: %s" % edge, make(UDP_P, INSIDE, A(edge), 1000, 53),
              PUBLIC, [A(edge) & 0x7FFF | 1024])
    v.add("cannot nat: GRE", raw(IP(src=dotted(INSIDE), dst=dotted(REMOTE), proto=47)
                                 / Raw(bytes(8))), PUBLIC, [9], want=CANNOT_NAT)
    v.add("cannot nat: ICMP error", icmp_error(INSIDE, REMOTE, make(UDP_P, REMOTE, INSIDE, 1, 2)),
          PUBLIC, [9], want=CANNOT_NAT)
    v.add("cannot nat: echo reply (only requests open a flow)",
          make(ICMP_P, INSIDE, REMOTE, 77, 0, itype=ECHO_REPLY), PUBLIC, [78], want=CANNOT_NAT)
    v.add("cannot nat: timestamp reply", make(ICMP_P, INSIDE, REMOTE, 77, 0, itype=14),
          PUBLIC, [78], want=CANNOT_NAT)
    for sport, dport in ((0, 80), (1000, 0)):
        for proto in (TCP_P, UDP_P):
            v.add("cannot nat: port 0 (%d, %d, proto %d)" % (sport, dport, proto),
                  make(proto, INSIDE, REMOTE, sport, dport), PUBLIC, [9], want=CANNOT_NAT)
    v.add("cannot nat: REDIRECT to port 0", make(TCP_P, CLIENT, PUBLIC, 33010, 81), ROUTER_IN,
          [6], REDIRECT, [SERVER, 0], want=CANNOT_NAT)
    v.add("port_gen's 0 is skipped", make(UDP_P, INSIDE, REMOTE, 1234, 53), PUBLIC, [0, 4321])
    v.xl("port_gen's 0 skipped: the flow got the next", make(UDP_P, REMOTE, PUBLIC, 53, 4321),
         out=make(UDP_P, REMOTE, INSIDE, 53, 1234, ttl=63))
    v.add("echo id 0 is fine", make(ICMP_P, INSIDE, REMOTE, 0, 0), PUBLIC, [0])
    v.add("cannot nat: REDIRECT of echo", make(ICMP_P, INSIDE, REMOTE, 5, 0), ROUTER_IN, [6],
          REDIRECT, [SERVER, 0], want=CANNOT_NAT)
    for itype in (13, 15, 17):
        q = Flow(ICMP_P, INSIDE, 100 + itype, REMOTE, 0, PUBLIC, 200 + itype)
        v.add_flow("add icmp type %d" % itype, q, itype=itype)
        v.both_ways("icmp type %d" % itype, q, itype=itype)

    first = Flow(UDP_P, INSIDE, 1000, REMOTE, 53, PUBLIC, 20000)
    v.add_flow("first", first)
    # Another inside host, same remote service: the first candidate's reply key is taken.
    v.add_flow("every candidate taken", Flow(UDP_P, INSIDE2, 1000, REMOTE, 53, PUBLIC, 20000),
               ports=[20000] * 3, want=OVERLAP)
    v.add_flow("port_gen gives None at once", Flow(UDP_P, INSIDE2, 1000, REMOTE, 53, PUBLIC, 1),
               ports=[], want=OVERLAP)
    second = Flow(UDP_P, INSIDE2, 1000, REMOTE, 53, PUBLIC, 20001)
    v.add_flow("second candidate free", second, ports=[20000, 20001])
    v.both_ways("second candidate", second, payload=b"x")
    v.both_ways("first still there", first, payload=b"y")
    v.add_flow("same channel, other xl host", Flow(UDP_P, INSIDE, 1000, REMOTE, 53, REMOTE2,
                                                   20002), want=OVERLAP)
    v.add_flow("same channel as redirect", Flow(UDP_P, INSIDE, 1000, REMOTE, 53, ROUTER_IN,
                                                20003, SERVER, 53), want=OVERLAP)
    # Not the same remote: the same translated port is free again.
    other = Flow(UDP_P, INSIDE2, 1000, REMOTE2, 53, PUBLIC, 20000)
    v.add_flow("same xl port, other remote", other)
    v.both_ways("same xl port, other remote", other, payload=b"z")
    v.both_ways("first after that", first, payload=b"w")
    # ICMP: the id is the whole key on both sides.
    e1 = Flow(ICMP_P, INSIDE, 1, REMOTE, 0, PUBLIC, 500)
    v.add_flow("echo 1", e1)
    v.add_flow("echo 2, id taken", Flow(ICMP_P, INSIDE2, 1, REMOTE, 0, PUBLIC, 500),
               ports=[500], want=OVERLAP)
    e2 = Flow(ICMP_P, INSIDE2, 1, REMOTE, 0, PUBLIC, 501)
    v.add_flow("echo 2, next id", e2, ports=[500, 501])
    v.both_ways("echo 1", e1)
    v.both_ways("echo 2", e2)


def malformed(v):
    """parse(): MALFORMED per the contract, and the attributes of well-formed packets."""
    good = make(TCP_P, INSIDE, REMOTE, 1, 2, tcpopts=TCP_OPTS)
    v.parse("tcp with options", good)
    v.parse("ip options", make(UDP_P, INSIDE, REMOTE, 1, 2, ipopts=IP_OPTS, payload=b"u"))
    v.parse("echo", make(ICMP_P, INSIDE, REMOTE, 99, 0, payload=b"e"))
    v.parse("error", icmp_error(HOP, PUBLIC, quote(good, 8), itype=11, code=1))
    v.parse("other protocol", raw(IP(src=dotted(INSIDE), dst=dotted(REMOTE), proto=50)
                                  / Raw(bytes(4))))
    v.parse("non-first fragment, no header", raw(IP(src=dotted(INSIDE), dst=dotted(REMOTE),
                                                    proto=TCP_P, frag=3) / Raw(b"abcd")))
    v.parse("padded", good + bytes(10), n=len(good) + 10)

    def bad_header(pkt, **change):
        ip = IP(pkt)
        for k, value in change.items():
            setattr(ip, k, value)
        del ip.chksum
        return raw(ip)

    v.parse("version 6", bad_header(good, version=6), MALFORMED)
    v.parse("ihl 4", bad_header(good, ihl=4), MALFORMED)
    v.parse("total length < header", bad_header(good, len=19), MALFORMED)
    v.parse("total length < options", bad_header(make(UDP_P, INSIDE, REMOTE, 1, 2,
                                                      ipopts=IP_OPTS), len=22), MALFORMED)
    v.parse("total length > n", good, MALFORMED, n=len(good) - 1)
    v.parse("n < 20", good[:19], MALFORMED)
    corrupt = bytearray(good)
    corrupt[10] ^= 1
    v.parse("bad header checksum", bytes(corrupt), MALFORMED)
    corrupt = bytearray(good)
    corrupt[8] ^= 0x40  # the TTL, without fixing the checksum
    v.parse("header changed after checksum", bytes(corrupt), MALFORMED)

    def cut_to(pkt, size, mf=False):
        ip = IP(pkt)
        ip.len = size
        if mf:
            ip.flags = "MF"
        del ip.chksum
        return raw(ip)[:size]

    v.parse("tcp header cut (first fragment)", cut_to(good, 20 + 19, mf=True), MALFORMED)
    v.parse("tcp header cut", cut_to(good, 20 + 12), MALFORMED)
    v.parse("tcp options beyond packet", cut_to(good, 20 + 24), MALFORMED)
    v.parse("tcp exactly its header", cut_to(good, len(good)))
    udp = make(UDP_P, INSIDE, REMOTE, 1, 2, payload=b"abcdefgh")
    v.parse("udp header cut", cut_to(udp, 27, mf=True), MALFORMED)
    v.parse("udp length beyond the payload", cut_to(udp, 28), MALFORMED)
    v.parse("udp first fragment, length beyond it", cut_to(udp, 28, mf=True))
    v.parse("udp exactly 8", make(UDP_P, INSIDE, REMOTE, 1, 2))
    for ulen in (0, 7):
        short = bytearray(udp)
        short[24:26] = ulen.to_bytes(2, "big")
        v.parse("udp length %d" % ulen, bytes(short), MALFORMED)  # the checksum is not read
        frag = bytearray(cut_to(udp, 28, mf=True))
        frag[24:26] = ulen.to_bytes(2, "big")
        v.parse("udp first fragment, length %d" % ulen, bytes(frag), MALFORMED)
    padded = bytearray(udp + b"\0\0\0\0")  # UDP length 16 of 20 bytes: trailing padding
    padded[2:4] = (len(padded)).to_bytes(2, "big")
    padded[10:12] = b"\0\0"
    padded[10:12] = (0xFFFF ^ _ones(padded[:20])).to_bytes(2, "big")
    v.parse("udp length below the payload", bytes(padded))
    echo = make(ICMP_P, INSIDE, REMOTE, 9, 0, payload=b"abcdefgh")
    v.parse("icmp header cut", cut_to(echo, 27), MALFORMED)
    v.parse("icmp exactly 8", cut_to(echo, 28))


def random_flows(v, count, seed=20261125):
    """`count` random flows in one table (no eviction), each way, some errors."""
    rnd = random.Random(seed)
    v.table("random", tcp=count, udp=count, icmp=count)
    taken = set()
    flows = []
    for i in range(count):
        proto = rnd.choice((TCP_P, TCP_P, UDP_P, UDP_P, ICMP_P))
        redirect = proto != ICMP_P and rnd.random() < 0.2
        while True:
            inside = rnd.choice((A("192.168.0.0"), A("10.0.0.0"), A("172.16.0.0"))) \
                | rnd.getrandbits(16)
            remote = A(rnd.choice(("198.51.100.0", "203.0.113.0", "8.8.0.0", "151.101.0.0"))) \
                | rnd.getrandbits(8)
            sport, dport, xport = (rnd.randrange(1, 65536) for _ in range(3))
            if redirect:
                f = Flow(proto, remote, sport, PUBLIC, dport, ROUTER_IN, xport,
                         inside, rnd.randrange(1, 65536))
            else:
                f = Flow(proto, inside, sport, remote, dport, PUBLIC, xport)
            k0, k1 = f.keys()
            if k0 != k1 and not ({k0, k1} & taken):
                break
        taken |= {k0, k1}
        flows.append(f)
        style = {"payload": bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 60)))}
        if proto == TCP_P:
            style["flags"] = rnd.choice(("S", "SA", "PA", "FA", "R"))
            if rnd.random() < 0.3:
                style["tcpopts"] = TCP_OPTS
        elif proto == UDP_P:
            style["nocsum"] = rnd.random() < 0.2
        if rnd.random() < 0.15:
            style["ipopts"] = IP_OPTS
        style["ipid"] = rnd.getrandbits(16)
        v.add_flow("random %d add" % i, f, ports=[xport])
        v.both_ways("random %d" % i, f, ttl=rnd.randrange(2, 256), **style)
        if rnd.random() < 0.25:
            v.error_in("random %d error" % i, f, rnd.choice((None, 8)),
                       router=rnd.choice((None, HOP)), itype=rnd.choice((3, 11)), code=0,
                       **style)
    # Every flow again, in a new order: nothing was lost or overwritten.
    rnd.shuffle(flows)
    for i, f in enumerate(flows):
        v.both_ways("random again %d" % i, f, payload=b"again")


def build(random_count=300):
    v = Vectors()
    core(v)
    adds(v)
    malformed(v)
    random_flows(v, random_count)
    return v.records


def write(path, records=None):
    records = build() if records is None else records
    with open(path, "w") as out:
        for r in records:
            out.write(json.dumps(r, separators=(",", ":")) + "\n")
    return len(records)


if __name__ == "__main__":  # python host_tests/vectors.py out.jsonl
    import sys
    print("%d records in %s" % (write(sys.argv[1]), sys.argv[1]))
