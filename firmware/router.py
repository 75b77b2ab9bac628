# The router: moves IPv4 packets between a LAN link and a WAN link through the nat
# engine. Board-independent; the board supplies the links and the waiting
# (boards/README.md).
#
#   import board, router
#   router.start(board)            # config, links, Router, run in the background
#   router.running.counters()      # from the REPL
#
# Per packet (step_lan / step_wan) the router receives into one preallocated buffer,
# parses, translates in place and sends; for a packet of a known flow nothing allocates
# (host_tests/upy/router_alloc.py checks it under heap_lock on the unix and WASI ports).
# Addresses on that path are compared as 16-bit halves of the buffer's bytes: a whole
# address as an int is a heap object on 32-bit MicroPython. New flows (the slow path)
# may allocate.
from array import array

import config
import nat
from compat import const, ticks_ms
from icmp import (ErrorBuilder, echo_reply_in_place, is_echo_request, TIME_EXCEEDED,
                  UNREACHABLE, FRAG_NEEDED)
from portgen import PortGen

BATCH = 32          # packets drained from each link per loop iteration
WAIT_MS = 100       # longest wait for traffic; bounds how late tick() and stop() act
ICMP_RATE = 10      # router-originated ICMP errors per second ...
ICMP_BURST = 20     # ... and burst (RFC 1812 4.3.2.8)

_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_OVERLAP = const(3)
_ICMP = const(1)
_TCP = const(6)
_UDP = const(17)

# Counter indices; COUNTERS names them, in order.
_RX_LAN = const(0)
_RX_WAN = const(1)
_OUT = const(2)
_IN = const(3)
_FLOWS_ADDED = const(4)
_FORWARDS_HIT = const(5)
_ECHO = const(6)
_MALFORMED = const(7)
_TO_ROUTER = const(8)
_LAN_LOCAL = const(9)
_BAD_SOURCE = const(10)
_UNSOLICITED = const(11)
_NOT_NATTABLE = const(12)
_OVERLAPPED = const(13)
_TOO_BIG = const(14)
_TTL_SENT = const(15)
_TTL_LIMITED = const(16)
_TTL_SILENT = const(17)
_FRAG_NEEDED = const(18)
_ERRORS = const(19)

COUNTERS = (
    "rx_lan",                   # packets received on the LAN link
    "rx_wan",                   # ... on the WAN link
    "translated_out",           # LAN -> WAN, sent
    "translated_in",            # WAN -> LAN, sent
    "flows_added",              # new flows: outbound NAT and port-forward flows
    "forwards_hit",             # new flows made by a port forward
    "echo_replies",             # pings of the router's own addresses answered
    "dropped_malformed",        # failed to parse (or a malformed ICMP error)
    "dropped_to_router",        # to the router's addresses, not an echo request
    "dropped_lan_local",        # LAN packets to the LAN subnet, broadcast or multicast
    "dropped_bad_source",       # LAN source off the LAN subnet, or WAN source on it
    "dropped_unsolicited",      # WAN packets of no flow and no port forward
    "dropped_cannot_nat",       # protocol or addresses the engine never translates
    "dropped_overlap",          # no free translated port
    "dropped_too_big",          # longer than the outgoing link's MTU
    "ttl_exceeded_sent",        # ICMP Time Exceeded sent
    "ttl_exceeded_rate_limited",  # ... not sent: over the rate limit
    "ttl_exceeded_silent",      # ... not sent: about an ICMP error, a fragment, broadcast
    "frag_needed_sent",         # ICMP Fragmentation Needed sent (DF set, too big)
    "errors",                   # exceptions caught by run() (last_error has the latest)
)

_PROTO_NAMES = ((nat.TCP, "tcp"), (nat.UDP, "udp"), (nat.ICMP, "icmp"))


class Router:
    """Forwards between `lan` and `wan` (Link objects) per `cfg` (from config.load).

    wait(timeout_ms) blocks until a link may have a packet (board.wait). ms is the
    millisecond clock of the ICMP rate limit, clock the table's seconds clock (None: the
    engine's own); tests pass fake ones."""

    def __init__(self, cfg, lan, wan, wait=None, ms=ticks_ms, clock=None, batch=BATCH,
                 icmp_rate=ICMP_RATE, icmp_burst=ICMP_BURST):
        self.cfg = cfg
        self.lan = lan
        self.wan = wan
        self._wait = wait
        self._batch = batch
        t = cfg["table"]
        self.table = table = nat.Table(tcp=t["tcp"], udp=t["udp"], icmp=t["icmp"],
                                       clock=clock)
        self._buf = bytearray(max(lan.mtu, wan.mtu))
        self._pkt = nat.Packet()
        self._c = array("I", [0] * len(COUNTERS))
        self._lan_mtu = lan.mtu
        self._wan_mtu = wan.mtu
        la, lm = cfg["lan"]["addr_int"], cfg["lan"]["mask_int"]
        wa, wm = cfg["wan"]["addr_int"], cfg["wan"]["mask_int"]
        wb = wa | (wm ^ 0xFFFFFFFF)
        self._wan_addr = wa  # slow path only
        self._lan_hi, self._lan_lo = la >> 16, la & 0xFFFF
        self._wan_hi, self._wan_lo = wa >> 16, wa & 0xFFFF
        self._lm_hi, self._lm_lo = lm >> 16, lm & 0xFFFF
        self._ln_hi, self._ln_lo = (la & lm) >> 16, la & lm & 0xFFFF
        self._wb_hi, self._wb_lo = wb >> 16, wb & 0xFFFF
        self._errors = ErrorBuilder(ms, icmp_rate, icmp_burst)
        fw = cfg["forwards"]
        self._forwards = tuple((f["proto_num"], f["port"], f["to_int"], f["to_port"])
                               for f in fw)
        ports = cfg["ports"]
        self._portgen = PortGen(table, ports["first"], ports["last"],
                                reserved=[(f[0], f[1]) for f in self._forwards])
        self._client_port = 0
        self._client_port_gen = self._client_port_once
        self._running = False
        self._stopped = False
        self.last_error = None

    # ---- per-packet path: no allocation for packets of known flows

    def _receive(self, link, rx):
        """Receive and parse one packet: 0 if none was pending, 1 if it was malformed
        (counted), 2 if it parsed."""
        n = link.recv_into(self._buf)
        if n <= 0:
            return 0
        c = self._c
        c[rx] += 1
        if self._pkt.parse(self._buf, n):
            c[_MALFORMED] += 1
            return 1
        return 2

    def step_lan(self):
        """Handle one packet from the LAN link; 0 when none was pending, else 1."""
        got = self._receive(self.lan, _RX_LAN)
        if got < 2:
            return got
        buf = self._buf
        c = self._c
        p = self._pkt
        if not self._on_lan(buf, 12):
            c[_BAD_SOURCE] += 1  # BCP 38; and the LAN link has no route back to it
            return 1
        hi = buf[16] << 8 | buf[17]
        lo = buf[18] << 8 | buf[19]
        if (hi == self._lan_hi and lo == self._lan_lo) or (
                hi == self._wan_hi and lo == self._wan_lo):
            self._to_router(self.lan)
            return 1
        if buf[16] >= 224 or ((hi & self._lm_hi) == self._ln_hi
                              and (lo & self._lm_lo) == self._ln_lo) or (
                hi == self._wb_hi and lo == self._wb_lo):
            # The LAN's own traffic, broadcast, multicast, or a directed broadcast to
            # the WAN subnet (RFC 1812 5.3.5.2: not forwarded by default).
            c[_LAN_LOCAL] += 1
            return 1
        length = buf[2] << 8 | buf[3]
        if length > self._wan_mtu:
            self._too_big()
            return 1
        st = self.table.translate(p)
        if st == _OK:
            self.wan.send(buf, length)
            c[_OUT] += 1
        elif st == _UNTRANSLATED:
            self._new_outbound(length)
        elif st == _TTL_EXCEEDED:
            self._time_exceeded(self.lan, self._lan_hi, self._lan_lo)
        else:
            c[_MALFORMED] += 1
        return 1

    def step_wan(self):
        """Handle one packet from the WAN link; 0 when none was pending, else 1."""
        got = self._receive(self.wan, _RX_WAN)
        if got < 2:
            return got
        buf = self._buf
        c = self._c
        if self._on_lan(buf, 12):
            c[_BAD_SOURCE] += 1  # spoofed: the LAN's addresses never arrive from the WAN
            return 1
        length = buf[2] << 8 | buf[3]
        if length > self._lan_mtu:
            c[_TOO_BIG] += 1  # silently: an unsolicited packet must not get an answer
            return 1
        st = self.table.translate(self._pkt)
        if st == _OK:
            self.lan.send(buf, length)
            c[_IN] += 1
        elif st == _UNTRANSLATED:
            hi = buf[16] << 8 | buf[17]
            lo = buf[18] << 8 | buf[19]
            if hi == self._wan_hi and lo == self._wan_lo:
                self._to_wan_address()
            elif hi == self._lan_hi and lo == self._lan_lo:
                self._to_router(self.wan)
            else:
                c[_UNSOLICITED] += 1
        elif st == _TTL_EXCEEDED:
            self._time_exceeded(self.wan, self._wan_hi, self._wan_lo)
        else:
            c[_MALFORMED] += 1
        return 1

    def _on_lan(self, buf, at):
        return (((buf[at] << 8 | buf[at + 1]) & self._lm_hi) == self._ln_hi
                and ((buf[at + 2] << 8 | buf[at + 3]) & self._lm_lo) == self._ln_lo)

    def _to_router(self, link):
        """A packet for one of the router's own addresses: answer pings, drop the rest.
        TTL does not matter here: the packet has arrived."""
        buf = self._buf
        hl = (buf[0] & 15) << 2
        length = buf[2] << 8 | buf[3]
        if is_echo_request(buf, hl, length) and _single_host(buf[12]):
            echo_reply_in_place(buf, hl)
            link.send(buf, length)
            self._c[_ECHO] += 1
        else:
            self._c[_TO_ROUTER] += 1

    def _to_wan_address(self):
        """An untranslated WAN packet for the WAN address: a ping of the router, a new
        connection to a port forward, or unsolicited (dropped without any answer,
        RFC 5382 REQ-4: no RST, no ICMP)."""
        buf = self._buf
        proto = buf[9]
        if proto == _TCP or proto == _UDP:
            dport = self._pkt.dport  # None for a non-first fragment
            for fw in self._forwards:
                if fw[0] == proto and fw[1] == dport:
                    self._forward_in(fw)
                    return
        elif proto == _ICMP:
            self._to_router(self.wan)
            return
        self._c[_UNSOLICITED] += 1

    def _time_exceeded(self, link, hi, lo):
        """ICMP Time Exceeded (type 11 code 0) from the receiving link's address back to
        the packet's source, within the rate limit. Allocates nothing."""
        if not self._may_send_error():
            self._c[_TTL_SILENT] += 1
        elif not self._errors.allow():
            self._c[_TTL_LIMITED] += 1
        else:
            n = self._errors.build(self._buf, hi, lo, TIME_EXCEEDED, 0, 0)
            link.send(self._errors.buf, n)
            self._c[_TTL_SENT] += 1

    def _may_send_error(self):
        """RFC 1812 4.3.2.7: no ICMP error about an ICMP error, a fragment other than the
        first, a broadcast or multicast packet, or a source that is not one host."""
        buf = self._buf
        if (buf[6] & 0x1F) | buf[7] or buf[16] >= 224 or not _single_host(buf[12]):
            return False
        if buf[9] == _ICMP:
            t = buf[(buf[0] & 15) << 2]
            if t == 3 or t == 4 or t == 5 or t == 11 or t == 12:
                return False
        return True

    # ---- slow path: new flows, oversized packets (may allocate)

    def _new_outbound(self, length):
        p = self._pkt
        c = self._c
        if self._buf[8] <= 1:
            # It would expire here anyway: answer without spending a flow on it.
            self._time_exceeded(self.lan, self._lan_hi, self._lan_lo)
            return
        sport = p.sport
        if sport is None:  # not TCP/UDP/ICMP query, a fragment, an ICMP error of no flow
            c[_NOT_NATTABLE] += 1
            return
        gen = self._portgen.prepare(p.proto, p.dst, p.dport, self._wan_addr, sport)
        st = self.table.add(p, self._wan_addr, gen)
        if st != _OK:
            c[_OVERLAPPED if st == _OVERLAP else _NOT_NATTABLE] += 1  # or CANNOT_NAT
            return
        c[_FLOWS_ADDED] += 1
        st = self.table.translate(p)
        if st == _OK:
            self.wan.send(self._buf, length)
            c[_OUT] += 1
        else:
            c[_ERRORS] += 1  # the flow just added must match: an engine bug
            self.last_error = "translate after add: %s" % nat.status_name(st)

    def _forward_in(self, fw):
        """A new connection to a port forward: a REDIRECT flow to the LAN server. The
        server sees the real client (xl_host is the client's own address and port) and
        replies through the router."""
        p = self._pkt
        c = self._c
        if self._buf[8] <= 1:
            self._time_exceeded(self.wan, self._wan_hi, self._wan_lo)
            return
        self._client_port = p.sport
        st = self.table.add(p, p.src, self._client_port_gen, nat.REDIRECT, (fw[2], fw[3]))
        if st != _OK:
            c[_OVERLAPPED if st == _OVERLAP else _NOT_NATTABLE] += 1  # or CANNOT_NAT
            return
        c[_FLOWS_ADDED] += 1
        c[_FORWARDS_HIT] += 1
        st = self.table.translate(p)
        if st == _OK:
            self.lan.send(self._buf, p.length)
            c[_IN] += 1
        else:
            c[_ERRORS] += 1
            self.last_error = "translate after add: %s" % nat.status_name(st)

    def _client_port_once(self):
        port = self._client_port
        self._client_port = None
        return port

    def _too_big(self):
        """A LAN packet longer than the WAN's MTU. With DF set, tell the sender the MTU
        (RFC 1191, RFC 4787 REQ-13); fragmenting DF=0 packets is not implemented."""
        self._c[_TOO_BIG] += 1
        if self._buf[6] & 0x40 and self._may_send_error() and self._errors.allow():
            n = self._errors.build(self._buf, self._lan_hi, self._lan_lo, UNREACHABLE,
                                   FRAG_NEEDED, self._wan_mtu)
            self.lan.send(self._errors.buf, n)
            self._c[_FRAG_NEEDED] += 1

    # ---- the loop

    def poll(self):
        """One loop iteration without waiting: refresh the table's clock, then drain
        each link up to a batch. Returns the number of packets handled."""
        self.table.tick()
        n = 0
        for _ in range(self._batch):
            if not self.step_lan():
                break
            n += 1
        for _ in range(self._batch):
            if not self.step_wan():
                break
            n += 1
        return n

    def run(self):
        """Forward until stop(). Exceptions (a link failing to send...) are counted and
        the loop goes on: a router must not die of one bad moment."""
        if self._stopped:
            return
        self._running = True
        wait = self._wait
        while self._running:
            try:
                busy = self.poll()
            except Exception as e:
                self._c[_ERRORS] += 1
                self.last_error = repr(e)
                busy = 0
            if not busy and wait is not None:
                wait(WAIT_MS)

    def stop(self):
        self._stopped = True
        self._running = False

    def is_running(self):
        return self._running

    # ---- inspection (slow path)

    def counters(self):
        """Every counter, plus the table's occupancy, as one dict."""
        d = {}
        for i in range(len(COUNTERS)):
            d[COUNTERS[i]] = self._c[i]
        for proto, name in _PROTO_NAMES:
            d["flows_" + name] = self.table.count(proto)
            d["capacity_" + name] = self.table.capacity(proto)
        return d

    def flows(self):
        """The table's flows as readable lines, e.g.
        'tcp 192.168.4.2:40000 -> 203.0.113.5:80 as 198.51.100.2:40000 -> 203.0.113.5:80
        idle 3s'."""
        names = dict(_PROTO_NAMES)
        out = []
        for (proto, src, sport, dst, dport, xl_host, xl_port, final_ip, final_port,
             idle) in self.table.flows():
            out.append("%s %s:%d -> %s:%d as %s:%d -> %s:%d idle %ds" % (
                names.get(proto, str(proto)), nat.ip_str(src), sport, nat.ip_str(dst), dport,
                nat.ip_str(xl_host), xl_port, nat.ip_str(final_ip), final_port, idle))
        return out


def _single_host(first_byte):
    """False for sources in 0/8, 127/8, multicast and 240/4 (incl. broadcast)."""
    return first_byte != 0 and first_byte != 127 and first_byte < 224


running = None


def start(board, path=None):
    """Load the config, open the board's links and run a Router in the background.
    A no-op (returning the running router) if one is running already."""
    global running
    if running is not None and running.is_running():
        print("natrouter: already running")
        return running
    cfg, problems = config.load(path or board.CONFIG_PATH)
    for msg in problems:
        print("natrouter: config:", msg)
    lan, wan = board.open_links(cfg)
    r = Router(cfg, lan, wan, wait=board.wait)
    r._running = True  # before the thread starts, so a second start() sees it
    running = r
    board.start(r.run)
    print("natrouter: LAN %s/%s, WAN %s/%s via %s" % (
        cfg["lan"]["addr"], cfg["lan"]["mask"], cfg["wan"]["addr"], cfg["wan"]["mask"],
        cfg["wan"]["gateway"]))
    return r
