# The router's slow path: what the drain loops (router.py) hand on for packets that are
# not simply a known flow's: new flows, port forwards and the filtering, hairpinning,
# packets for the router itself (ping, DHCP), ICMP errors it originates (RFC 1812
# 4.3.2.7-8), fragments and packets too long for a link. It may allocate.
#
# SlowPath is a mixin of Router: it uses the state Router.__init__ sets up.
import nat
from nat.checksum import fold, put16, sum16
from compat import const
from counters import (C_FORWARDS_HIT, C_ECHO, C_MALFORMED, C_TO_ROUTER, C_ICMP_ERROR,
                      C_UNSOLICITED, C_CANNOT_NAT, C_OVERLAP, C_TOO_BIG, C_TTL_SENT,
                      C_TTL_LIMITED, C_TTL_SILENT, C_FRAG_NEEDED, C_ERRORS, C_HAIRPIN,
                      C_FILTER_IN, C_FILTERED, C_FULL, C_FRAGMENTED, C_FLOWS_ADDED)
from icmp import echo_reply_in_place, TIME_EXCEEDED, UNREACHABLE, FRAG_NEEDED
import fragments

# Copies of the layout (MicroPython inlines only a module's own consts).
_OK = const(0)
_UNTRANSLATED = const(1)
_TTL_EXCEEDED = const(2)
_OVERLAP = const(3)
_FULL = const(6)
_V_TO_ROUTER = const(2)
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
_FRAG_MF_OFFSET = const(0x3FFF)  # any fragment: MF or an offset
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


class SlowPath:
    def _lan_for_router(self, verdict):
        if verdict == _V_TO_ROUTER:
            self._to_router(self.lan)
        elif verdict == _V_HAIRPIN:
            self._hairpin()
        elif verdict == _V_FRAGMENT:
            self._pass_slow(0)
        else:  # V_TOO_BIG
            self._too_big()

    def _wan_special(self, verdict):
        if verdict == _V_FRAGMENT:
            self._pass_slow(1)
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
                and f[_F_DPORT] == _DHCP_SERVER and not f[_F_FRAG] & _FRAG_MF_OFFSET):
            self._dhcp_request()
        elif (f[_F_KIND] == _K_QUERY and f[_F_TYPE] == _ECHO_REQUEST and f[_F_CODE] == 0
                and not f[_F_FRAG] & _FRAG_MF_OFFSET and _single_host(buf[_IP_SRC])):
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
            target = self._forward_to(proto, dport)
            if target is not None:
                self._redirect_in(target, C_FORWARDS_HIT)
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

    def _forward_to(self, proto, port):
        """(LAN host, port) of the port forward of proto on the WAN port, or None."""
        for fw in self._forwards:
            if fw.proto == proto and fw.port == port:
                return fw.to, fw.to_port
        return None

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
            target = (self._forward_to(proto, p.dport)
                      or self.table.owner(proto, self._wan_addr, p.dport))
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
        return not (f[_F_FRAG] & _FRAG_OFFSET or buf[_IP_DST] >= 224 or f[_F_KIND] == _K_ERROR
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
    s = fold(sum16(pkt, 12, 20) + _UDP + 8 + n + sum16(pkt, 20, 28 + n)) ^ 0xFFFF
    put16(pkt, 26, s or 0xFFFF)


def _single_host(first_byte):
    """False for sources in 0/8, 127/8, multicast and 240/4 (incl. broadcast)."""
    return first_byte != 0 and first_byte != 127 and first_byte < 224
