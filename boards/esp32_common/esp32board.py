# natrouter on the ESP32: what the three ESP32 boards share. Each board's board.py
# (boards/WT32_ETH01, OLIMEX_ESP32_POE, ESP32_GENERIC) is data: its name, its hardware
# and its table sizes, given to setup(); this module implements the board interface (boards/README.md)
# around the natlink C module (boards/natlink/), which hands the router the IPv4
# packets lwIP must not keep and sends the router's packets out through lwIP.
#
#   WAN: Ethernet (a LAN8720 PHY over RMII, network.LAN) or the Wi-Fi station
#   LAN: the Wi-Fi access point; ESP-IDF's DHCP server serves it (LAN_DHCP = False),
#        handing out the configuration's pool, lease time and first "dns" server.
#
# Everything comes from natrouter.json (firmware/manage/config.py): "lan", "wan" (mode static
# or dhcp), "wifi", "dhcp", "dns", "ports", "forwards", "mtu"; this module adds the
# rules the ESP32 imposes (check(): the port split with lwIP, natlink's limits, what
# ESP-IDF's DHCP server takes) and the boards' defaults (setup()).
#
# Threads: the router runs in its own _thread (start()) and sleeps in natlink.wait()
# with the GIL released, so the REPL stays live. A supervisor thread looks once a
# second for what must follow the running configuration: a WAN lease that arrived or
# changed (the router restarts with it) and Wi-Fi or DHCP settings changed from the
# REPL (applied to the access point or the station at once).
import time

import machine
import natlink
import network

from manage import config
import natlinkrules
from nat.addr import ip, ip_bytes, ip_str
from natlinkrules import claims, merge  # noqa: F401 (the board's interface to tests, nr)

LAN_DHCP = False    # ESP-IDF serves DHCP on the access point, not the router

DHCPS_MAX_LEASE = 100           # ESP-IDF: a pool spans at most this + 1 addresses

# Defaults for every ESP32 board; board.py adds its table sizes (setup()).
DEFAULTS = {
    "ports": natlinkrules.DEFAULTS["ports"],  # the NAT range below lwIP's own ports
    "wan": {"mode": "dhcp"},
}

WAN_WAIT_MS = 15000             # open_links() waits this long for a link and a lease
NETIF_WAIT_MS = 2000            # ... and this long for ESP-IDF to add the netifs
SUPERVISE_MS = 1000             # the supervisor looks this often
ROUTER_STACK = 12 * 1024        # the router's thread (from ESP-IDF's heap, not the GC's)
SUPERVISOR_STACK = 8 * 1024
SUPERVISOR = True               # tests turn it off and call supervise() themselves

_ZERO = "0.0.0.0"


def say(*args):
    print("natrouter:", *args)


# ---- the ESP32's rules on a validated configuration (config.board_rules)

def check(cfg, problems):
    """What config.validate() cannot know: the port split with lwIP and natlink's
    limits (natlinkrules.check: what natlink claims for the router is
    natlinkrules.claims), and that ESP-IDF's DHCP server takes a pool of at most 101
    addresses in the AP's /24 (not its own), no static leases, one DNS server."""
    natlinkrules.check(cfg, problems, natlink.MAX_RANGES, natlink.MTU)
    if not cfg["dns"]:
        problems.add("dns: the access point's DHCP server (ESP-IDF's) hands out one DNS "
                     "server and, given none, names itself, where nothing answers",
                     "using %s" % config.defaults()["dns"][0])
        cfg["dns"] = [config.defaults()["dns"][0]]
    _check_pool(cfg, problems)


def _check_pool(cfg, problems):
    d = cfg["dhcp"]
    if d["static"]:
        problems.add("dhcp.static: the access point's DHCP server (ESP-IDF's) has no static "
                     "leases", "ignored")
        d["static"] = []
    la, lm = cfg["lan"]["addr_int"], cfg["lan"]["mask_int"]
    first, last = ip(d["first"]), ip(d["last"])
    fits = (first >> 8 == la >> 8 and last >> 8 == la >> 8 and not first <= la <= last
            and last - first <= DHCPS_MAX_LEASE)
    if fits or not d["enabled"]:
        return
    first, last = ap_pool(la, lm)
    problems.add("dhcp.first/last: %s..%s: the access point's DHCP server (ESP-IDF's) "
                 "takes at most %d addresses, all in the /24 of the LAN address %s and not "
                 "that address" % (d["first"], d["last"], DHCPS_MAX_LEASE + 1,
                                   cfg["lan"]["addr"]),
                 "using %s..%s" % (ip_str(first), ip_str(last)))
    d["first"], d["last"] = ip_str(first), ip_str(last)


def ap_pool(la, lm):
    """The pool ESP-IDF picks itself: 100 addresses above the AP's address in its /24,
    or below it when it sits in the upper half; clipped to the LAN subnet."""
    host = la & 0xFF
    first = la + 1 if host < 0x80 else la - DHCPS_MAX_LEASE
    last = first + DHCPS_MAX_LEASE - 1
    net, bcast = la & lm, (la & lm) | (lm ^ 0xFFFFFFFF)
    return max(first, net + 1), min(last, bcast - 1)


# ---- the interfaces

class Ethernet:
    """The WAN on an Ethernet PHY over RMII (network.LAN): a LAN8720 on the boards, the
    DP83848 QEMU emulates. power: the GPIO that powers the PHY (or enables its
    oscillator); ref_clk: the 50 MHz RMII clock's GPIO, into the ESP32 (GPIO0) or out of
    it (ref_clk_out, GPIO16/17)."""
    kind = "Ethernet"

    def __init__(self, mdc, mdio, phy_addr, power=None, ref_clk=None, ref_clk_out=False,
                 phy="LAN8720"):
        self.pins = {"mdc": mdc, "mdio": mdio, "power": power, "ref_clk": ref_clk}
        self.phy_addr = phy_addr
        self.ref_clk_out = ref_clk_out
        self.phy = phy
        self.nic = None

    def open(self, cfg):
        if self.nic is None:
            kw = {"phy_addr": self.phy_addr, "phy_type": getattr(network, "PHY_" + self.phy)}
            for name, gpio in self.pins.items():
                if gpio is not None:
                    kw[name] = machine.Pin(gpio)
            if self.pins["ref_clk"] is not None:
                kw["ref_clk_mode"] = machine.Pin.OUT if self.ref_clk_out else machine.Pin.IN
            self.nic = network.LAN(**kw)
        if not self.nic.active():
            self.nic.active(True)
        return self.nic

    def apply(self, cfg):
        pass                    # nothing of "wifi" concerns the Ethernet WAN

    def up(self):
        return self.nic.isconnected()

    def describe(self):
        return "Ethernet (%s, PHY address %d)" % (self.phy, self.phy_addr)


class Station:
    """The WAN as a Wi-Fi station (network.WLAN(IF_STA)) joining wifi.sta_ssid. On the
    one radio it shares with the access point: the AP moves to the station's channel
    and they split the air time."""
    kind = "Wi-Fi station"

    def __init__(self):
        self.nic = None
        self._joined = None     # (ssid, key) last asked for

    def open(self, cfg):
        if self.nic is None:
            self.nic = network.WLAN(network.WLAN.IF_STA)
        if not self.nic.active():
            self.nic.active(True)
        # Modem sleep would hold every packet until the next beacon.
        self.nic.config(pm=self.nic.PM_NONE)
        self.apply(cfg)
        return self.nic

    def apply(self, cfg):
        w = cfg["wifi"]
        want = (w["sta_ssid"], w["sta_key"])
        if want == self._joined:
            return
        if self._joined is not None:
            self.nic.disconnect()
        self._joined = want
        if not want[0]:
            say("wifi.sta_ssid is empty: no WAN until it is set (import nr; "
                "nr.change({\"wifi.sta_ssid\": \"...\", \"wifi.sta_key\": \"...\"}); nr.save())")
            return
        say("joining Wi-Fi network %r" % want[0])
        self.nic.connect(want[0], want[1] or None)

    def up(self):
        return self.nic.isconnected()

    def describe(self):
        return "Wi-Fi station to %r" % (self._joined or ("",))[0]


class AccessPoint:
    """The LAN: the Wi-Fi access point (network.WLAN(IF_AP)) at the LAN address, and
    ESP-IDF's DHCP server on it (natlink.dhcps: pool, lease time, DNS server)."""

    def __init__(self):
        self.nic = None
        self._wifi = None       # what was last applied, so unchanged settings leave
        self._addr = None       # the clients (and their leases) alone
        self._dhcp = None

    def open(self, cfg):
        if self.nic is None:
            self.nic = network.WLAN(network.WLAN.IF_AP)
        if not self.nic.active():
            self.nic.active(True)
        self.apply(cfg)
        return self.nic

    def apply(self, cfg):
        ap = self.nic
        w = cfg["wifi"]
        wifi = (w["ap_ssid"], w["ap_key"], w["ap_channel"], w["ap_clients"])
        if wifi != self._wifi:
            ap.config(ssid=w["ap_ssid"], key=w["ap_key"],
                      security=ap.SEC_WPA2 if w["ap_key"] else ap.SEC_OPEN,
                      channel=w["ap_channel"], max_clients=w["ap_clients"])
            self._wifi = wifi
            if w["ap_key"] == config.defaults()["wifi"]["ap_key"]:
                say("the access point's key is the default one: set wifi.ap_key "
                    "(import nr; nr.set(\"wifi.ap_key\", \"...\"); nr.save())")
        lan = cfg["lan"]
        addr = (lan["addr"], lan["mask"])
        if addr != self._addr:
            # The AP's gateway is itself: ESP-IDF's DHCP server offers it as the router.
            ap.ipconfig(addr4=addr, gw4=lan["addr"])
            self._addr = addr
            self._dhcp = None   # ESP-IDF restarted its server: set it up again
        d = cfg["dhcp"]
        dhcp = (d["enabled"], cfg["dns"][0], d["first"], d["last"], d["lease_s"])
        if dhcp != self._dhcp:
            natlink.dhcps(ap, enabled=d["enabled"], dns=ip_bytes(ip(cfg["dns"][0])),
                          first=ip_bytes(ip(d["first"])), last=ip_bytes(ip(d["last"])),
                          lease_s=d["lease_s"])
            self._dhcp = dhcp

    def describe(self):
        w = self.nic.config("ssid"), self.nic.config("channel")
        return "Wi-Fi access point %r on channel %d" % w


# ---- the board

class _Board:
    name = "ESP32"
    wan = None
    lan = None


_board = _Board()
_state = {"links": None, "lease": None, "refused": None, "applied": None, "supervisor": False,
          "last_error": None}


def setup(name, wan, lan, table):
    """Called by board.py at import, before the configuration is loaded: the board's
    name, its interfaces, and its default table sizes (over DEFAULTS)."""
    _board.name = name
    _board.wan = wan
    _board.lan = lan
    merged = {}
    for src in (DEFAULTS, {"table": table}):
        for key, value in src.items():
            merged.setdefault(key, {}).update(value)
    config.board_rules(merged, check)


def lease():
    """(addr, mask, gateway) the WAN interface holds now, or None without an address."""
    nic = _board.wan.nic
    addr, mask = nic.ipconfig("addr4")
    if addr == _ZERO:
        return None
    return addr, mask, nic.ipconfig("gw4")


def with_lease(cfg, held):
    """cfg with the WAN's addresses replaced by a lease, validated whole (a lease whose
    subnet overlaps the LAN, or without a usable gateway, is refused: None)."""
    raw = config.to_file(cfg)
    raw["wan"] = dict(raw["wan"], addr=held[0], mask=held[1], gateway=held[2])
    try:
        return config.validate(raw, strict=True)[0]
    except ValueError as e:
        if held != _state["refused"]:
            say("WAN lease %s/%s via %s refused: %s" % (held + (e,)))
            _state["refused"] = held
        return None


def _wait_wan(cfg):
    """Static: give the WAN interface its addresses. DHCP: wait (at most WAN_WAIT_MS)
    for a lease and take it into cfg; without one natlink claims nothing on the WAN
    until the supervisor restarts the router with the lease."""
    nic = _board.wan.nic
    wan = cfg["wan"]
    if wan["mode"] == "static":
        nic.ipconfig(addr4=(wan["addr"], wan["mask"]), gw4=wan["gateway"])
        network.ipconfig(dns=cfg["dns"][0])     # the board's own resolver
        return True
    if not nic.ipconfig("dhcp4"):
        nic.ipconfig(dhcp4=True)
    t0 = time.ticks_ms()
    said = False
    while True:
        held = lease() if _board.wan.up() else None
        if held is not None:
            new = with_lease(cfg, held)
            if new is None:
                return False
            cfg["wan"].update(new["wan"])
            _state["lease"] = held
            return True
        if time.ticks_diff(time.ticks_ms(), t0) >= WAN_WAIT_MS:
            say("no DHCP lease on the WAN (%s) yet: forwarding starts when one comes"
                % _board.wan.describe())
            return False
        if not said:
            say("waiting for a DHCP lease on the WAN (%s)" % _board.wan.describe())
            said = True
        time.sleep_ms(100)


def open_links(cfg):
    """The board interface: the access point (LAN) and the WAN interface up and
    configured from cfg, natlink claiming on both; (lan, wan) natlink.Link objects."""
    natlink.stop()          # a restart: the netifs get their input back first
    lan_nic = _board.lan.open(cfg)
    wan_nic = _board.wan.open(cfg)
    addressed = _wait_wan(cfg)
    ranges = claims(cfg)
    wan_addr = ip_bytes(cfg["wan"]["addr_int"]) if addressed else bytes(4)
    # ESP-IDF adds an interface's lwIP netif a moment after active(True) returns
    # (its start event): natlink refuses one not added yet, so ask again shortly.
    t0 = time.ticks_ms()
    while True:
        try:
            links = natlink.start(lan=lan_nic, wan=wan_nic, wan_addr=wan_addr,
                                  tcp=ranges["tcp"], udp=ranges["udp"], icmp=ranges["icmp"],
                                  lan_mtu=cfg["lan"]["mtu"], wan_mtu=cfg["wan"]["mtu"])
            break
        except OSError:
            if time.ticks_diff(time.ticks_ms(), t0) >= NETIF_WAIT_MS:
                raise
            time.sleep_ms(50)
    _state["links"] = links
    _state["applied"] = cfg
    say("%s: LAN %s, WAN %s %s" % (_board.name, _board.lan.describe(), _board.wan.describe(),
                                   "%s/%s via %s" % (cfg["wan"]["addr"], cfg["wan"]["mask"],
                                                     cfg["wan"]["gateway"])
                                   if addressed else "(no address yet)"))
    return links


def wait(timeout_ms):
    """The board interface: sleep (GIL released) until a natlink ring has packets."""
    natlink.wait(timeout_ms)


def start(fn):
    """The board interface: fn (Router.run) in its own thread; the supervisor too, once."""
    import _thread
    _thread.stack_size(ROUTER_STACK)
    _thread.start_new_thread(fn, ())
    if SUPERVISOR and not _state["supervisor"]:
        _state["supervisor"] = True
        _thread.stack_size(SUPERVISOR_STACK)
        _thread.start_new_thread(_supervisor, ())
    _thread.stack_size(0)


def _supervisor():
    while True:
        time.sleep_ms(SUPERVISE_MS)
        try:
            supervise()
        except Exception as e:  # it must outlive any one bad moment, like the router
            _state["last_error"] = repr(e)


def supervise():
    """One look at what must follow the running configuration: settings changed from
    the REPL (nr.set) reach the access point and the station; a WAN lease that came
    or changed restarts the router with it. Returns what it did, for the tests."""
    from manage.runner import runner
    r = runner.router
    if r is None or not r.is_running():
        return "idle"
    cfg = r.cfg
    did = "nothing"
    if cfg is not _state["applied"]:
        _board.lan.apply(cfg)
        _board.wan.apply(cfg)
        _state["applied"] = cfg
        did = "applied"
    if cfg["wan"]["mode"] != "dhcp":
        return did
    held = lease() if _board.wan.up() else None
    if held is None or held == _state["lease"]:
        return did
    new = with_lease(cfg, held)
    if new is None:
        return did
    say("WAN lease %s/%s via %s: restarting the router" % held)
    runner.restart(new)
    return "restarted"


# ---- for the REPL (slow path)

def counters():
    """Per link: natlink's counters (claimed, passed, rx_drops, received, sent,
    tx_full, tx_errors, kick_fails) and the interface's state."""
    lan = natlink.counters(natlink.LAN)
    wan = natlink.counters(natlink.WAN)
    ap = _board.lan.nic
    if ap is not None:
        lan["stations"] = len(ap.status("stations"))
    if _board.wan.nic is not None:
        wan["up"] = _board.wan.up()
        wan["lease"] = _state["lease"]
    return {"lan": lan, "wan": wan}
