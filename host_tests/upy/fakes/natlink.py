# A fake of the natlink module (boards/natlink/modnatlink.c) for the board tests: the
# same functions, arguments and refusals, and two packet rings per link the test fills
# and empties in place of lwIP: fake_inject(link, packet) is a packet natlink claimed,
# fake_take(link) one the router sent. fake_log records start/stop/dhcps/set_wan_addr/
# claim/rehook. A netif the fake network adds back (its netif_epoch moved: ESP-IDF
# restarted the interface) has lwIP's input again: what arrives there is not claimed
# until rehook().
# test_esp32_boards.py checks that this module and the real binding (built into the
# unix port from host_tests/natlink_unix/) offer the same names.
import time

try:
    import _thread
    _lock = _thread.allocate_lock()
except ImportError:                 # the WASI build: one thread, nothing to lock
    class _NoLock:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    _lock = _NoLock()

LAN = 0
WAN = 1
MTU = 1500
RX_SLOTS = 8
TX_SLOTS = 8
MAX_RANGES = 8
IDF_RESERVE = 48 * 1024   # natlink_heap.c's default
_NAMES = ("claimed", "passed", "rx_drops", "received", "sent", "tx_full", "tx_errors",
          "kick_fails")

fake_log = []                   # ("start", kwargs) / ("stop",) / ("dhcps", nic, kwargs) / ...
fake_not_started = [0]          # start() refuses this many times: netifs not added yet
_st = {"running": False, "generation": 0, "wan_addr": bytes(4), "notified": False}
_rx = ([], [])                  # claimed packets waiting for recv_into, per link
_tx = ([], [])                  # packets the router sent, per link
_cnt = [dict.fromkeys(_NAMES, 0), dict.fromkeys(_NAMES, 0)]
_hooks = [None, None]           # per link: [nic, the netif_epoch natlink wrapped]


def _check_link(which):
    if which not in (LAN, WAN):
        raise ValueError("natlink: link must be natlink.LAN or natlink.WAN")
    return which


def _addr(v, what):
    if not isinstance(v, (bytes, bytearray, memoryview)) or len(v) != 4:
        raise ValueError("natlink: %s must be 4 bytes" % what)
    return bytes(v)


def _ranges(seq, what):
    seq = list(seq)
    if len(seq) > MAX_RANGES:
        raise ValueError("natlink: %s: more than %d ranges" % (what, MAX_RANGES))
    out = []
    for pair in seq:
        lo, hi = pair
        if not (0 <= lo <= hi <= 0xFFFF):
            raise ValueError("natlink: %s: bad range" % what)
        out.append((lo, hi))
    return out


def _netif(nic):
    # The ESP32 port takes network.LAN / network.WLAN objects only (their netif).
    if not hasattr(nic, "who") or not hasattr(nic, "ipconfig"):
        raise TypeError("natlink: expected a network.LAN or network.WLAN object")
    if not nic.active():
        raise OSError("natlink: the interface has no lwIP netif (activate it first)")
    return nic


class Link:
    def __init__(self, link, mtu, generation):
        self._link = link
        self.name = "lan" if link == LAN else "wan"
        self.mtu = mtu
        self._generation = generation

    def recv_into(self, buf):
        if self._generation != _st["generation"]:
            return 0
        with _lock:
            if not _rx[self._link]:
                return 0
            pkt = _rx[self._link].pop(0)
            c = _cnt[self._link]
            if len(pkt) > len(buf):
                c["rx_drops"] += 1
                return 0
            c["received"] += 1
        buf[0:len(pkt)] = pkt
        return len(pkt)

    def send(self, buf, n):
        if not 0 <= n <= len(buf):
            raise ValueError("natlink: n is outside the buffer")
        if self._generation != _st["generation"]:
            return None
        pkt = bytes(buf[0:n])
        if n < 20 or n > MTU or pkt[0] >> 4 != 4:
            return None                 # natlink_send() refuses it, uncounted
        with _lock:
            c = _cnt[self._link]
            if len(_tx[self._link]) >= TX_SLOTS * 64:
                c["tx_full"] += 1
                return None
            _tx[self._link].append(pkt)
            c["sent"] += 1
        return None

    def __repr__(self):
        return "<natlink.Link %s mtu %d%s>" % (self.name, self.mtu,
                                               "" if self._generation == _st["generation"]
                                               else " stale")


def start(lan=None, wan=None, wan_addr=None, tcp=None, udp=None, icmp=None, dhcp=False,
          lan_mtu=MTU, wan_mtu=MTU):
    for name, v in (("lan", lan), ("wan", wan), ("wan_addr", wan_addr), ("tcp", tcp),
                    ("udp", udp), ("icmp", icmp)):
        if v is None:
            raise TypeError("'%s' argument required" % name)
    _netif(lan)
    _netif(wan)
    kw = {"lan": lan, "wan": wan, "wan_addr": _addr(wan_addr, "wan_addr"),
          "tcp": _ranges(tcp, "tcp"), "udp": _ranges(udp, "udp"), "icmp": _ranges(icmp, "icmp"),
          "dhcp": bool(dhcp), "lan_mtu": lan_mtu, "wan_mtu": wan_mtu}
    if not (68 <= lan_mtu <= MTU and 68 <= wan_mtu <= MTU):
        raise ValueError("natlink: an mtu must be 68..%d" % MTU)
    if _st["running"]:
        raise OSError("natlink: running already (natlink.stop() first)")
    if lan is wan:
        raise OSError("natlink: cannot claim these interfaces (not Ethernet, the same one "
                      "twice, or wrapped already)")
    if fake_not_started[0]:
        fake_not_started[0] -= 1
        fake_log.append(("not started",))
        raise OSError("natlink: the interface is not started yet (activate it, then retry)")
    with _lock:
        for i in (LAN, WAN):
            _rx[i][:] = []
            for n in _NAMES:
                _cnt[i][n] = 0
        _st["running"] = True
        _st["wan_addr"] = kw["wan_addr"]
        _st["generation"] += 1
        _hooks[LAN] = [lan, lan.netif_epoch]
        _hooks[WAN] = [wan, wan.netif_epoch]
    fake_log.append(("start", kw))
    g = _st["generation"]
    return Link(LAN, lan_mtu, g), Link(WAN, wan_mtu, g)


def stop():
    _st["running"] = False
    _st["generation"] += 1
    _st["notified"] = True
    fake_log.append(("stop",))


def running():
    return _st["running"]


def claim(tcp=None, udp=None, icmp=None, dhcp=False):
    for name, v in (("tcp", tcp), ("udp", udp), ("icmp", icmp)):
        if v is None:
            raise TypeError("'%s' argument required" % name)
    kw = {"tcp": _ranges(tcp, "tcp"), "udp": _ranges(udp, "udp"), "icmp": _ranges(icmp, "icmp"),
          "dhcp": bool(dhcp)}
    if not _st["running"]:
        raise OSError("natlink: not running (natlink.start() first)")
    fake_log.append(("claim", kw))


def rehook():
    n = 0
    if _st["running"]:
        for hook in _hooks:
            if hook[1] != hook[0].netif_epoch:
                hook[1] = hook[0].netif_epoch
                n += 1
        fake_log.append(("rehook", n))
    return n


def wait(timeout_ms):
    deadline = time.ticks_add(time.ticks_ms(), max(0, timeout_ms))
    while True:
        if _st["notified"] or _rx[LAN] or _rx[WAN]:
            _st["notified"] = False
            return True
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            return False
        time.sleep_ms(1)


def set_wan_addr(addr):
    _st["wan_addr"] = _addr(addr, "wan_addr")
    fake_log.append(("set_wan_addr", _st["wan_addr"]))


def pending(which):
    return len(_rx[_check_link(which)])


def tx_free():
    return TX_SLOTS


def counters(which):
    return dict(_cnt[_check_link(which)])


def dhcps(nic, enabled=None, dns=None, first=None, last=None, lease_s=None):
    for name, v in (("enabled", enabled), ("dns", dns), ("first", first), ("last", last),
                    ("lease_s", lease_s)):
        if v is None:
            raise TypeError("'%s' argument required" % name)
    kw = {"enabled": bool(enabled), "dns": _addr(dns, "dns"), "first": _addr(first, "first"),
          "last": _addr(last, "last"), "lease_s": lease_s}
    if lease_s < 60:
        raise ValueError("natlink: lease_s must be 60 or more")
    if not hasattr(nic, "who"):
        raise TypeError("natlink: expected a network.LAN or network.WLAN object")
    if nic.who != "ap":
        raise ValueError("natlink.dhcps: only an access point (WLAN(IF_AP)) serves DHCP")
    fake_log.append(("dhcps", nic.who, kw))


# ---- the test's side ---------------------------------------------------------------

def fake_inject(which, pkt):
    """A packet natlink claims on `which`; False when the ring was full (dropped), or
    when lwIP has that netif's input again (ESP-IDF added it back: rehook())."""
    with _lock:
        c = _cnt[_check_link(which)]
        hook = _hooks[which]
        if _st["running"] and hook is not None and hook[1] != hook[0].netif_epoch:
            return False            # natlink's wrapper is not on it: lwIP has it
        c["claimed"] += 1
        if not _st["running"] or len(_rx[which]) >= RX_SLOTS:
            c["rx_drops"] += 1
            return False
        _rx[which].append(bytes(pkt))
    return True


def fake_take(which):
    """The oldest packet the router sent through `which`, or None."""
    with _lock:
        return _tx[_check_link(which)].pop(0) if _tx[which] else None


def fake_reset():
    stop()
    fake_log[:] = []
    _hooks[LAN] = _hooks[WAN] = None
    for i in (LAN, WAN):
        _rx[i][:] = []
        _tx[i][:] = []
