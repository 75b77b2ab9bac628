# Ethernet framing for the virtual board's links, per frame: what a received frame is,
# and the header of a frame to send (next hop by the link's subnet, its MAC from the ARP
# cache). One call each, compiled by viper on the unix port; the pure-Python twins
# (classify_py, egress_py) serve CPython tests and are compared with them.
#
# route: a link's bytearray, R_* below. The ARP cache's arrays (arp.py): ips (4 bytes a
# slot), states (one byte a slot), macs (6 bytes a slot), used (one byte a slot, set
# here so the cache's timers refresh only entries in use).
from compat import const

FRAME_IPV4 = const(0)    # an IPv4 frame for this link's MAC (or broadcast), not too long
FRAME_ARP = const(1)
FRAME_OTHER = const(2)   # anything else: ignored

HOP_MISS = const(-1)       # the next hop's MAC is not known: hold the frame (arp.hold)
HOP_BROADCAST = const(-2)  # header done, to ff:ff:ff:ff:ff:ff
HOP_NO_ROUTE = const(-3)   # off the subnet and no gateway

R_NET = const(0)       # the link's network address (4 bytes)
R_MASK = const(4)
R_GW = const(8)        # the gateway (4 bytes; 0.0.0.0: none)
R_MAC = const(12)      # the link's own MAC (6 bytes)
R_SIZE = const(18)

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_IP_DST = const(16)
# ---- end of layout

_ETH = const(14)
_DST = const(_ETH + _IP_DST)   # the IPv4 destination, in the frame
_REACHABLE = const(2)  # arp.py's state of an answered entry


def route(net, mask, gateway, mac):
    """A link's route bytes: net, mask, gateway (4 bytes each, gateway None for none),
    own MAC."""
    r = bytearray(R_SIZE)
    r[R_NET:R_NET + 4] = net
    r[R_MASK:R_MASK + 4] = mask
    if gateway is not None:
        r[R_GW:R_GW + 4] = gateway
    r[R_MAC:R_MAC + 6] = mac
    return r


def classify_py(f, n, mac, mtu):
    if n < _ETH + 20 or f[12] != 0x08:
        return FRAME_OTHER
    if f[13] == 0x06:
        return FRAME_ARP
    if f[13] != 0x00 or n - _ETH > mtu:
        return FRAME_OTHER
    if (f[0] == mac[0] and f[1] == mac[1] and f[2] == mac[2] and f[3] == mac[3]
            and f[4] == mac[4] and f[5] == mac[5]):
        return FRAME_IPV4
    if f[0] & f[1] & f[2] & f[3] & f[4] & f[5] == 0xFF:
        return FRAME_IPV4
    return FRAME_OTHER


def next_hop_py(frame, r):
    """(buffer, offset) of the next hop's address, HOP_BROADCAST or HOP_NO_ROUTE."""
    on_link = True
    everyone = True
    for i in range(4):
        d = frame[_DST + i]
        m = r[R_MASK + i]
        if d & m != r[R_NET + i]:
            on_link = False
        if d | m != 0xFF:
            everyone = False
    if on_link:
        return HOP_BROADCAST if everyone else (frame, _DST)
    if frame[_DST] & frame[_DST + 1] & frame[_DST + 2] & frame[_DST + 3] == 0xFF:
        return HOP_BROADCAST
    if r[R_GW] | r[R_GW + 1] | r[R_GW + 2] | r[R_GW + 3]:
        return (r, R_GW)
    return HOP_NO_ROUTE


def egress_py(frame, r, ips, states, macs, used):
    """Fill in frame's Ethernet header for the IPv4 packet behind it. Returns the ARP
    slot used, or HOP_*."""
    hop = next_hop_py(frame, r)
    if hop == HOP_NO_ROUTE:
        return HOP_NO_ROUTE
    if hop == HOP_BROADCAST:
        for i in range(6):
            frame[i] = 0xFF
        slot = HOP_BROADCAST
    else:
        b, o = hop
        slot = HOP_MISS
        for s in range(len(states)):
            j = 4 * s
            if (states[s] == _REACHABLE and ips[j] == b[o] and ips[j + 1] == b[o + 1]
                    and ips[j + 2] == b[o + 2] and ips[j + 3] == b[o + 3]):
                slot = s
                break
        if slot == HOP_MISS:
            return HOP_MISS
        used[slot] = 1
        for i in range(6):
            frame[i] = macs[6 * slot + i]
    for i in range(6):
        frame[6 + i] = r[R_MAC + i]
    frame[12] = 0x08
    frame[13] = 0x00
    return slot


try:
    import micropython

    @micropython.viper
    def classify(f, n: int, mac, mtu: int) -> int:
        p = ptr8(f)
        m = ptr8(mac)
        if n < _ETH + 20 or p[12] != 0x08:
            return FRAME_OTHER
        if p[13] == 0x06:
            return FRAME_ARP
        if p[13] != 0x00 or n - _ETH > mtu:
            return FRAME_OTHER
        if p[0] == m[0] and p[1] == m[1] and p[2] == m[2] and p[3] == m[3] \
                and p[4] == m[4] and p[5] == m[5]:
            return FRAME_IPV4
        if (p[0] & p[1] & p[2] & p[3] & p[4] & p[5]) == 0xFF:
            return FRAME_IPV4
        return FRAME_OTHER

    @micropython.viper
    def egress(frame, r, ips, states, macs, used) -> int:
        fr = ptr8(frame)
        rt = ptr8(r)
        on_link = 1
        everyone = 1
        i = 0
        while i < 4:
            d = fr[_DST + i]
            m = rt[R_MASK + i]
            if (d & m) != rt[R_NET + i]:
                on_link = 0
            if (d | m) != 0xFF:
                everyone = 0
            i += 1
        hop = ptr8(0)
        slot = HOP_MISS
        if on_link:
            if everyone:
                slot = HOP_BROADCAST
            else:
                hop = ptr8(int(fr) + _DST)
        elif (fr[_DST] & fr[_DST + 1] & fr[_DST + 2] & fr[_DST + 3]) == 0xFF:
            slot = HOP_BROADCAST
        elif rt[R_GW] | rt[R_GW + 1] | rt[R_GW + 2] | rt[R_GW + 3]:
            hop = ptr8(int(rt) + R_GW)
        else:
            return HOP_NO_ROUTE
        if slot == HOP_BROADCAST:
            i = 0
            while i < 6:
                fr[i] = 0xFF
                i += 1
        else:
            st = ptr8(states)
            ip = ptr8(ips)
            size = int(len(states))
            s = 0
            while s < size:
                j = 4 * s
                if st[s] == _REACHABLE and ip[j] == hop[0] and ip[j + 1] == hop[1] \
                        and ip[j + 2] == hop[2] and ip[j + 3] == hop[3]:
                    slot = s
                    break
                s += 1
            if slot == HOP_MISS:
                return HOP_MISS
            ptr8(used)[slot] = 1
            mc = ptr8(macs)
            j = 6 * slot
            i = 0
            while i < 6:
                fr[i] = mc[j + i]
                i += 1
        i = 0
        while i < 6:
            fr[6 + i] = rt[R_MAC + i]
            i += 1
        fr[12] = 0x08
        fr[13] = 0x00
        return slot
except Exception:  # no viper (CPython): the twins serve
    classify, egress = classify_py, egress_py
