# The forwarding path: per link, receive a batch of packets, screen each one and
# translate it in place, then send it out of the other link. One function, drain(path,
# limit), for both directions; everything it needs comes in one tuple (Datapath.lan,
# Datapath.wan), unpacked once per batch. A packet of a known flow allocates nothing
# (host_tests/upy/router_alloc.py checks it under heap_lock); whatever the screen or the
# engine does not simply pass goes to the slow path (slowpath.py), which may.
#
# The screen (RFC 1812 5.3.7, BCP 38, RFC 7126): after nat.core.parse, a packet is
#   dropped: malformed, a source that cannot be (a martian, or off the LAN on the LAN, on
#     the LAN from the WAN), a source route (unless allowed), port 0, the LAN's own
#     traffic (its subnet, broadcast, multicast, a directed broadcast to the WAN);
#   handed to the slow path: for the router itself (its LAN address, DHCP), to the WAN
#     address from the LAN (hairpinning), a fragment, longer than the link out's MTU;
#   else translated (nat.core.translate_flow); what the engine does not translate (a new
#     flow, TTL 1, ...) goes to the slow path too, with the engine's status.
#
# Two twins: drain_py below, plain Python (CPython, the 32-bit WASI build), and drain in
# _datapath_viper.py, compiled by viper where nat.core runs viper (the unix port, the
# ESP32). Chosen once, at the end of this module; the tests run both on the same packets.
# Addresses stay 16-bit halves: a whole IPv4 address is a heap int on 32-bit MicroPython.

from compat import const, zeros
from nat import core
from nat.checksum import get16
from nat.consts import (OK, UDP, IP_PROTO, IP_SRC, IP_DST, F_LEN, F_KIND,
                        F_SPORT, F_DPORT, F_FRAG, F_OPT, K_TCP, K_UDP, K_ERROR,
                        OPT_SOURCE_ROUTE, FRAG_ANY)
from .counters import (C_RX_LAN, C_TRANSLATED_OUT, C_DROPPED_MALFORMED,
                       C_DROPPED_LAN_LOCAL, C_DROPPED_BAD_SOURCE, C_DROPPED_MARTIAN,
                       C_DROPPED_SOURCE_ROUTE, C_DROPPED_PORT_ZERO)
from .shared import LAN, WAN

# The policy: array('H') words, a block per side (the LAN's at 0, the WAN's at P_SIDE).
P_OWN_HI = const(0)     # the router's address on the side's link
P_OWN_LO = const(1)
P_NET_HI = const(2)     # the link's subnet: network address, mask, broadcast address
P_NET_LO = const(3)
P_MASK_HI = const(4)
P_MASK_LO = const(5)
P_BC_HI = const(6)
P_BC_LO = const(7)
P_OUT_MTU = const(8)    # the MTU of the other link, the way out of the side's packets
P_SIDE = const(9)       # words a side
P_FLAGS = const(18)     # PF_* below
P_WORDS = const(19)

PF_SOURCE_ROUTE = const(1)   # let source-routed packets through (off by default)

# Verdicts: what the slow path is handed (SlowPath.from_lan/from_wan(verdict, status)).
V_PASS = const(0)        # translate it
V_DROP = const(1)        # dropped and counted
V_TO_ROUTER = const(2)   # for the router itself: its LAN address, DHCP
V_TOO_BIG = const(3)     # longer than the other link's MTU
V_HAIRPIN = const(4)     # a LAN packet to the WAN address: hairpinning, or a ping of it
V_FRAGMENT = const(5)    # a fragment: the fragment tracker takes it
V_UNTRANSLATED = const(6)  # passed, but the engine did not translate it (status: why)

DHCP_SERVER = const(67)  # the port DHCP clients send to (RFC 2131 4.1)


def policy(cfg, mtus):
    """The policy words for a validated configuration; mtus: (LAN MTU, WAN MTU)."""
    pol = zeros("H", P_WORDS)
    for side, name in ((LAN, "lan"), (WAN, "wan")):
        a, m = cfg[name]["addr_int"], cfg[name]["mask_int"]
        at = side * P_SIDE
        for word, value in ((P_OWN_HI, a), (P_NET_HI, a & m), (P_MASK_HI, m),
                            (P_BC_HI, a | (m ^ 0xFFFFFFFF))):
            pol[at + word] = value >> 16
            pol[at + word + 1] = value & 0xFFFF
        pol[at + P_OUT_MTU] = mtus[1 - side]
    pol[P_FLAGS] = PF_SOURCE_ROUTE if cfg["allow_source_route"] else 0
    return pol


class Datapath:
    """Both directions: drain(dp.lan, limit) and drain(dp.wan, limit) (Router.poll). The
    slow path's from_lan/from_wan get what the screen or the engine hands on."""

    def __init__(self, shared, slow):
        self._shared = shared
        self._slow = slow
        self.lan = self.wan = None
        self.set_policy(shared.cfg)

    def set_policy(self, cfg):
        """Take cfg's addresses, MTUs and source-route flag (also while forwarding)."""
        s = self._shared
        common = (core.parse, core.translate_flow, core.translate_error, s.buf, s.fields,
                  policy(cfg, s.mtus), s.counters, s.table.mems, s.table.heads)
        self.lan = (s.recvs[LAN], s.sends[WAN]) + common + (LAN, self._slow.from_lan)
        self.wan = (s.recvs[WAN], s.sends[LAN]) + common + (WAN, self._slow.from_wan)


# ---- the pure-Python twin

def _is(hi, lo, pol, at):
    """Whether the address hi.lo is the one in the policy words at, at + 1."""
    return hi == pol[at] and lo == pol[at + 1]


def _within(hi, lo, pol, at):
    """Whether hi.lo lies in the subnet of the side block at `at`."""
    return (hi & pol[at + P_MASK_HI] == pol[at + P_NET_HI]
            and lo & pol[at + P_MASK_LO] == pol[at + P_NET_LO])


def _martian(hi, lo, pol, at):
    """A source no packet may come from (RFC 1812 5.3.7): 0/8, 127/8, 169.254/16
    (RFC 3927 7), 224/4 and 240/4, or the link's network, broadcast or own address."""
    top = hi >> 8
    return (top == 0 or top == 127 or top >= 224 or hi == 0xA9FE or _is(hi, lo, pol, at + P_NET_HI)
            or _is(hi, lo, pol, at + P_BC_HI) or _is(hi, lo, pol, at + P_OWN_HI))


def screen_py(buf, f, pol, c, side):
    """The verdict on the packet parsed into f that came in on `side`; drops counted."""
    sh, sl = get16(buf, IP_SRC), get16(buf, IP_SRC + 2)
    dh, dl = get16(buf, IP_DST), get16(buf, IP_DST + 2)
    me = side * P_SIDE
    if (side == LAN and buf[IP_PROTO] == UDP and f[F_KIND] == K_UDP and f[F_DPORT] == DHCP_SERVER
            and (dh & dl == 0xFFFF or _is(dh, dl, pol, P_OWN_HI))):
        return V_TO_ROUTER  # DHCP: clients without an address yet send from 0.0.0.0
    if _within(sh, sl, pol, 0) != (side == LAN):
        c[C_DROPPED_BAD_SOURCE] += 1  # BCP 38; and the LAN link has no route back to it
        return V_DROP
    if _martian(sh, sl, pol, me):
        c[C_DROPPED_MARTIAN] += 1
        return V_DROP
    if f[F_OPT] & OPT_SOURCE_ROUTE and not pol[P_FLAGS] & PF_SOURCE_ROUTE:
        c[C_DROPPED_SOURCE_ROUTE] += 1  # RFC 7126 4.3, 4.4: dropped by default
        return V_DROP
    kind = f[F_KIND]
    if (kind == K_TCP or kind == K_UDP) and not (f[F_SPORT] and f[F_DPORT]):
        c[C_DROPPED_PORT_ZERO] += 1
        return V_DROP
    if side == LAN:
        if _is(dh, dl, pol, P_OWN_HI):
            return V_TO_ROUTER
        if _is(dh, dl, pol, P_SIDE + P_OWN_HI):
            return V_HAIRPIN
        if dh >> 8 >= 224 or _within(dh, dl, pol, 0) or _is(dh, dl, pol, P_SIDE + P_BC_HI):
            # Multicast, the LAN's own traffic, or a directed broadcast to the WAN subnet
            # (RFC 1812 5.3.5.2: not forwarded by default).
            c[C_DROPPED_LAN_LOCAL] += 1
            return V_DROP
    if f[F_FRAG] & FRAG_ANY:
        return V_FRAGMENT
    if f[F_LEN] > pol[me + P_OUT_MTU]:
        return V_TOO_BIG
    return V_PASS


def drain_py(path, limit):
    """Handle up to `limit` packets from one link (Datapath.lan or .wan); returns how
    many came."""
    recv, send, parse, flow, error, buf, f, pol, c, mems, heads, side, slow = path
    for i in range(limit):
        n = recv(buf)
        if n <= 0:
            return i
        c[C_RX_LAN + side] += 1
        if parse(buf, n, f) != OK:
            c[C_DROPPED_MALFORMED] += 1
            continue
        verdict = screen_py(buf, f, pol, c, side)
        if verdict == V_PASS:
            if f[F_KIND] == K_ERROR:
                status = error(buf, f, mems, heads)
            else:
                status = flow(buf, f, mems, heads)  # any other kind: UNTRANSLATED
            if status == OK:
                send(buf, f[F_LEN])
                c[C_TRANSLATED_OUT + side] += 1  # translated_in follows translated_out
            else:
                slow(V_UNTRANSLATED, status)
        elif verdict != V_DROP:
            slow(verdict, OK)
    return limit


if core.NAME == "viper":
    from ._datapath_viper import drain
else:
    drain = drain_py
