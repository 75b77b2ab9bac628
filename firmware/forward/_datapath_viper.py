# datapath.drain compiled by viper, for ports with native emitters (the unix port, the
# ESP32): the same verdicts and counters as datapath.drain_py and screen_py, which the
# tests compare with it. The screen is inlined (one call less per packet); parse and
# translate_flow are the engine's (nat/_viper.py). Everything comes in the path tuple:
# naming a global here would make every call swap the module's globals and push an nlr
# context (py/emitnative.c, MP_SCOPE_FLAG_REFGLOBALS).
import micropython
from micropython import const

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_UDP = const(17)
_OK = const(0)
_IP_PROTO = const(9)
_IP_SRC = const(12)
_IP_DST = const(16)
_F_LEN = const(1)
_F_KIND = const(5)
_F_SPORT = const(6)
_F_DPORT = const(7)
_F_FRAG = const(10)
_F_OPT = const(11)
_FRAG_ANY = const(0x3FFF)
_OPT_SOURCE_ROUTE = const(1)
_K_TCP = const(1)
_K_UDP = const(2)
_K_ERROR = const(4)
# forward/shared.py
_LAN = const(0)
# forward/counters.py
_C_RX_LAN = const(0)
_C_TRANSLATED_OUT = const(2)
_C_DROPPED_MALFORMED = const(7)
_C_DROPPED_LAN_LOCAL = const(9)
_C_DROPPED_BAD_SOURCE = const(10)
_C_DROPPED_MARTIAN = const(11)
_C_DROPPED_SOURCE_ROUTE = const(12)
_C_DROPPED_PORT_ZERO = const(13)
# forward/datapath.py
_P_OWN_HI = const(0)
_P_OWN_LO = const(1)
_P_NET_HI = const(2)
_P_NET_LO = const(3)
_P_MASK_HI = const(4)
_P_MASK_LO = const(5)
_P_BC_HI = const(6)
_P_BC_LO = const(7)
_P_OUT_MTU = const(8)
_P_SIDE = const(9)
_P_FLAGS = const(18)
_PF_SOURCE_ROUTE = const(1)
_V_PASS = const(0)
_V_TO_ROUTER = const(2)
_V_TOO_BIG = const(3)
_V_HAIRPIN = const(4)
_V_FRAGMENT = const(5)
_V_UNTRANSLATED = const(6)
_DHCP_SERVER = const(67)
# ---- end of layout


@micropython.viper
def drain(path, limit: int) -> int:
    recv, send, parse, flow, error, buf, f, pol, c, mems, heads, side, slow = path
    if limit <= 0:
        return 0
    n = int(recv(buf))
    if n <= 0:
        return 0  # an idle link costs one call: the casts below come after it
    s = int(side)
    me = s * _P_SIDE  # this side's policy block
    p = ptr8(buf)
    w = ptr16(f)
    pw = ptr16(pol)
    cc = ptr32(c)
    i = 0
    while True:
        if i > 0:
            if i >= limit:
                return i
            n = int(recv(buf))
            if n <= 0:
                return i
        i += 1
        cc[_C_RX_LAN + s] += 1
        if int(parse(buf, n, f)) != _OK:
            cc[_C_DROPPED_MALFORMED] += 1
            continue
        sh = (p[_IP_SRC] << 8) | p[_IP_SRC + 1]
        sl = (p[_IP_SRC + 2] << 8) | p[_IP_SRC + 3]
        dh = (p[_IP_DST] << 8) | p[_IP_DST + 1]
        dl = (p[_IP_DST + 2] << 8) | p[_IP_DST + 3]
        kind = w[_F_KIND]
        v = _V_PASS
        if s == _LAN and p[_IP_PROTO] == _UDP and kind == _K_UDP and w[_F_DPORT] == _DHCP_SERVER \
                and ((dh & dl) == 0xFFFF or (dh == pw[_P_OWN_HI] and dl == pw[_P_OWN_LO])):
            v = _V_TO_ROUTER
        else:
            on_lan = 0
            if (sh & pw[_P_MASK_HI]) == pw[_P_NET_HI] and (sl & pw[_P_MASK_LO]) == pw[_P_NET_LO]:
                on_lan = 1
            if on_lan == s:  # from off the LAN on the LAN, or from the LAN on the WAN
                cc[_C_DROPPED_BAD_SOURCE] += 1
                continue
            top = sh >> 8
            if top == 0 or top == 127 or top >= 224 or sh == 0xA9FE \
                    or (sh == pw[me + _P_NET_HI] and sl == pw[me + _P_NET_LO]) \
                    or (sh == pw[me + _P_BC_HI] and sl == pw[me + _P_BC_LO]) \
                    or (sh == pw[me + _P_OWN_HI] and sl == pw[me + _P_OWN_LO]):
                cc[_C_DROPPED_MARTIAN] += 1
                continue
            if (w[_F_OPT] & _OPT_SOURCE_ROUTE) and not (pw[_P_FLAGS] & _PF_SOURCE_ROUTE):
                cc[_C_DROPPED_SOURCE_ROUTE] += 1
                continue
            if (kind == _K_TCP or kind == _K_UDP) and (w[_F_SPORT] == 0 or w[_F_DPORT] == 0):
                cc[_C_DROPPED_PORT_ZERO] += 1
                continue
            if s == _LAN:
                if dh == pw[_P_OWN_HI] and dl == pw[_P_OWN_LO]:
                    v = _V_TO_ROUTER
                elif dh == pw[_P_SIDE + _P_OWN_HI] and dl == pw[_P_SIDE + _P_OWN_LO]:
                    v = _V_HAIRPIN
                elif (dh >> 8) >= 224 \
                        or ((dh & pw[_P_MASK_HI]) == pw[_P_NET_HI]
                            and (dl & pw[_P_MASK_LO]) == pw[_P_NET_LO]) \
                        or (dh == pw[_P_SIDE + _P_BC_HI] and dl == pw[_P_SIDE + _P_BC_LO]):
                    cc[_C_DROPPED_LAN_LOCAL] += 1
                    continue
            if v == _V_PASS:
                if w[_F_FRAG] & _FRAG_ANY:
                    v = _V_FRAGMENT
                elif w[_F_LEN] > pw[me + _P_OUT_MTU]:
                    v = _V_TOO_BIG
        if v == _V_PASS:
            if kind == _K_ERROR:
                st = int(error(buf, f, mems, heads))
            else:
                st = int(flow(buf, f, mems, heads))  # any other kind: UNTRANSLATED
            if st == _OK:
                send(buf, w[_F_LEN])
                cc[_C_TRANSLATED_OUT + s] += 1
            else:
                slow(_V_UNTRANSLATED, st)
        else:
            slow(v, _OK)
