# The router: moves IPv4 packets between a LAN link and a WAN link through the nat
# engine. Board-independent; the board supplies the links and the waiting
# (boards/README.md).
#
#   import board, router
#   router.start(board)            # config, links, Router, run in the background
#   router.running.counters()      # from the REPL
#
# Per packet the router receives into one buffer, screens it (screen.py: parse and the
# address policy, one call), translates it in place (nat.core.translate) and sends it:
# four calls, with everything they need held in locals of the drain loop. For a packet
# of a known flow nothing allocates (host_tests/upy/router_alloc.py checks it under
# heap_lock on the unix and WASI ports). New flows and packets for the router itself
# take the slow path, which may allocate.
from array import array
from collections import namedtuple

import config
import nat
from nat import core
from nat.checksum import put16, sum16
from compat import const, sleep_ms, ticks_ms
from counters import (NAMES as COUNTERS, C_RX_LAN, C_RX_WAN, C_FLOWS_ADDED,
                      C_FORWARDS_HIT, C_ECHO, C_MALFORMED, C_TO_ROUTER, C_ICMP_ERROR,
                      C_UNSOLICITED, C_CANNOT_NAT, C_OVERLAP, C_TOO_BIG, C_TTL_SENT,
                      C_TTL_LIMITED, C_TTL_SILENT, C_FRAG_NEEDED, C_ERRORS, C_HAIRPIN,
                      C_FILTER_IN, C_FILTERED, C_FULL, C_FRAGMENTED)
from icmp import ErrorBuilder, echo_reply_in_place, TIME_EXCEEDED, UNREACHABLE, FRAG_NEEDED
from portgen import PortGen
import fragments
import screen

BATCH = 32          # packets drained from each link per loop iteration
WAIT_MS = 100       # longest wait for traffic; bounds how late tick() and stop() act
ICMP_RATE = 10      # router-originated ICMP errors per second ...
ICMP_BURST = 20     # ... and burst (RFC 1812 4.3.2.8)
EXPIRE_SCAN = 64    # flow slots of each protocol checked for expiry each second

# Copies for the drain loops (MicroPython inlines only a module's own consts).
_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_OVERLAP = const(3)
_CANNOT_NAT = const(4)
_FULL = const(6)
_V_PASS = const(0)
_V_DROP = const(1)
_V_TO_ROUTER = const(2)
_V_TOO_BIG = const(3)
_V_HAIRPIN = const(4)
_V_FRAGMENT = const(5)
_F_LEN = const(1)
_F_L4 = const(2)
_F_KIND = const(5)
_F_DPORT = const(7)
_F_TYPE = const(8)
_F_CODE = const(9)
_F_FRAG = const(10)
_K_QUERY = const(3)
_K_ERROR = const(4)
_FRAG_DF = const(0x4000)
_FRAG_MF = const(0x2000)
_FRAG_OFFSET = const(0x1FFF)
_C_OUT = const(2)
_C_IN = const(3)
_IP_TTL = const(8)
_IP_PROTO = const(9)
_IP_SRC = const(12)
_IP_DST = const(16)
_TCP = const(6)
_UDP = const(17)
_ICMP = const(1)
_ECHO_REQUEST = const(8)
_DHCP_SERVER = const(67)
_DHCP_MAX = const(576)   # RFC 2131 2: what every client takes

# A port forward: proto 6 or 17, the WAN port, the LAN host (an int) and its port.
Forward = namedtuple("Forward", ("proto", "port", "to", "to_port"))

_PROTO_NAMES = ((nat.TCP, "tcp"), (nat.UDP, "udp"), (nat.ICMP, "icmp"))


class Router:
    """Forwards between `lan` and `wan` (Link objects) per `cfg` (from config.load).

    wait(timeout_ms) blocks until a link may have a packet (board.wait). ms is the
    millisecond clock of the ICMP rate limit, clock the table's seconds clock (None: the
    engine's own); tests pass fake ones. buf: the receive buffer, at least as long as
    both links' MTU (a board may hand one out that its links frame in place)."""

    def __init__(self, cfg, lan, wan, wait=None, ms=ticks_ms, clock=None, batch=BATCH,
                 icmp_rate=ICMP_RATE, icmp_burst=ICMP_BURST, buf=None, dhcp=None):
        self.cfg = cfg
        self.lan = lan
        self.wan = wan
        self._wait = wait
        self._batch = batch
        self.dhcp = dhcp  # a dhcp.DhcpServer for requests the LAN link delivers, or None
        self._dhcp_pkt = bytearray(28 + _DHCP_MAX) if dhcp is not None else None
        self._job = None  # call(): a function the REPL wants run on this thread
        # Bound once: taking a bound method allocates, and the drain loops need four.
        self._lan_recv, self._lan_send = lan.recv_into, lan.send
        self._wan_recv, self._wan_send = wan.recv_into, wan.send
        t = cfg["table"]
        self.table = table = nat.Table(tcp=t["tcp"], udp=t["udp"], icmp=t["icmp"],
                                       clock=clock, timeouts=cfg["nat"]["timeouts"],
                                       share=cfg["nat"]["share"])
        self._filtering = cfg["nat"]["filtering"]
        self._started_s = table.now()
        size = max(lan.mtu, wan.mtu)
        if buf is None:
            buf = bytearray(size)
        elif len(buf) < size:
            raise ValueError("receive buffer of %d bytes for an MTU of %d" % (len(buf), size))
        self._buf = buf
        # Fragments (fragments.py): tracked datagrams, held out-of-order pieces, and a
        # buffer to cut packets too long for a link into. Side 0 is the LAN, 1 the WAN.
        self.frags = fragments.Fragments(ms=ms)
        self._frag_out = bytearray(size)
        self._links = (lan, wan)
        self._sends = (self._lan_send, self._wan_send)
        self._pkt = nat.Packet()
        self._pkt.bind(buf)
        self._f = self._pkt.fields
        self._pol = screen.policy(cfg, lan.mtu, wan.mtu, cfg["allow_source_route"])
        self._c = array("I", bytes(4 * len(COUNTERS)))
        self._lan_mtu = lan.mtu
        self._wan_mtu = wan.mtu
        la, wa = cfg["lan"]["addr_int"], cfg["wan"]["addr_int"]
        self._wan_addr = wa  # slow path only
        self._lan_hi, self._lan_lo = la >> 16, la & 0xFFFF
        self._wan_hi, self._wan_lo = wa >> 16, wa & 0xFFFF
        self._errors = ErrorBuilder(ms, icmp_rate, icmp_burst)
        self._forwards = ()
        self._portgen = None
        self._set_forwards(cfg)
        self._client_port = 0
        self._client_port_gen = self._client_port_once
        self._running = False
        self._stopped = False
        self._thread = None
        self._exited = False
        self.last_error = None

    # ---- per-packet path: no allocation for packets of known flows

    def drain_lan(self, limit):
        """Handle up to `limit` packets from the LAN link; returns how many came."""
        recv = self._lan_recv
        send = self._wan_send
        screen_lan = screen.screen_lan
        translate = core.translate
        buf = self._buf
        f = self._f
        pol = self._pol
        c = self._c
        mems = self.table.mems
        heads = self.table.heads
        for i in range(limit):
            n = recv(buf)
            if n <= 0:
                return i
            v = screen_lan(buf, n, f, pol, c)
            if v == _V_PASS:
                st = translate(buf, f, mems, heads)
                if st == _OK:
                    send(buf, f[_F_LEN])
                    c[_C_OUT] += 1
                else:
                    self._lan_untranslated(st)
            elif v != _V_DROP:
                self._lan_for_router(v)
        return limit

    def drain_wan(self, limit):
        """Handle up to `limit` packets from the WAN link; returns how many came."""
        recv = self._wan_recv
        send = self._lan_send
        screen_wan = screen.screen_wan
        translate = core.translate
        buf = self._buf
        f = self._f
        pol = self._pol
        c = self._c
        mems = self.table.mems
        heads = self.table.heads
        for i in range(limit):
            n = recv(buf)
            if n <= 0:
                return i
            v = screen_wan(buf, n, f, pol, c)
            if v == _V_PASS:
                st = translate(buf, f, mems, heads)
                if st == _OK:
                    send(buf, f[_F_LEN])
                    c[_C_IN] += 1
                else:
                    self._wan_untranslated(st)
            elif v != _V_DROP:
                self._wan_special(v)
        return limit

    # ---- configuration that changes while forwarding (reconfigure())

    def _set_forwards(self, cfg):
        self._forwards = tuple(Forward(proto=f["proto_num"], port=f["port"], to=f["to_int"],
                                       to_port=f["to_port"]) for f in cfg["forwards"])
        ports = cfg["ports"]
        self._portgen = PortGen(self.table, first=ports["first"], last=ports["last"],
                                reserved=[(f.proto, f.port) for f in self._forwards])

    def reconfigure(self, cfg, dhcp=None):
        """Take the parts of a validated cfg that apply while forwarding: port forwards
        (a removed one takes its flows with it), the port range, source routing, the NAT's
        filtering, share and timeouts, the DHCP server (rebuilt by the caller). Addresses,
        MTU and table sizes need a new Router (manage.apply()). Run it on the router's
        thread: call(r.reconfigure, cfg)."""
        kept = [(f["proto_num"], f["port"], f["to_int"], f["to_port"]) for f in cfg["forwards"]]
        for fw in self._forwards:
            if tuple(fw) not in kept:
                self.table.remove_redirects(fw.proto, self._wan_addr, fw.port)
        self.cfg = cfg
        self._set_forwards(cfg)
        self._pol = screen.policy(cfg, self._lan_mtu, self._wan_mtu, cfg["allow_source_route"])
        self.table.set_timeouts(**cfg["nat"]["timeouts"])
        self.table.set_share(cfg["nat"]["share"])
        self._filtering = cfg["nat"]["filtering"]
        if dhcp is not None or not cfg["dhcp"]["enabled"]:
            self.dhcp = dhcp
            if dhcp is not None and self._dhcp_pkt is None:
                self._dhcp_pkt = bytearray(28 + _DHCP_MAX)

    def call(self, fn, *args):
        """Run fn(*args) on the router's own thread, between two batches, and return what
        it returns (or raise what it raised): the REPL's changes never interleave with
        the forwarding loop. Waits at most a few seconds; called from the router's
        thread, or while it does not run, fn runs at once."""
        import _thread
        if not self._running or _thread.get_ident() == self._thread:
            return fn(*args)
        job = [fn, args, None, None, False]  # fn, args, result, exception, done
        for _ in range(200):  # one job at a time
            if self._job is None:
                break
            sleep_ms(10)
        else:
            raise OSError("the router is busy with another call")
        self._job = job
        for _ in range(500):
            if job[4]:
                break
            sleep_ms(10)
        else:
            raise OSError("the router did not answer within 5 s")
        if job[3] is not None:
            raise job[3]
        return job[2]

    def _run_job(self):
        job = self._job
        try:
            job[2] = job[0](*job[1])
        except Exception as e:
            job[3] = e
        job[4] = True
        self._job = None

    def _chores(self):
        """Once a second: what runs on time, not per packet."""
        self.table.expire(EXPIRE_SCAN)
        self.frags.expire()
        if self.dhcp is not None:
            self.dhcp.tick()

    # ---- slow path (may allocate)

    def _lan_for_router(self, verdict):
        if verdict == _V_TO_ROUTER:
            self._to_router(self.lan)
        elif verdict == _V_HAIRPIN:
            self._hairpin()
        elif verdict == _V_FRAGMENT:
            self._fragment(self.lan, self.wan)
        else:  # V_TOO_BIG
            self._too_big()

    def _wan_special(self, verdict):
        if verdict == _V_FRAGMENT:
            self._fragment(self.wan, self.lan)
        else:  # V_TOO_BIG
            self._too_big_in()

    def _lan_untranslated(self, status):
        c = self._c
        if status == _UNTRANSLATED:
            if self._f[_F_KIND] == _K_ERROR:
                c[C_ICMP_ERROR] += 1  # about no flow, or not to the quoted packet's source
            else:
                self._new_outbound()
        elif status == _TTL_EXCEEDED:
            self._time_exceeded(self.lan, self._lan_hi, self._lan_lo)
        else:
            c[C_MALFORMED] += 1  # an ICMP error with a bad checksum or quote (RFC 5508 REQ-3)

    def _wan_untranslated(self, status):
        c = self._c
        buf = self._buf
        if status == _UNTRANSLATED:
            hi = buf[_IP_DST] << 8 | buf[_IP_DST + 1]
            lo = buf[_IP_DST + 2] << 8 | buf[_IP_DST + 3]
            if self._f[_F_KIND] == _K_ERROR:
                c[C_ICMP_ERROR] += 1
            elif hi == self._wan_hi and lo == self._wan_lo:
                self._to_wan_address()
            elif hi == self._lan_hi and lo == self._lan_lo:
                self._to_router(self.wan)
            else:
                c[C_UNSOLICITED] += 1
        elif status == _TTL_EXCEEDED:
            self._time_exceeded(self.wan, self._wan_hi, self._wan_lo)
        else:
            c[C_MALFORMED] += 1

    def _to_router(self, link):
        """A packet for one of the router's own addresses: answer pings and (on the LAN)
        DHCP, drop the rest. TTL does not matter here: the packet has arrived."""
        buf = self._buf
        f = self._f
        if (self.dhcp is not None and link is self.lan and buf[_IP_PROTO] == _UDP
                and f[_F_DPORT] == _DHCP_SERVER and not f[_F_FRAG] & 0x3FFF):
            self._dhcp_request()
        elif (f[_F_KIND] == _K_QUERY and f[_F_TYPE] == _ECHO_REQUEST and f[_F_CODE] == 0
                and not f[_F_FRAG] & 0x3FFF and _single_host(buf[_IP_SRC])):
            echo_reply_in_place(buf, f[_F_L4])
            link.send(buf, f[_F_LEN])
            self._c[C_ECHO] += 1
        else:
            self._c[C_TO_ROUTER] += 1

    def _dhcp_request(self):
        """Hand a DHCP message to the server; send its reply from the LAN address, port
        67 (RFC 2131 4.1). A reply meant for a MAC the link cannot frame to (a client
        with no address yet) is broadcast, which clients accept."""
        buf = self._buf
        start = self._f[_F_L4] + 8
        pkt = self._dhcp_pkt
        n = self.dhcp.handle(memoryview(buf)[start:self._f[_F_LEN]], self._f[_F_LEN] - start,
                             memoryview(pkt)[28:])
        if not n:
            self._c[C_TO_ROUTER] += 1
            return
        ip, port, broadcast, mac = self.dhcp.reply_dst
        dst = 0xFFFFFFFF if broadcast or mac is not None else nat.ip(ip)
        _udp_header(pkt, self._lan_hi, self._lan_lo, dst >> 16, dst & 0xFFFF, 67, port, n)
        self.lan.send(pkt, 28 + n)

    def _to_wan_address(self):
        """An untranslated WAN packet for the WAN address: a ping of the router, a new
        connection to a port forward, or unsolicited (dropped without any answer,
        RFC 5382 REQ-4: no RST, no ICMP)."""
        p = self._pkt
        proto = self._buf[_IP_PROTO]
        if proto == _TCP or proto == _UDP:
            dport = p.dport
            for fw in self._forwards:
                if fw.proto == proto and fw.port == dport:
                    self._redirect_in((fw.to, fw.to_port), C_FORWARDS_HIT)
                    return
            # A new remote at a mapped port: the filtering decides (RFC 4787 REQ-8,
            # RFC 5382 REQ-3); refused or not mapped, no answer (RFC 5382 REQ-4).
            if self.table.owned(proto, self._wan_hi, self._wan_lo, dport):
                owner = self.table.owner(proto, self._wan_addr, dport)
                if self._filtering == "endpoint" or (
                        self._filtering == "address"
                        and self.table.sent_to(proto, self._wan_addr, dport, p.src)):
                    self._redirect_in(owner, C_FILTER_IN)
                else:
                    self._c[C_FILTERED] += 1
                return
        elif proto == _ICMP:
            self._to_router(self.wan)
            return
        self._c[C_UNSOLICITED] += 1

    def _hairpin(self):
        """A LAN packet to the WAN address (RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508
        REQ-7): a hairpinned flow's, a new one to a LAN host's mapping or port forward
        (the receiver sees the sender's outside address and port), or the router's own
        (a ping of its WAN address). Hairpinned packets are not filtered: they come from
        the LAN."""
        p = self._pkt
        c = self._c
        st = self.table.translate(p)
        if st == _OK:
            self.lan.send(self._buf, self._f[_F_LEN])
            c[C_HAIRPIN] += 1
            return
        if st == _TTL_EXCEEDED:
            self._time_exceeded(self.lan, self._lan_hi, self._lan_lo)
            return
        if st != _UNTRANSLATED:
            c[C_MALFORMED] += 1
            return
        if self._f[_F_KIND] == _K_ERROR:
            c[C_ICMP_ERROR] += 1
            return
        proto = self._buf[_IP_PROTO]
        if proto == _TCP or proto == _UDP:
            target = None
            for fw in self._forwards:
                if fw.proto == proto and fw.port == p.dport:
                    target = (fw.to, fw.to_port)
            if target is None:
                target = self.table.owner(proto, self._wan_addr, p.dport)
            if target is not None:
                if self._buf[_IP_TTL] <= 1:
                    self._time_exceeded(self.lan, self._lan_hi, self._lan_lo)
                    return
                gen = self._portgen.prepare(proto=proto, remote=target[0],
                                            remote_port=target[1], wan=self._wan_addr,
                                            preferred=p.sport, inside=p.src)
                st = self.table.add(p, self._wan_addr, gen, nat.REDIRECT, target)
                if self._added(st):
                    self._send_new(self.lan, C_HAIRPIN)
                return
        self._to_router(self.lan)

    def _time_exceeded(self, link, hi, lo):
        """ICMP Time Exceeded (type 11 code 0) from the receiving link's address back to
        the packet's source, within the rate limit. Allocates nothing."""
        if not self._may_send_error():
            self._c[C_TTL_SILENT] += 1
        elif not self._errors.allow():
            self._c[C_TTL_LIMITED] += 1
        else:
            n = self._errors.build(self._buf, hi, lo, TIME_EXCEEDED, 0, 0)
            link.send(self._errors.buf, n)
            self._c[C_TTL_SENT] += 1

    def _may_send_error(self):
        """RFC 1812 4.3.2.7: no ICMP error about an ICMP error, a fragment other than the
        first, a broadcast or multicast packet, or a source that is not one host."""
        buf = self._buf
        f = self._f
        return not (f[_F_FRAG] & 0x1FFF or buf[_IP_DST] >= 224 or f[_F_KIND] == _K_ERROR
                    or not _single_host(buf[_IP_SRC]))

    def _new_outbound(self):
        p = self._pkt
        c = self._c
        if self._buf[_IP_TTL] <= 1:
            # It would expire here anyway: answer without spending a flow on it.
            self._time_exceeded(self.lan, self._lan_hi, self._lan_lo)
            return
        sport = p.sport
        if sport is None:  # not TCP/UDP/ICMP query: a fragment, another protocol
            c[C_CANNOT_NAT] += 1
            return
        gen = self._portgen.prepare(proto=p.proto, remote=p.dst, remote_port=p.dport,
                                    wan=self._wan_addr, preferred=sport, inside=p.src)
        if self._added(self.table.add(p, self._wan_addr, gen)):
            self._send_new(self.wan, _C_OUT)

    def _added(self, status):
        """Count a new flow, or why there is none; True when it was added."""
        c = self._c
        if status == _OK:
            c[C_FLOWS_ADDED] += 1
            return True
        c[C_OVERLAP if status == _OVERLAP else C_FULL if status == _FULL else C_CANNOT_NAT] += 1
        return False

    def _redirect_in(self, target, counter):
        """A new inbound connection to a port forward or a mapping the filtering admits:
        a REDIRECT flow to the LAN host target (ip, port). It sees the real client
        (xl_host is the client's own address and port) and replies through the router."""
        p = self._pkt
        if self._buf[_IP_TTL] <= 1:
            self._time_exceeded(self.wan, self._wan_hi, self._wan_lo)
            return
        self._client_port = p.sport
        if self._added(self.table.add(p, p.src, self._client_port_gen, nat.REDIRECT, target)):
            self._c[counter] += 1
            self._send_new(self.lan, _C_IN)

    def _send_new(self, link, counter):
        """Translate and send the packet whose flow was just added (a first fragment's
        translation is noted for the rest of its datagram)."""
        st = self.table.translate(self._pkt)
        if st == _OK:
            side = 0 if link is self.lan else 1
            self._send_sized(side, self._buf, self._f[_F_LEN])
            self._c[counter] += 1
            self._first_sent(side)
        else:
            self._c[C_ERRORS] += 1  # the flow just added must match: an engine bug
            self.last_error = "translate after add: %s" % nat.status_name(st)

    def _client_port_once(self):
        port = self._client_port
        self._client_port = None
        return port

    def _too_big_in(self):
        """A WAN packet longer than the LAN's MTU. Only a packet of a flow gets an answer
        (an unsolicited one must not: RFC 5382 REQ-4): with DF set, Fragmentation
        Needed from the WAN address (RFC 1191, RFC 4787 REQ-13), quoting the packet as it
        came; without, it is fragmented onto the LAN."""
        if not self._f[_F_FRAG] & _FRAG_DF:
            self._pass_slow(1)
            return
        n = 0
        if self._may_send_error():  # the quote, before translation rewrites it
            n = self._errors.build(self._buf, self._wan_hi, self._wan_lo, UNREACHABLE,
                                   FRAG_NEEDED, self._lan_mtu)
        self._c[C_TOO_BIG] += 1
        if self.table.translate(self._pkt) == _OK and n and self._errors.allow():
            self.wan.send(self._errors.buf, n)
            self._c[C_FRAG_NEEDED] += 1

    def _fragment(self, came, goes):
        self._pass_slow(0 if came is self.lan else 1)

    def _pass_slow(self, side_in):
        """A fragment, or a DF-clear packet too long for the way out: a first fragment
        (it has the ports) is translated by the engine and its translation noted, so the
        later ones follow it in any order (RFC 4787 REQ-14); what is too long for the
        link out is cut into fragments (REQ-13)."""
        buf = self._buf
        f = self._f
        fr = self.frags
        n = f[_F_LEN]
        if f[_F_FRAG] & _FRAG_OFFSET:  # a later fragment: no ports, the tracker knows it
            if fr.later(buf, n) == fragments.READY:
                self._send_sized(fr.side, buf, n)
            return
        fr.note(buf)
        st = self.table.translate(self._pkt)
        if st == _OK:
            out = 1 - side_in
            self._send_sized(out, buf, n)
            self._c[_C_IN if out == 0 else _C_OUT] += 1
            self._first_sent(out)
        elif side_in == 0:
            self._lan_untranslated(st)
        else:
            self._wan_untranslated(st)

    def _first_sent(self, side):
        """After a first fragment left: note its translation, then send the later
        fragments that waited for it (the receive buffer is free again)."""
        buf = self._buf
        fr = self.frags
        if self._f[_F_FRAG] & _FRAG_MF and fr.first(buf, self._f[_F_LEN], side):
            n = fr.next_ready(buf)
            while n:
                self._send_sized(fr.side, buf, n)
                n = fr.next_ready(buf)

    def _send_sized(self, side, buf, n):
        """Send on side 0 (LAN) or 1 (WAN), cut into fragments when too long."""
        if n <= self._links[side].mtu:
            self._sends[side](buf, n)
            return
        got = fragments.fragment(buf, n, self._links[side].mtu, self._frag_out,
                                 self._sends[side])
        if got > 0:
            self._c[C_FRAGMENTED] += 1
        elif got == fragments.DF_SET:
            self._c[C_TOO_BIG] += 1  # a later fragment with DF: no ICMP about it
        else:
            self._c[C_MALFORMED] += 1

    def _too_big(self):
        """A LAN packet longer than the WAN's MTU: with DF set, tell the sender the MTU
        (RFC 1191, RFC 4787 REQ-13); else it leaves in fragments."""
        if not self._f[_F_FRAG] & _FRAG_DF:
            self._pass_slow(0)
            return
        self._c[C_TOO_BIG] += 1
        if self._may_send_error() and self._errors.allow():
            n = self._errors.build(self._buf, self._lan_hi, self._lan_lo, UNREACHABLE,
                                   FRAG_NEEDED, self._wan_mtu)
            self.lan.send(self._errors.buf, n)
            self._c[C_FRAG_NEEDED] += 1

    # ---- the loop

    def poll(self):
        """One loop iteration without waiting: refresh the table's clock, then drain
        each link up to a batch. Returns the number of packets handled."""
        if self.table.tick():
            self._chores()
        if self._job is not None:
            self._run_job()
        return self.drain_lan(self._batch) + self.drain_wan(self._batch)

    def run(self):
        """Forward until stop(). Exceptions (a link failing to send...) are counted and
        the loop goes on: a router must not die of one bad moment."""
        import _thread
        if self._stopped:
            return
        self._thread = _thread.get_ident()
        self._running = True
        wait = self._wait
        while self._running:
            try:
                busy = self.poll()
            except Exception as e:
                self._c[C_ERRORS] += 1
                self.last_error = repr(e)
                busy = 0
            if not busy and wait is not None:
                wait(WAIT_MS)
        if self._job is not None:  # a REPL call that came too late: it must not hang
            self._run_job()
        self._exited = True

    def stop(self):
        self._stopped = True
        self._running = False

    def join(self, timeout_ms=2000):
        """Wait until run() has returned (after stop())."""
        for _ in range(timeout_ms // 10):
            if self._exited or self._thread is None:
                return
            sleep_ms(10)
        raise OSError("the router's loop did not stop")

    def uptime(self):
        """Seconds since this router was made (the table's clock: it does not wrap)."""
        return self.table.now() - self._started_s

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
        d.update(self.frags.counters())
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


def _udp_header(pkt, src_hi, src_lo, dst_hi, dst_lo, sport, dport, n):
    """IPv4 and UDP headers (checksums included) for the n payload bytes at pkt[28:]."""
    for i in range(28):
        pkt[i] = 0
    pkt[0] = 0x45
    put16(pkt, 2, 28 + n)
    pkt[8] = 64
    pkt[9] = _UDP
    put16(pkt, 12, src_hi)
    put16(pkt, 14, src_lo)
    put16(pkt, 16, dst_hi)
    put16(pkt, 18, dst_lo)
    put16(pkt, 10, sum16(pkt, 0, 20) ^ 0xFFFF)
    put16(pkt, 20, sport)
    put16(pkt, 22, dport)
    put16(pkt, 24, 8 + n)
    # RFC 768: the pseudo-header (addresses, protocol, UDP length) counts in the checksum.
    s = sum16(pkt, 12, 20) + _UDP + 8 + n + sum16(pkt, 20, 28 + n)
    s = (s & 0xFFFF) + (s >> 16)
    s = ((s & 0xFFFF) + (s >> 16)) ^ 0xFFFF
    put16(pkt, 26, s or 0xFFFF)


def _single_host(first_byte):
    """False for sources in 0/8, 127/8, multicast and 240/4 (incl. broadcast)."""
    return first_byte != 0 and first_byte != 127 and first_byte < 224


running = None       # the Router forwarding now (the REPL: import nr; nr.help())
board = None         # the board module it runs on
config_path = None   # where its configuration lives


def start(board_module, path=None):
    """Load the config, open the board's links and run a Router in the background.
    A no-op (returning the running router) if one is running already."""
    global running, board, config_path
    if running is not None and running.is_running():
        print("natrouter: already running")
        return running
    board, config_path = board_module, path or board_module.CONFIG_PATH
    cfg, problems = config.load(config_path)
    for msg in problems:
        print("natrouter: config:", msg)
    running = _launch(cfg)
    print("natrouter: LAN %s/%s, WAN %s/%s via %s; REPL: import nr; nr.help()" % (
        cfg["lan"]["addr"], cfg["lan"]["mask"], cfg["wan"]["addr"], cfg["wan"]["mask"],
        cfg["wan"]["gateway"]))
    return running


def restart(cfg):
    """Stop forwarding, then forward again with cfg (validated): the links reopen with
    its addresses and MTU, the flow table starts empty (manage.apply())."""
    global running
    if running is not None:
        running.stop()
        running.join()
    running = _launch(cfg)
    return running


def _launch(cfg):
    lan, wan = board.open_links(cfg)
    buffer = getattr(board, "packet_buffer", None)
    r = Router(cfg, lan, wan, wait=board.wait, buf=buffer() if buffer else None,
               dhcp=make_dhcp(cfg))
    r._running = True  # before the thread starts, so a second start() sees it
    board.start(r.run)
    return r


def make_dhcp(cfg):
    """The DHCP server for the LAN, when the configuration enables it and the board
    leaves DHCP to the router (board.LAN_DHCP); else None."""
    if not cfg["dhcp"]["enabled"] or not getattr(board, "LAN_DHCP", False):
        return None
    import dhcp
    store = dhcp.LeaseFile(getattr(board, "LEASES_PATH", "dhcp_leases.json"))
    return dhcp.DhcpServer(cfg["dhcp"], cfg["lan"]["addr"], cfg["lan"]["mask"], dns=cfg["dns"],
                           store=store)
