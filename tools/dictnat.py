# dictnat: the benchmark's baseline, a NAT written the plain way. Same contract as the
# engine (firmware/nat/README.md) for Packet.parse and Table.add / translate of TCP, UDP
# and ICMP queries, NAT and REDIRECT modes, but built from the obvious parts: struct to
# parse and rewrite, one dict entry per flow direction keyed by a tuple, and checksums
# recomputed over the header and the whole segment (no RFC 1624 incremental update).
# Runs on CPython and on the MicroPython unix port (no f-strings).
#
# Deliberate limits (it is a yardstick, not a router): fragments are never translated
# (a recomputed transport checksum needs the whole datagram), nor are ICMP errors; a
# damaged transport checksum comes out valid, since it is recomputed rather than updated.
import struct

TCP = 6
UDP = 17
ICMP = 1
OK, UNTRANSLATED, TTL_EXCEEDED, OVERLAP, CANNOT_NAT, MALFORMED = 0, 1, 2, 3, 4, 5
NAT, REDIRECT = 0, 1

QUERY_TYPES = (0, 8, 13, 14, 15, 16, 17, 18)  # echo, timestamp, information, address mask
CHECKSUM_AT = {TCP: 16, UDP: 6, ICMP: 2}      # transport checksum offset
MAX_TRIES = 100                               # port_gen calls per add


def ones_sum(buf, start, length, s=0):
    """One's complement sum (RFC 1071) of buf[start:start + length], folded to 16 bits."""
    s += sum(struct.unpack_from("!%dH" % (length >> 1), buf, start))
    if length & 1:
        s += buf[start + length - 1] << 8
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def pseudo_sum(src, dst, proto, length):
    """The TCP/UDP pseudo-header's words, summed (RFC 793 3.1, RFC 768)."""
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length


def unroutable(a):
    top = a >> 24
    return top == 0 or top == 127 or top >= 224 or (a >> 16) == 0xA9FE


class Packet:
    def __init__(self):
        self.ok = False

    def parse(self, buf, n=-1):
        self.ok = False
        if n < 0:
            n = len(buf)
        if n < 20 or n > len(buf):
            return MALFORMED
        (ver_ihl, _tos, length, _ident, frag, ttl, proto, _csum, src,
         dst) = struct.unpack_from("!BBHHHBBHII", buf, 0)
        hl = (ver_ihl & 15) * 4
        if ver_ihl >> 4 != 4 or hl < 20 or length < hl or length > n:
            return MALFORMED
        if ones_sum(buf, 0, hl) != 0xFFFF:
            return MALFORMED
        self.sport = self.dport = self.icmp_type = self.icmp_code = None
        room = length - hl
        first = frag & 0x1FFF == 0
        if first and proto == TCP:
            if room < 20 or not 20 <= (buf[hl + 12] >> 4) * 4 <= room:
                return MALFORMED
            self.sport, self.dport = struct.unpack_from("!HH", buf, hl)
        elif first and proto == UDP:
            if room < 8:
                return MALFORMED
            self.sport, self.dport = struct.unpack_from("!HH", buf, hl)
        elif first and proto == ICMP:
            if room < 8:
                return MALFORMED
            self.icmp_type, self.icmp_code, _c, ident = struct.unpack_from("!BBHH", buf, hl)
            if self.icmp_type in QUERY_TYPES:
                self.sport = self.dport = ident
        self.buf, self.hl, self.length, self.frag = buf, hl, length, frag
        self.ttl, self.proto, self.src, self.dst = ttl, proto, src, dst
        self.ok = True
        return OK

    def translatable(self):
        # A whole TCP/UDP datagram or ICMP query: not a fragment (MF or an offset).
        return self.ok and self.sport is not None and not self.frag & 0x3FFF


class Table:
    def __init__(self, tcp=512, udp=256, icmp=64):
        self.capacity = {TCP: tcp, UDP: udp, ICMP: icmp}
        # proto -> {(src, dst, sport, dport): (new_src, new_dst, new_sport, new_dport, flow)}
        # with flow = [outbound key, reply key, last use]; both directions share one flow.
        self.flows = {TCP: {}, UDP: {}, ICMP: {}}
        self.uses = 0

    def translate(self, p):
        if not p.ok:
            return MALFORMED
        if not p.translatable():
            return UNTRANSLATED
        entry = self.flows[p.proto].get((p.src, p.dst, p.sport, p.dport))
        if entry is None:
            return UNTRANSLATED
        if p.ttl <= 1:
            return TTL_EXCEEDED
        src, dst, sport, dport, flow = entry
        self.uses += 1
        flow[2] = self.uses
        buf, hl, proto = p.buf, p.hl, p.proto
        struct.pack_into("!BBHII", buf, 8, p.ttl - 1, proto, 0, src, dst)
        struct.pack_into("!H", buf, 10, 0xFFFF ^ ones_sum(buf, 0, hl))
        at = hl + CHECKSUM_AT[proto]
        if proto == ICMP:
            struct.pack_into("!HH", buf, at, 0, sport)  # checksum, id
            struct.pack_into("!H", buf, at, 0xFFFF ^ ones_sum(buf, hl, p.length - hl))
        else:
            no_checksum = proto == UDP and buf[at] == 0 and buf[at + 1] == 0
            struct.pack_into("!HH", buf, hl, sport, dport)
            if not no_checksum:  # a UDP checksum of 0 means "none" and stays 0
                seg = p.length - hl
                buf[at] = buf[at + 1] = 0
                c = 0xFFFF ^ ones_sum(buf, hl, seg, pseudo_sum(src, dst, proto, seg))
                if c == 0 and proto == UDP:
                    c = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
                struct.pack_into("!H", buf, at, c)
        p.ttl, p.src, p.dst, p.sport, p.dport = p.ttl - 1, src, dst, sport, dport
        return OK

    def add(self, p, xl_host, port_gen, mode=NAT, redirect=None):
        if not p.ok:
            return MALFORMED
        query = p.proto == ICMP
        if (not p.translatable() or unroutable(p.src) or unroutable(p.dst)
                or (query and mode == REDIRECT)):
            return CANNOT_NAT
        final, final_port = (p.dst, p.dport) if mode == NAT else redirect
        flows = self.flows[p.proto]
        out_key = (p.src, p.dst, p.sport, p.dport)
        entry = flows.get(out_key)
        if entry is not None:
            flow = entry[4]
            if (flow[0] == out_key and entry[0] == xl_host and entry[1] == final
                    and (query or entry[3] == final_port)):
                self.uses += 1
                flow[2] = self.uses
                return OK
            return OVERLAP
        for _ in range(MAX_TRIES):
            port = port_gen()
            if port is None:
                return OVERLAP
            reply_port = port if query else final_port  # an ICMP query's id is both ports
            reply_key = (final, xl_host, reply_port, port)
            if reply_key in flows or reply_key == out_key:
                continue
            if len(flows) >= 2 * self.capacity[p.proto]:
                self._evict(flows)
            self.uses += 1
            flow = [out_key, reply_key, self.uses]
            flows[out_key] = (xl_host, final, port, reply_port, flow)
            flows[reply_key] = (p.dst, p.src, p.dport, p.sport, flow)
            return OK
        return OVERLAP

    def _evict(self, flows):
        # The least recently used flow. A scan, but only when a full table takes a new flow.
        oldest = None
        for entry in flows.values():
            if oldest is None or entry[4][2] < oldest[2]:
                oldest = entry[4]
        del flows[oldest[0]]
        del flows[oldest[1]]

    def count(self, proto):
        return len(self.flows[proto]) // 2
