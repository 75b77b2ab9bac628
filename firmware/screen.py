# The router's screen: every received packet is parsed (nat.core.parse) and judged by
# the router's address policy before the engine may translate it. One call per packet,
# with the counters of what it drops kept inside, so the forwarding loop stays short.
#
#   pol = policy(cfg)                         # once: the addresses as 16-bit halves
#   v = screen_lan(buf, n, fields, pol, c)    # per packet; c: the router's counters
#
# Verdicts: V_PASS (translate it), V_DROP (dropped and counted), V_TO_ROUTER (for the
# router itself: its LAN address, DHCP), V_TOO_BIG (longer than the other link's MTU),
# V_HAIRPIN (a LAN packet to the WAN address: hairpinning, or a ping of the router),
# V_FRAGMENT (a fragment: the router's fragment tracker takes it).
# screen_lan_py/screen_wan_py are the pure-Python twins of _screen_viper.py, which the
# tests compare; screen_lan/screen_wan are what this runtime uses (the viper pair
# wherever nat.core runs viper). Addresses stay 16-bit halves: a whole IPv4 address is a heap
# int on 32-bit MicroPython.
from array import array

from compat import const
from nat import core
from nat.checksum import get16 as _half

P_LAN_HI = const(0)     # the router's LAN address
P_LAN_LO = const(1)
P_LNET_HI = const(2)    # the LAN subnet: network address, mask, broadcast address
P_LNET_LO = const(3)
P_LMASK_HI = const(4)
P_LMASK_LO = const(5)
P_LBC_HI = const(6)
P_LBC_LO = const(7)
P_WAN_HI = const(8)     # the router's WAN address
P_WAN_LO = const(9)
P_WNET_HI = const(10)   # the WAN subnet
P_WNET_LO = const(11)
P_WMASK_HI = const(12)
P_WMASK_LO = const(13)
P_WBC_HI = const(14)
P_WBC_LO = const(15)
P_LAN_MTU = const(16)
P_WAN_MTU = const(17)
P_FLAGS = const(18)     # PF_* below
P_WORDS = const(19)

PF_SOURCE_ROUTE = const(1)   # let source-routed packets through (off by default)

V_PASS = const(0)
V_DROP = const(1)
V_TO_ROUTER = const(2)
V_TOO_BIG = const(3)
V_HAIRPIN = const(4)
V_FRAGMENT = const(5)

_F_LEN = const(1)
_F_KIND = const(5)
_F_SPORT = const(6)
_F_DPORT = const(7)
_F_FRAG = const(10)
_F_OPT = const(11)
_FRAG_MF_OFFSET = const(0x3FFF)
_K_TCP = const(1)
_K_UDP = const(2)
_OPT_SOURCE_ROUTE = const(1)
_IP_PROTO = const(9)
_IP_SRC = const(12)
_IP_DST = const(16)
_UDP = const(17)
_DHCP_SERVER = const(67)
_C_RX_LAN = const(0)
_C_RX_WAN = const(1)
_C_MALFORMED = const(7)
_C_LAN_LOCAL = const(9)
_C_BAD_SOURCE = const(10)
_C_MARTIAN = const(11)
_C_SOURCE_ROUTE = const(12)
_C_PORT_ZERO = const(13)


def policy(cfg, lan_mtu, wan_mtu, source_route=False):
    """The screen's policy words for a validated configuration (config.load)."""
    pol = array("H", bytes(2 * P_WORDS))
    la, lm = cfg["lan"]["addr_int"], cfg["lan"]["mask_int"]
    wa, wm = cfg["wan"]["addr_int"], cfg["wan"]["mask_int"]
    for at, value in ((P_LAN_HI, la), (P_LNET_HI, la & lm), (P_LMASK_HI, lm),
                      (P_LBC_HI, la | (lm ^ 0xFFFFFFFF)), (P_WAN_HI, wa),
                      (P_WNET_HI, wa & wm), (P_WMASK_HI, wm),
                      (P_WBC_HI, wa | (wm ^ 0xFFFFFFFF))):
        pol[at] = value >> 16
        pol[at + 1] = value & 0xFFFF
    pol[P_LAN_MTU] = lan_mtu
    pol[P_WAN_MTU] = wan_mtu
    pol[P_FLAGS] = PF_SOURCE_ROUTE if source_route else 0
    return pol


def _martian(hi, lo, pol, net, bc, own):
    """A source no packet may come from (RFC 1812 5.3.7): 0/8, 127/8, 169.254/16
    (RFC 3927 7), 224/4 and 240/4, or the subnet's network, broadcast or own address."""
    top = hi >> 8
    return (top == 0 or top == 127 or top >= 224 or hi == 0xA9FE
            or (hi == pol[net] and lo == pol[net + 1])
            or (hi == pol[bc] and lo == pol[bc + 1])
            or (hi == pol[own] and lo == pol[own + 1]))


def _refused(f, pol):
    """The rules both sides share; the counter index of the one that refuses, or 0."""
    if f[_F_OPT] & _OPT_SOURCE_ROUTE and not pol[P_FLAGS] & PF_SOURCE_ROUTE:
        return _C_SOURCE_ROUTE  # RFC 7126 4.3, 4.4: source routing is dropped by default
    kind = f[_F_KIND]
    if (kind == _K_TCP or kind == _K_UDP) and (f[_F_SPORT] == 0 or f[_F_DPORT] == 0):
        return _C_PORT_ZERO
    return 0


def screen_lan_py(buf, n, f, pol, c):
    c[_C_RX_LAN] += 1
    if core.parse(buf, n, f):
        c[_C_MALFORMED] += 1
        return V_DROP
    sh, sl = _half(buf, _IP_SRC), _half(buf, _IP_SRC + 2)
    dh, dl = _half(buf, _IP_DST), _half(buf, _IP_DST + 2)
    if (buf[_IP_PROTO] == _UDP and f[_F_DPORT] == _DHCP_SERVER and f[_F_KIND] == _K_UDP
            and ((dh == 0xFFFF and dl == 0xFFFF) or (dh == pol[P_LAN_HI] and dl == pol[P_LAN_LO]))):
        return V_TO_ROUTER  # DHCP: clients without an address yet send from 0.0.0.0
    if (sh & pol[P_LMASK_HI]) != pol[P_LNET_HI] or (sl & pol[P_LMASK_LO]) != pol[P_LNET_LO]:
        c[_C_BAD_SOURCE] += 1  # BCP 38; and the LAN link has no route back to it
        return V_DROP
    if _martian(sh, sl, pol, P_LNET_HI, P_LBC_HI, P_LAN_HI):
        c[_C_MARTIAN] += 1
        return V_DROP
    refused = _refused(f, pol)
    if refused:
        c[refused] += 1
        return V_DROP
    if dh == pol[P_LAN_HI] and dl == pol[P_LAN_LO]:
        return V_TO_ROUTER
    if dh == pol[P_WAN_HI] and dl == pol[P_WAN_LO]:
        return V_HAIRPIN
    if (dh >> 8 >= 224 or ((dh & pol[P_LMASK_HI]) == pol[P_LNET_HI]
                           and (dl & pol[P_LMASK_LO]) == pol[P_LNET_LO])
            or (dh == pol[P_WBC_HI] and dl == pol[P_WBC_LO])):
        # The LAN's own traffic, broadcast, multicast, or a directed broadcast to the
        # WAN subnet (RFC 1812 5.3.5.2: not forwarded by default).
        c[_C_LAN_LOCAL] += 1
        return V_DROP
    if f[_F_FRAG] & _FRAG_MF_OFFSET:
        return V_FRAGMENT
    if f[_F_LEN] > pol[P_WAN_MTU]:
        return V_TOO_BIG
    return V_PASS


def screen_wan_py(buf, n, f, pol, c):
    c[_C_RX_WAN] += 1
    if core.parse(buf, n, f):
        c[_C_MALFORMED] += 1
        return V_DROP
    sh, sl = _half(buf, _IP_SRC), _half(buf, _IP_SRC + 2)
    if (sh & pol[P_LMASK_HI]) == pol[P_LNET_HI] and (sl & pol[P_LMASK_LO]) == pol[P_LNET_LO]:
        c[_C_BAD_SOURCE] += 1  # spoofed: the LAN's addresses never arrive from the WAN
        return V_DROP
    if _martian(sh, sl, pol, P_WNET_HI, P_WBC_HI, P_WAN_HI):
        c[_C_MARTIAN] += 1
        return V_DROP
    refused = _refused(f, pol)
    if refused:
        c[refused] += 1
        return V_DROP
    if f[_F_FRAG] & _FRAG_MF_OFFSET:
        return V_FRAGMENT
    if f[_F_LEN] > pol[P_LAN_MTU]:
        return V_TOO_BIG
    return V_PASS


if core.NAME == "viper":
    from _screen_viper import screen_lan, screen_wan
else:
    screen_lan, screen_wan = screen_lan_py, screen_wan_py
