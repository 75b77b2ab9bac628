# A DHCP server for the router's LAN (RFC 2131, options RFC 2132), without transport:
# the caller receives UDP payloads on port 67 and sends the replies.
#
#   srv = dhcp.DhcpServer(cfg, "192.168.4.1", "255.255.255.0", dns=["9.9.9.9"],
#                         store=dhcp.LeaseFile(p))
#   n = srv.handle(msg, len_msg, out, checksum_ok)  # out: preallocated, >= 576 bytes
#   if n: send out[0:n] from lan_addr:67 per srv.reply_dst = (ip, port, broadcast, mac)
#   srv.tick()            # every second or so: expires leases, writes them when due
#   srv.flush()           # write the leases now if they changed (planned restart, save)
#   srv.counters(), srv.leases()        # for the REPL
#
# Under pressure (floods of DISCOVERs, exhaustion by REQUESTs, DECLINE abuse, flash
# wear) it keeps the rules told in services/README.md; every message dropped is counted
# by its reason (COUNTERS).
#
# reply_dst (RFC 2131 4.1): broadcast True -> 255.255.255.255:68 to ff:ff:ff:ff:ff:ff;
# mac set -> a unicast to a client that has no address yet, so it cannot answer ARP:
# frame it to mac directly, or, if the transport cannot, broadcast instead (compliant
# clients accept that); otherwise an ordinary UDP send to ip:port (a relay agent on
# port 67, or a configured client at its ciaddr on port 68).
#
# counters() and leases() only read (leases() as of the last handle() or tick()), so
# the REPL may call them while the router's thread runs handle() and tick().
#
# cfg is the "dhcp" section from dhcp_config.validate() (the constructor validates it
# again, so a raw or partial section works; its problems are in srv.problems); dns the
# servers to hand out (the configuration's "dns"; none: the router's address).
# Pure Python for CPython and MicroPython (unix, ESP32, 32-bit WASI). It may allocate
# per message (a slow path), but its tables are made once and never grow.
# Beside it: dhcp_msg (the wire format), dhcp_leases (pool, lease table) with
# dhcp_declines, dhcp_file (what a reboot remembers, LeaseFile), dhcp_config (validate).
# Not done: ping before offering (a conflict comes back as DHCPDECLINE), option
# overload (52) and long-option concatenation (RFC 3396), relay agent options (82),
# pools for other subnets (relayed requests are served only if giaddr is on the LAN).
from nat.addr import ip
from nat.clock import Clock
from .dhcp_config import validate, ip_bytes
from .dhcp_file import LeaseFile, dump, restore
from .dhcp_leases import Pool, client_key, key_hash
from .dhcp_msg import (Message, tlv, zero4, begin, put, put_params, finish, destination,
                      DISCOVER, OFFER, REQUEST, ACK, NAK, RELEASE, INFORM, MALFORMED,
                      NOT_REQUEST, MIN_MMS, O50, O54, O61)

__all__ = ("COUNTERS", "DhcpServer", "LeaseFile", "validate")

LEASES_PATH = "dhcp_leases.json"  # where a board keeps the leases (board.LEASES_PATH may say)
OFFER_S = 10        # an offer is held this long, unless another client needs the address
DECLINE_S = 600     # a declined address is kept from everyone this long
SAVE_S = 60         # the lease file is written at most once in this many seconds

COUNTERS = (
    "received",              # messages handed to handle()
    "offers",                # DHCPOFFER sent
    "acks",                  # DHCPACK sent for a DHCPREQUEST
    "naks",                  # DHCPNAK sent
    "informs",               # DHCPACK sent for a DHCPINFORM
    "releases",              # leases ended by DHCPRELEASE
    "declines",              # addresses set aside after DHCPDECLINE
    "no_address",            # DHCPDISCOVER unanswered: every address bound, none stale
    "ignored",               # well formed, not for us: replies, other subnets' relays...
    "dropped_malformed",     # too short, not Ethernet, bad cookie or options, no type...
    "dropped_unknown",       # a message type a client does not send to a server
    "dropped_checksum",      # a bad UDP checksum (RFC 1122 4.1.3.4: discard silently)
    "dropped_address",       # the reply would go to no LAN host: ciaddr or giaddr the
                             # network's, the broadcast, the router's own or off the LAN
    "dropped_other_server",  # a REQUEST, DECLINE or RELEASE for another server
    "taken_free",            # remembered addresses given to another client
    "taken_offers",          # offers given to another client before their REQUEST
    "taken_stale",           # stale bindings given to another client
    "saves",                 # leases written to the store (at most once per SAVE_S)
    "save_errors",           # ... failed
    "errors",                # exceptions caught in handle() (last_error has the latest)
)
_RECEIVED, _OFFERS, _ACKS, _NAKS, _INFORMS, _RELEASES, _DECLINES = 0, 1, 2, 3, 4, 5, 6
_NO_ADDRESS, _IGNORED, _MALFORMED, _UNKNOWN, _CHECKSUM, _ADDRESS, _OTHER = (
    7, 8, 9, 10, 11, 12, 13)
_TAKEN, _SAVES, _SAVE_ERRORS, _ERRORS = 14, 17, 18, 19


class DhcpServer:
    def __init__(self, cfg, lan_addr, lan_mask, dns=(), store=None, clock=None):
        cfg, self.problems = validate(cfg, lan_addr, lan_mask)
        self.enabled = cfg["enabled"]
        self.pool = Pool(cfg, lan_addr, lan_mask)
        self.store = store
        self.clock = clock or Clock()
        self._me = ip_bytes(ip(lan_addr))
        lease = cfg["lease_s"]
        # Replies' options, made once: lease time, T1 and T2 (RFC 2131 4.4.5: 0.5 and
        # 0.875 of the lease), and the parameters by code.
        self._sid = tlv(54, self._me)
        self._lease_opts = (tlv(51, ip_bytes(lease)) + tlv(58, ip_bytes(lease // 2))
                            + tlv(59, ip_bytes(lease * 7 // 8)))
        dns = b"".join(ip_bytes(ip(a)) for a in (list(dns) or [lan_addr]))
        self._params = ((1, tlv(1, ip_bytes(ip(lan_mask)))), (3, tlv(3, self._me)),
                        (6, tlv(6, dns)))
        self._m = Message()
        self._yiaddr = bytearray(4)
        self._c = [0] * len(COUNTERS)
        self.reply_dst = None
        self.last_error = None
        self._now()
        self._written = self.now - SAVE_S  # the first change is written at once
        if store is not None:
            try:
                restore(self.pool, store.load(), self.now)
            except Exception as e:  # a bad store must not stop the LAN from booting
                self.last_error = repr(e)
        self.pool.dirty = False

    # ---- for the REPL and the router

    def counters(self):
        d = dict(zip(COUNTERS, self._c))
        for k in range(3):
            d[COUNTERS[_TAKEN + k]] = self.pool.taken[k]
        return d

    def leases(self):
        """[{"mac", "addr", "remaining" (s), "static", "state"}] as of the last tick:
        offered, bound and declined addresses, then the static leases."""
        return self.pool.leases(self.now)

    def tick(self):
        """Expire what has ended, write the leases if they changed and SAVE_S have
        passed. Call it every second or so (the router's chores do): the default clock
        must be read at least every few days to stay right."""
        self._persist(self._now())

    def flush(self):
        """Write the leases now if they changed (before a planned restart, at save)."""
        if self.pool.dirty:
            self._write(self._now())

    def _now(self):
        now = self.now = self.clock()
        self.pool.expire(now)
        return now

    def _persist(self, now):
        # Only when a binding began or ended, never for a renewal or an offer, and at
        # most once per SAVE_S: each write rewrites a file, and flash wears out.
        if self.pool.dirty and now - self._written >= SAVE_S:
            self._write(now)

    def _write(self, now):
        self._written = now
        if self.store is None:
            self.pool.dirty = False
            return
        try:
            self.store.save(dump(self.pool, now))
            self.pool.dirty = False
            self._c[_SAVES] += 1
        except Exception as e:  # tried again SAVE_S later
            self._c[_SAVE_ERRORS] += 1
            self.last_error = repr(e)

    # ---- messages

    def handle(self, msg, n, out, checksum_ok=True):
        """msg[0:n]: one UDP payload received on port 67 (checksum_ok: its UDP checksum
        was right or absent). Writes the reply into out and returns its length (then
        reply_dst says where it goes), or 0: no reply."""
        self.reply_dst = None
        self._c[_RECEIVED] += 1
        if not self.enabled:
            return 0
        if not checksum_ok:
            self._c[_CHECKSUM] += 1  # RFC 1122 4.1.3.4: discarded silently
            return 0
        try:
            if len(out) < MIN_MMS - 28:
                raise ValueError("out must hold at least %d bytes" % (MIN_MMS - 28))
            return self._handle(msg, n, out)
        except Exception as e:  # a bug here must not take the router down
            self._c[_ERRORS] += 1
            self.last_error = repr(e)
            self.reply_dst = None
            return 0

    def _handle(self, msg, n, out):
        m = self._m
        t = m.parse(msg, n)
        if t < 0:
            self._c[_MALFORMED if t == MALFORMED else
                    _IGNORED if t == NOT_REQUEST else _UNKNOWN] += 1
            return 0
        pool = self.pool
        if not zero4(msg, 24) and pool.host_at(msg, 24) < 0:
            self._c[_IGNORED] += 1  # relayed from another subnet: no pool for it
            return 0
        # RFC 2131 4.1: replies go to giaddr, else to ciaddr (a REQUEST's only when it
        # is the address bound, a NAK is broadcast); no LAN host there: no reply, which
        # would reach nobody, or the router itself.
        if ((not zero4(msg, 24) and pool.lan_host(msg, 24) < 0)
                or ((t == DISCOVER or t == INFORM) and pool.lan_host(msg, 12) < 0
                    and not (t == DISCOVER and zero4(msg, 12)))):
            self._c[_ADDRESS] += 1
            return 0
        now = self._now()
        chaddr = bytes(msg[28:34])
        a = m.at[O61]
        key = client_key(chaddr, None if a < 0 else bytes(msg[a:a + m.ln[O61]]))
        kh = key_hash(key)
        s = pool.static_of(chaddr)  # static leases go by MAC, whatever the id
        if t == INFORM:
            self._c[_INFORMS] += 1  # RFC 2131 4.3.5: the configuration, no lease
            return self._reply(msg, out, ACK, -1)
        if t == DISCOVER:
            n = self._discover(msg, out, now, key, kh, chaddr, s)
        elif self._server_id(msg) < 0:  # addressed to another server
            if t == REQUEST:  # RFC 2131 4.3.2: it took another server's offer
                pool.drop_offer(key, kh, now)
            self._c[_OTHER] += 1
            n = 0
        elif t == REQUEST:
            n = self._request(msg, out, now, key, kh, chaddr, s)
        elif t == RELEASE:
            n = self._release(msg, now, key, kh, s)
        else:
            n = self._decline(msg, now, key, kh)
        self._persist(now)
        return n

    def _server_id(self, msg):
        """1 if the message names us as its server, 0 if it names none, -1 another."""
        a = self._m.at[O54]
        if a < 0:
            return 0
        return 1 if msg[a:a + 4] == self._me else -1

    def _requested(self, msg):
        """The host part of option 50, -1 if it is off the LAN, -2 if absent."""
        a = self._m.at[O50]
        return -2 if a < 0 else self.pool.host_at(msg, a)

    def _discover(self, msg, out, now, key, kh, chaddr, s):
        if s >= 0:
            h = self.pool.s_host[s]
        else:
            h = self.pool.offer(key, kh, chaddr, self._requested(msg), now, OFFER_S)
            if h < 0:  # RFC 2131 4.3.1: the server may choose not to answer
                self._c[_NO_ADDRESS] += 1
                return 0
        self._c[_OFFERS] += 1
        return self._reply(msg, out, OFFER, h)

    def _request(self, msg, out, now, key, kh, chaddr, s):
        """RFC 2131 4.3.2: SELECTING (our server id), INIT-REBOOT (requested address,
        no server id), RENEWING/REBINDING (ciaddr)."""
        pool = self.pool
        want = self._requested(msg)
        init_reboot = False
        if not zero4(msg, 12):  # table 4: only RENEWING and REBINDING fill in ciaddr
            want = pool.host_at(msg, 12)
        elif want == -2:
            self._c[_MALFORMED] += 1  # no address asked for at all
            return 0
        else:
            init_reboot = not self._server_id(msg)
        if want < 0:  # the client is on the wrong network
            return self._nak(msg, out)
        if s >= 0:
            if want != pool.s_host[s]:
                return self._nak(msg, out)
            pool.bind_static(s, now)
        else:
            slot = pool.find(key, kh)
            if init_reboot and slot < 0:
                self._c[_IGNORED] += 1  # no record of it: MUST remain silent
                return 0
            if init_reboot and pool.host[slot] != want:
                return self._nak(msg, out)
            if pool.bind(key, kh, chaddr, want, now) < 0:
                return self._nak(msg, out)
        self._c[_ACKS] += 1
        return self._reply(msg, out, ACK, want)

    def _nak(self, msg, out):
        self._c[_NAKS] += 1
        return self._reply(msg, out, NAK, -1)

    def _release(self, msg, now, key, kh, s):
        pool = self.pool
        h = pool.host_at(msg, 12)  # the address released is in ciaddr
        if s >= 0:
            done = h == pool.s_host[s] and pool.s_exp[s]
            if done:
                pool.unbind_static(s)
        else:
            done = pool.release(key, kh, h, now)
        self._c[_RELEASES if done else _IGNORED] += 1
        return 0

    def _decline(self, msg, now, key, kh):
        h = self._requested(msg)
        if h == -2:
            self._c[_MALFORMED] += 1  # RFC 2131 4.4.1: it MUST carry the address
            return 0
        # Only the address the client holds. A static address in use by another host is
        # for the administrator to fix: static clients have no entry here.
        done = self.pool.decline(key, kh, h, now, DECLINE_S)
        self._c[_DECLINES if done else _IGNORED] += 1
        return 0

    # ---- the reply

    def _reply(self, msg, out, mtype, h):
        """The reply into out; yiaddr is host h (-1: 0.0.0.0). Returns its length."""
        m = self._m
        mv = memoryview(out)
        limit = m.limit(msg, len(out))
        yiaddr = None
        if h >= 0:
            yiaddr = self._yiaddr
            self.pool.put(yiaddr, 0, h)
        pos = begin(mv, msg, mtype, yiaddr)
        pos = put(mv, pos, limit, bytes((53, 1, mtype)))
        pos = put(mv, pos, limit, self._sid)
        if m.at[O61] >= 0:  # RFC 6842: echo the client identifier
            pos = put(mv, pos, limit, m.option(msg, O61))
        if mtype != NAK:
            if h >= 0:
                pos = put(mv, pos, limit, self._lease_opts)
            pos = put_params(mv, pos, limit, msg, m, self._params)
        n = finish(mv, pos, limit)
        self.reply_dst = destination(msg, mtype, yiaddr)
        return n
