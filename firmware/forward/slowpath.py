# The slow path: what the datapath (datapath.py) hands on, a packet at a time, with its
# verdict and the engine's status: new flows, port forwards and the filtering,
# hairpinning, packets for the router itself (ping, DHCP), the ICMP errors it originates
# (RFC 1812 4.3.2.7-8), fragments and packets too long for a link. It may allocate.
#
# It works on the packet in Shared.buf (shared.py), parsed into Shared.fields and
# Shared.packet, and owns what only it needs: the port forwards and the port generator,
# the fragment tracker, the ICMP error builder, the DHCP server.
from collections import namedtuple

import nat
from nat.checksum import fold, get16, put16, sum16
from compat import const
from .icmp import ErrorBuilder, echo_reply_in_place, TIME_EXCEEDED, UNREACHABLE, FRAG_NEEDED
from .portgen import PortGen
from . import fragments
from filter.rules import Firewall, ALLOW, REJECT, OUT, IN
from filter.reject import tcp_reset, RST_LEN, ADMIN_PROHIBITED

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_ICMP = const(1)
_TCP = const(6)
_UDP = const(17)
_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_OVERLAP = const(3)
_FULL = const(6)
_IP_TTL = const(8)
_IP_PROTO = const(9)
_IP_SRC = const(12)
_IP_DST = const(16)
_F_LEN = const(1)
_F_L4 = const(2)
_F_KIND = const(5)
_F_DPORT = const(7)
_F_TYPE = const(8)
_F_CODE = const(9)
_F_FRAG = const(10)
_FRAG_DF = const(0x4000)
_FRAG_MF = const(0x2000)
_FRAG_OFFSET = const(0x1FFF)
_FRAG_ANY = const(0x3FFF)
_K_QUERY = const(3)
_K_ERROR = const(4)
# forward/shared.py
_LAN = const(0)
_WAN = const(1)
# forward/counters.py
_C_TRANSLATED_OUT = const(2)
_C_TRANSLATED_IN = const(3)
_C_FLOWS_ADDED = const(4)
_C_FORWARDS_HIT = const(5)
_C_ECHO_REPLIES = const(6)
_C_DROPPED_MALFORMED = const(7)
_C_DROPPED_TO_ROUTER = const(8)
_C_DROPPED_ICMP_ERROR = const(14)
_C_DROPPED_UNSOLICITED = const(15)
_C_DROPPED_CANNOT_NAT = const(16)
_C_DROPPED_OVERLAP = const(17)
_C_DROPPED_TOO_BIG = const(18)
_C_TTL_EXCEEDED_SENT = const(19)
_C_TTL_EXCEEDED_RATE_LIMITED = const(20)
_C_TTL_EXCEEDED_SILENT = const(21)
_C_FRAG_NEEDED_SENT = const(22)
_C_ERRORS = const(23)
_C_HAIRPINNED = const(24)
_C_FILTERED_IN = const(25)
_C_DROPPED_FILTERED = const(26)
_C_DROPPED_TABLE_FULL = const(27)
_C_FRAGMENTED = const(28)
_C_DROPPED_FIREWALL = const(29)
_C_FIREWALL_REJECTS_SENT = const(30)
# forward/datapath.py
_V_TO_ROUTER = const(2)
_V_HAIRPIN = const(4)
_V_FRAGMENT = const(5)
_V_UNTRANSLATED = const(6)
_DHCP_SERVER = const(67)
# ---- end of layout

_ECHO_REQUEST = const(8)
_DHCP_MAX = const(576)   # RFC 2131 2: the message every client takes

# A port forward: proto 6 or 17, the WAN port, the LAN host (an int) and its port.
Forward = namedtuple("Forward", ("proto", "port", "to", "to_port"))


class SlowPath:
    """shared: the Shared both paths work on; ms: the millisecond clock of the ICMP rate
    limit and the fragment timers; dhcp: a services.dhcp.DhcpServer for the LAN, or None;
    frags: a fragments.Fragments on the same clock to reuse (reset), else one of its own."""

    def __init__(self, shared, ms, icmp_rate, icmp_burst, dhcp=None, frags=None):
        self._s = shared
        self.errors = ErrorBuilder(ms, icmp_rate, icmp_burst)
        if frags is None:
            frags = fragments.Fragments(ms=ms)
        frags.reset()
        self.frags = frags
        self._frag_out = bytearray(max(shared.mtus))  # packets cut into fragments
        self.forwards = ()
        self.firewall = Firewall()      # fixed memory (filter/rules.py)
        self._rst = bytearray(RST_LEN)  # a reject's TCP RST
        self._portgen = None
        self._filtering = None
        self.dhcp = None
        self._dhcp_reply = None
        self._client_port = 0
        self._client_port_gen = self._client_port_once  # bound once: Table.add calls it
        self.reconfigure(shared.cfg, dhcp)

    def reconfigure(self, cfg, dhcp):
        """Take cfg's port forwards (a removed one takes its flows with it), port range and
        filtering, and the DHCP server (None: none, or the one in place if cfg keeps it)."""
        s = self._s
        forwards = tuple(Forward(f["proto_num"], f["port"], f["to_int"], f["to_port"])
                         for f in cfg["forwards"])
        for fw in self.forwards:
            if fw not in forwards:
                s.table.remove_redirects(fw.proto, s.wan_addr, fw.port)
        self.forwards = forwards
        ports = cfg["ports"]
        self._portgen = PortGen(s.table, first=ports["first"], last=ports["last"],
                                reserved=[(f.proto, f.port) for f in forwards])
        self._filtering = cfg["nat"]["filtering"]
        if self.firewall.load(cfg["firewall"]):  # new rules end what they would refuse
            lan = cfg["lan"]
            net, mask = lan["addr_int"] & lan["mask_int"], lan["mask_int"]
            s.table.remove_flows(lambda flow: self.firewall.refuses_flow(flow, net, mask))
        if dhcp is not None or not cfg["dhcp"]["enabled"]:
            self.dhcp = dhcp
        if self.dhcp is not None and self._dhcp_reply is None:
            self._dhcp_reply = bytearray(28 + _DHCP_MAX)

    # ---- what the datapath hands on

    def from_lan(self, verdict, status):
        if verdict == _V_UNTRANSLATED:
            self._lan_untranslated(status)
        elif verdict == _V_TO_ROUTER:
            self._to_router(_LAN)
        elif verdict == _V_HAIRPIN:
            self._hairpin()
        elif verdict == _V_FRAGMENT:
            self._pass_slow(_LAN)
        else:  # V_TOO_BIG
            self._too_big_from_lan()

    def from_wan(self, verdict, status):
        if verdict == _V_UNTRANSLATED:
            self._wan_untranslated(status)
        elif verdict == _V_FRAGMENT:
            self._pass_slow(_WAN)
        else:  # V_TOO_BIG
            self._too_big_from_wan()

    def _lan_untranslated(self, status):
        c = self._s.counters
        if status == _UNTRANSLATED:
            if self._s.fields[_F_KIND] == _K_ERROR:
                c[_C_DROPPED_ICMP_ERROR] += 1  # about no flow, or not to the quoted source
            else:
                self._new_outbound()
        elif status == _TTL_EXCEEDED:
            self._time_exceeded(_LAN)
        else:
            c[_C_DROPPED_MALFORMED] += 1  # an ICMP error with a bad checksum or quote (RFC 5508 REQ-3)

    def _wan_untranslated(self, status):
        s = self._s
        c = s.counters
        if status == _UNTRANSLATED:
            buf = s.buf
            hi = buf[_IP_DST] << 8 | buf[_IP_DST + 1]
            lo = buf[_IP_DST + 2] << 8 | buf[_IP_DST + 3]
            wan, lan = s.halves[_WAN], s.halves[_LAN]
            if s.fields[_F_KIND] == _K_ERROR:
                c[_C_DROPPED_ICMP_ERROR] += 1
            elif hi == wan[0] and lo == wan[1]:
                self._to_wan_address()
            elif hi == lan[0] and lo == lan[1]:
                self._to_router(_WAN)
            else:
                c[_C_DROPPED_UNSOLICITED] += 1
        elif status == _TTL_EXCEEDED:
            self._time_exceeded(_WAN)
        else:
            c[_C_DROPPED_MALFORMED] += 1

    # ---- packets for the router itself

    def _to_router(self, side):
        """A packet for one of the router's own addresses: answer pings and (on the LAN)
        DHCP; TCP from the LAN to the LAN address goes to the board's own IP stack where
        its LAN link has one (Link.local: the page's server, boards/README.md); drop the
        rest. TTL does not matter here: the packet has arrived."""
        s = self._s
        buf, f = s.buf, s.fields
        if (self.dhcp is not None and side == _LAN and buf[_IP_PROTO] == _UDP
                and f[_F_DPORT] == _DHCP_SERVER and not f[_F_FRAG] & _FRAG_ANY):
            from services import hostnames  # what the client calls itself, for the page
            l4 = f[_F_L4]
            hostnames.note(buf, l4 + 8, l4 + get16(buf, l4 + 4))
            self._dhcp_request()
        elif (f[_F_KIND] == _K_QUERY and f[_F_TYPE] == _ECHO_REQUEST and f[_F_CODE] == 0
                and not f[_F_FRAG] & _FRAG_ANY and _single_host(buf[_IP_SRC])):
            echo_reply_in_place(buf, f[_F_L4])
            s.sends[side](buf, f[_F_LEN])
            s.counters[_C_ECHO_REPLIES] += 1
        elif (side == _LAN and buf[_IP_PROTO] == _TCP and not f[_F_FRAG] & _FRAG_ANY
                and get16(buf, _IP_DST) == s.halves[_LAN][0]
                and get16(buf, _IP_DST + 2) == s.halves[_LAN][1]
                and getattr(s.links[_LAN], "local", None) is not None):
            s.links[_LAN].local.send(buf, f[_F_LEN])
        else:
            s.counters[_C_DROPPED_TO_ROUTER] += 1

    def _dhcp_request(self):
        """Hand a DHCP message (the UDP length's, whether its checksum holds) to the
        server; send its reply from the LAN address, port 67 (RFC 2131 4.1). A reply
        meant for a MAC the link cannot frame to (a client with no address yet) is
        broadcast, which clients accept."""
        s = self._s
        buf, f = s.buf, s.fields
        l4 = f[_F_L4]
        ulen = get16(buf, l4 + 4)  # parse checked 8 <= ulen <= what the IP length holds
        # RFC 768: a checksum of 0 means none was sent
        ok = not get16(buf, l4 + 6) or _udp_sum(buf, l4, ulen) == 0xFFFF
        pkt = self._dhcp_reply
        n = self.dhcp.handle(memoryview(buf)[l4 + 8:l4 + ulen], ulen - 8,
                             memoryview(pkt)[28:], ok)
        if not n:
            s.counters[_C_DROPPED_TO_ROUTER] += 1
            return
        ip, port, broadcast, mac = self.dhcp.reply_dst
        dst = 0xFFFFFFFF if broadcast or mac is not None else nat.ip(ip)
        hi, lo = s.halves[_LAN]
        _udp_header(pkt, hi, lo, dst >> 16, dst & 0xFFFF, _DHCP_SERVER, port, n)
        s.sends[_LAN](pkt, 28 + n)

    def _to_wan_address(self):
        """An untranslated WAN packet for the WAN address: a ping of the router, a new
        connection to a port forward, or unsolicited (dropped without any answer,
        RFC 5382 REQ-4: no RST, no ICMP)."""
        s = self._s
        p = s.packet
        proto = s.buf[_IP_PROTO]
        if proto == _TCP or proto == _UDP:
            dport = p.dport
            target = self._forward_to(proto, dport)
            if target is not None:
                self._redirect_in(target, _C_FORWARDS_HIT)
                return
            # A new remote at a mapped port: the filtering decides (RFC 4787 REQ-8,
            # RFC 5382 REQ-3); refused or not mapped, no answer (RFC 5382 REQ-4).
            hi, lo = s.halves[_WAN]
            if s.table.owned(proto, hi, lo, dport):
                owner = s.table.owner(proto, s.wan_addr, dport)
                if self._filtering == "endpoint" or (
                        self._filtering == "address"
                        and s.table.sent_to(proto, s.wan_addr, dport, p.src)):
                    self._redirect_in(owner, _C_FILTERED_IN)
                else:
                    s.counters[_C_DROPPED_FILTERED] += 1
                return
        elif proto == _ICMP:
            self._to_router(_WAN)
            return
        s.counters[_C_DROPPED_UNSOLICITED] += 1

    def _forward_to(self, proto, port):
        """(LAN host, port) of the port forward of proto on the WAN port, or None."""
        for fw in self.forwards:
            if fw.proto == proto and fw.port == port:
                return fw.to, fw.to_port
        return None

    # ---- new flows

    def _new_outbound(self):
        s = self._s
        p = s.packet
        if s.buf[_IP_TTL] <= 1:
            # It would expire here anyway: answer without spending a flow on it.
            self._time_exceeded(_LAN)
            return
        sport = p.sport
        if sport is None:  # not TCP/UDP/ICMP query: a fragment, another protocol
            s.counters[_C_DROPPED_CANNOT_NAT] += 1
            return
        proto = p.proto
        if self._refused(OUT, proto, p.src, p.dst, p.icmp_type if proto == _ICMP else p.dport,
                         _LAN):
            return
        gen = self._portgen.prepare(proto=proto, remote=p.dst, remote_port=p.dport,
                                    wan=s.wan_addr, preferred=sport, inside=p.src)
        if self._added(s.table.add(p, s.wan_addr, gen)):
            self._send_new(_WAN, _C_TRANSLATED_OUT)

    def _hairpin(self):
        """A LAN packet to the WAN address (RFC 4787 REQ-9, RFC 5382 REQ-8, RFC 5508
        REQ-7): a hairpinned flow's, a new one to a LAN host's mapping or port forward
        (the receiver sees the sender's outside address and port), or the router's own
        (a ping of its WAN address). Hairpinned packets are not filtered: they come from
        the LAN."""
        s = self._s
        p = s.packet
        c = s.counters
        st = s.table.translate(p)
        if st == _OK:
            s.sends[_LAN](s.buf, s.fields[_F_LEN])
            c[_C_HAIRPINNED] += 1
            return
        if st == _TTL_EXCEEDED:
            self._time_exceeded(_LAN)
            return
        if st != _UNTRANSLATED:
            c[_C_DROPPED_MALFORMED] += 1
            return
        if s.fields[_F_KIND] == _K_ERROR:
            c[_C_DROPPED_ICMP_ERROR] += 1
            return
        proto = s.buf[_IP_PROTO]
        if proto == _TCP or proto == _UDP:
            target = (self._forward_to(proto, p.dport)
                      or s.table.owner(proto, s.wan_addr, p.dport))
            if target is not None:
                if s.buf[_IP_TTL] <= 1:
                    self._time_exceeded(_LAN)
                    return
                gen = self._portgen.prepare(proto=proto, remote=target[0],
                                            remote_port=target[1], wan=s.wan_addr,
                                            preferred=p.sport, inside=p.src)
                st = s.table.add(p, s.wan_addr, gen, nat.REDIRECT, target)
                if self._added(st):
                    self._send_new(_LAN, _C_HAIRPINNED)
                return
        self._to_router(_LAN)

    def _redirect_in(self, target, counter):
        """A new inbound connection to a port forward or a mapping the filtering admits:
        a REDIRECT flow to the LAN host target (ip, port). It sees the real client
        (xl_host is the client's own address and port) and replies through the router."""
        s = self._s
        p = s.packet
        if s.buf[_IP_TTL] <= 1:
            self._time_exceeded(_WAN)
            return
        if self._refused(IN, s.buf[_IP_PROTO], target[0], p.src, p.dport, _WAN):
            return
        self._client_port = p.sport
        if self._added(s.table.add(p, p.src, self._client_port_gen, nat.REDIRECT, target)):
            s.counters[counter] += 1
            self._send_new(_LAN, _C_TRANSLATED_IN)

    def _refused(self, direction, proto, lan, remote, port, side):
        """Whether the firewall refuses the flow this packet (in from `side`) would open:
        dropped, or rejected with a TCP RST or ICMP administratively prohibited sent
        back within the rate limit of the router's ICMP errors."""
        action = self.firewall.decide(direction, proto, lan, remote, port)
        if action == ALLOW:
            return False
        s = self._s
        s.counters[_C_DROPPED_FIREWALL] += 1
        if action == REJECT and self._may_send_error():
            if proto == _TCP:
                n = tcp_reset(s.buf, s.fields[_F_L4], self._rst)
                out = self._rst
            else:
                hi, lo = s.halves[side]
                n = self.errors.build(s.buf, hi, lo, UNREACHABLE, ADMIN_PROHIBITED, 0)
                out = self.errors.buf
            if n and self.errors.allow():
                s.sends[side](out, n)
                s.counters[_C_FIREWALL_REJECTS_SENT] += 1
        return True

    def _client_port_once(self):
        port = self._client_port
        self._client_port = None
        return port

    def _added(self, status):
        """Count a new flow, or why there is none; True when it was added."""
        c = self._s.counters
        if status == _OK:
            c[_C_FLOWS_ADDED] += 1
            return True
        c[_C_DROPPED_OVERLAP if status == _OVERLAP else _C_DROPPED_TABLE_FULL
          if status == _FULL else _C_DROPPED_CANNOT_NAT] += 1
        return False

    def _send_new(self, side, counter):
        """Translate and send out of `side` the packet whose flow was just added (a first
        fragment's translation is noted for the rest of its datagram)."""
        s = self._s
        st = s.table.translate(s.packet)
        if st == _OK:
            self._send_sized(side, s.buf, s.fields[_F_LEN])
            s.counters[counter] += 1
            self._first_sent(side)
        else:
            s.counters[_C_ERRORS] += 1  # the flow just added must match: an engine bug
            s.last_error = "translate after add: %s" % nat.status_name(st)

    # ---- ICMP errors the router originates

    def _time_exceeded(self, side):
        """ICMP Time Exceeded (type 11 code 0) from the receiving link's address back to
        the packet's source, within the rate limit. Allocates nothing."""
        s = self._s
        c = s.counters
        if not self._may_send_error():
            c[_C_TTL_EXCEEDED_SILENT] += 1
        elif not self.errors.allow():
            c[_C_TTL_EXCEEDED_RATE_LIMITED] += 1
        else:
            hi, lo = s.halves[side]
            n = self.errors.build(s.buf, hi, lo, TIME_EXCEEDED, 0, 0)
            s.sends[side](self.errors.buf, n)
            c[_C_TTL_EXCEEDED_SENT] += 1

    def _may_send_error(self):
        """RFC 1812 4.3.2.7: no ICMP error about an ICMP error, a fragment other than the
        first, a broadcast or multicast packet, or a source that is not one host."""
        buf, f = self._s.buf, self._s.fields
        return not (f[_F_FRAG] & _FRAG_OFFSET or buf[_IP_DST] >= 224 or f[_F_KIND] == _K_ERROR
                    or not _single_host(buf[_IP_SRC]))

    def _too_big_from_lan(self):
        """A LAN packet longer than the WAN's MTU: with DF set, tell the sender the MTU
        (RFC 1191, RFC 4787 REQ-13); else it leaves in fragments."""
        s = self._s
        if not s.fields[_F_FRAG] & _FRAG_DF:
            self._pass_slow(_LAN)
            return
        s.counters[_C_DROPPED_TOO_BIG] += 1
        if self._may_send_error() and self.errors.allow():
            hi, lo = s.halves[_LAN]
            n = self.errors.build(s.buf, hi, lo, UNREACHABLE, FRAG_NEEDED, s.mtus[_WAN])
            s.sends[_LAN](self.errors.buf, n)
            s.counters[_C_FRAG_NEEDED_SENT] += 1

    def _too_big_from_wan(self):
        """A WAN packet longer than the LAN's MTU. Only a packet of a flow gets an answer
        (an unsolicited one must not: RFC 5382 REQ-4): with DF set, Fragmentation
        Needed from the WAN address (RFC 1191, RFC 4787 REQ-13), quoting the packet as it
        came; without, it is fragmented onto the LAN."""
        s = self._s
        if not s.fields[_F_FRAG] & _FRAG_DF:
            self._pass_slow(_WAN)
            return
        n = 0
        if self._may_send_error():  # the quote, before translation rewrites it
            hi, lo = s.halves[_WAN]
            n = self.errors.build(s.buf, hi, lo, UNREACHABLE, FRAG_NEEDED, s.mtus[_LAN])
        s.counters[_C_DROPPED_TOO_BIG] += 1
        if s.table.translate(s.packet) == _OK and n and self.errors.allow():
            s.sends[_WAN](self.errors.buf, n)
            s.counters[_C_FRAG_NEEDED_SENT] += 1

    # ---- fragments

    def _pass_slow(self, side_in):
        """A fragment, or a DF-clear packet too long for the way out: a first fragment
        (it has the ports) is translated by the engine and its translation noted, so the
        later ones follow it in any order (RFC 4787 REQ-14); what is too long for the
        link out is cut into fragments (REQ-13)."""
        s = self._s
        buf, f, fr = s.buf, s.fields, self.frags
        n = f[_F_LEN]
        if f[_F_FRAG] & _FRAG_OFFSET:  # a later fragment: no ports, the tracker knows it
            if fr.later(buf, n) == fragments.READY:
                self._send_sized(fr.side, buf, n)
            return
        fr.note(buf)
        st = s.table.translate(s.packet)
        if st == _OK:
            out = 1 - side_in
            self._send_sized(out, buf, n)
            s.counters[_C_TRANSLATED_OUT + side_in] += 1  # translated_in follows _out
            self._first_sent(out)
        elif side_in == _LAN:
            self._lan_untranslated(st)
        else:
            self._wan_untranslated(st)

    def _first_sent(self, side):
        """After a first fragment left: note its translation, then send the later
        fragments that waited for it (the receive buffer is free again)."""
        s = self._s
        buf, fr = s.buf, self.frags
        if s.fields[_F_FRAG] & _FRAG_MF and fr.first(buf, s.fields[_F_LEN], side):
            n = fr.next_ready(buf)
            while n:
                self._send_sized(fr.side, buf, n)
                n = fr.next_ready(buf)

    def _send_sized(self, side, buf, n):
        """Send on `side`, cut into fragments when too long for its link."""
        s = self._s
        mtu = s.mtus[side]
        if n <= mtu:
            s.sends[side](buf, n)
            return
        got = fragments.fragment(buf, n, mtu, self._frag_out, s.sends[side])
        if got > 0:
            s.counters[_C_FRAGMENTED] += 1
        elif got == fragments.DF_SET:
            s.counters[_C_DROPPED_TOO_BIG] += 1  # a later fragment with DF: no ICMP about it
        else:
            s.counters[_C_DROPPED_MALFORMED] += 1


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
    s = _udp_sum(pkt, 20, 8 + n) ^ 0xFFFF
    put16(pkt, 26, s or 0xFFFF)


def _udp_sum(pkt, l4, ulen):
    """The one's complement sum of the UDP datagram at pkt[l4:l4 + ulen] behind the IPv4
    header at pkt[0:] and its pseudo-header (addresses, protocol, UDP length: RFC 768);
    0xFFFF when the checksum in it is right."""
    return fold(sum16(pkt, 12, 20) + _UDP + ulen + sum16(pkt, l4, l4 + ulen))


def _single_host(first_byte):
    """False for sources in 0/8, 127/8, multicast and 240/4 (incl. broadcast)."""
    return first_byte != 0 and first_byte != 127 and first_byte < 224
