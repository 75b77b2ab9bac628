# The screen (screen.py) compiled to machine code for ports with native emitters. Same
# verdicts and counters as screen.screen_lan_py/screen_wan_py, which the tests compare.
import micropython
from micropython import const

from nat.core import parse

_P_LAN_HI = const(0)
_P_LAN_LO = const(1)
_P_LNET_HI = const(2)
_P_LNET_LO = const(3)
_P_LMASK_HI = const(4)
_P_LMASK_LO = const(5)
_P_LBC_HI = const(6)
_P_LBC_LO = const(7)
_P_WAN_HI = const(8)
_P_WAN_LO = const(9)
_P_WNET_HI = const(10)
_P_WNET_LO = const(11)
_P_WMASK_HI = const(12)
_P_WMASK_LO = const(13)
_P_WBC_HI = const(14)
_P_WBC_LO = const(15)
_P_LAN_MTU = const(16)
_P_WAN_MTU = const(17)
_P_FLAGS = const(18)
_PF_SOURCE_ROUTE = const(1)
_V_PASS = const(0)
_V_DROP = const(1)
_V_TO_ROUTER = const(2)
_V_TOO_BIG = const(3)
_V_HAIRPIN = const(4)
_V_FRAGMENT = const(5)
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


@micropython.viper
def screen_lan(buf, n: int, f, pol, c) -> int:
    cc = ptr32(c)
    cc[_C_RX_LAN] += 1
    if int(parse(buf, n, f)) != 0:
        cc[_C_MALFORMED] += 1
        return _V_DROP
    p = ptr8(buf)
    w = ptr16(f)
    pw = ptr16(pol)
    sh = (p[_IP_SRC] << 8) | p[_IP_SRC + 1]
    sl = (p[_IP_SRC + 2] << 8) | p[_IP_SRC + 3]
    dh = (p[_IP_DST] << 8) | p[_IP_DST + 1]
    dl = (p[_IP_DST + 2] << 8) | p[_IP_DST + 3]
    if p[_IP_PROTO] == _UDP and w[_F_DPORT] == _DHCP_SERVER and w[_F_KIND] == _K_UDP and (
            (dh == 0xFFFF and dl == 0xFFFF) or (dh == pw[_P_LAN_HI] and dl == pw[_P_LAN_LO])):
        return _V_TO_ROUTER
    if (sh & pw[_P_LMASK_HI]) != pw[_P_LNET_HI] or (sl & pw[_P_LMASK_LO]) != pw[_P_LNET_LO]:
        cc[_C_BAD_SOURCE] += 1
        return _V_DROP
    top = sh >> 8
    if top == 0 or top == 127 or top >= 224 or sh == 0xA9FE \
            or (sh == pw[_P_LNET_HI] and sl == pw[_P_LNET_LO]) \
            or (sh == pw[_P_LBC_HI] and sl == pw[_P_LBC_LO]) \
            or (sh == pw[_P_LAN_HI] and sl == pw[_P_LAN_LO]):
        cc[_C_MARTIAN] += 1
        return _V_DROP
    # screen._refused: source routes (RFC 7126 4.3, 4.4), port 0
    if (w[_F_OPT] & _OPT_SOURCE_ROUTE) and not (pw[_P_FLAGS] & _PF_SOURCE_ROUTE):
        cc[_C_SOURCE_ROUTE] += 1
        return _V_DROP
    kind = w[_F_KIND]
    if (kind == _K_TCP or kind == _K_UDP) and (w[_F_SPORT] == 0 or w[_F_DPORT] == 0):
        cc[_C_PORT_ZERO] += 1
        return _V_DROP
    if dh == pw[_P_LAN_HI] and dl == pw[_P_LAN_LO]:
        return _V_TO_ROUTER
    if dh == pw[_P_WAN_HI] and dl == pw[_P_WAN_LO]:
        return _V_HAIRPIN
    if (dh >> 8) >= 224 or ((dh & pw[_P_LMASK_HI]) == pw[_P_LNET_HI]
                            and (dl & pw[_P_LMASK_LO]) == pw[_P_LNET_LO]) \
            or (dh == pw[_P_WBC_HI] and dl == pw[_P_WBC_LO]):
        cc[_C_LAN_LOCAL] += 1
        return _V_DROP
    if w[_F_FRAG] & _FRAG_MF_OFFSET:
        return _V_FRAGMENT
    if w[_F_LEN] > pw[_P_WAN_MTU]:
        return _V_TOO_BIG
    return _V_PASS


@micropython.viper
def screen_wan(buf, n: int, f, pol, c) -> int:
    cc = ptr32(c)
    cc[_C_RX_WAN] += 1
    if int(parse(buf, n, f)) != 0:
        cc[_C_MALFORMED] += 1
        return _V_DROP
    p = ptr8(buf)
    w = ptr16(f)
    pw = ptr16(pol)
    sh = (p[_IP_SRC] << 8) | p[_IP_SRC + 1]
    sl = (p[_IP_SRC + 2] << 8) | p[_IP_SRC + 3]
    if (sh & pw[_P_LMASK_HI]) == pw[_P_LNET_HI] and (sl & pw[_P_LMASK_LO]) == pw[_P_LNET_LO]:
        cc[_C_BAD_SOURCE] += 1
        return _V_DROP
    top = sh >> 8
    if top == 0 or top == 127 or top >= 224 or sh == 0xA9FE \
            or (sh == pw[_P_WNET_HI] and sl == pw[_P_WNET_LO]) \
            or (sh == pw[_P_WBC_HI] and sl == pw[_P_WBC_LO]) \
            or (sh == pw[_P_WAN_HI] and sl == pw[_P_WAN_LO]):
        cc[_C_MARTIAN] += 1
        return _V_DROP
    # screen._refused: source routes (RFC 7126 4.3, 4.4), port 0
    if (w[_F_OPT] & _OPT_SOURCE_ROUTE) and not (pw[_P_FLAGS] & _PF_SOURCE_ROUTE):
        cc[_C_SOURCE_ROUTE] += 1
        return _V_DROP
    kind = w[_F_KIND]
    if (kind == _K_TCP or kind == _K_UDP) and (w[_F_SPORT] == 0 or w[_F_DPORT] == 0):
        cc[_C_PORT_ZERO] += 1
        return _V_DROP
    if w[_F_FRAG] & _FRAG_MF_OFFSET:
        return _V_FRAGMENT
    if w[_F_LEN] > pw[_P_LAN_MTU]:
        return _V_TOO_BIG
    return _V_PASS
