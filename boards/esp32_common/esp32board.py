# natrouter on the ESP32: what the ESP32 boards share. Each board's board.py
# (boards/WT32_ETH01, OLIMEX_ESP32_POE, ESP32_GENERIC) is data: its name, its hardware
# and its table sizes, given to setup(); this module implements the board interface
# (boards/README.md) around the natlink C module (boards/natlink/), which hands the
# router the IPv4 packets lwIP must not keep and sends the router's packets out through
# lwIP.
#
#   WAN: Ethernet (a LAN8720 PHY over RMII, network.LAN) or the Wi-Fi station
#        (esp32net.py, esp32station.py)
#   LAN: the Wi-Fi access point, served by the router's own DHCP server (LAN_DHCP:
#        natlink claims the LAN's DHCP requests; ESP-IDF's server is stopped): static
#        leases, several DNS servers, pools of any size the LAN allows, leases kept
#        across reboots.
#
# Everything comes from natrouter.json (firmware/manage/config.py): "lan", "wan" (mode
# static or dhcp), "wifi", "dhcp", "dns", "ports", "forwards", "mtu", and this board's
# "recovery" (the watchdog, a reboot without a WAN address); this module adds the rules
# the ESP32 imposes (check(): the port split with lwIP, natlink's limits) and the boards'
# defaults (setup()).
#
# Threads: the router runs in its own _thread (start()) and sleeps in natlink.wait()
# with the GIL released, so the REPL stays live. A supervisor thread (esp32watch.py)
# looks once a second at what must follow the running configuration and what must be
# recovered without a person: the watchdog, the uplink, a new WAN lease.
import time

import natlink

from manage import config
from manage.wifi import WIFI_KEY_RULE, wifi_key_ok, wifi_name_ok
import natlinkrules
from nat.addr import ip_bytes
from natlinkrules import claims, merge  # noqa: F401 (the board's interface to tests, nr)
from esp32net import AccessPoint, Ethernet, addressed, say  # noqa: F401 (board.py's names)
import esp32heap
from esp32heap import memory, heap_room  # noqa: F401 (the board interface: manage/memory.py)
from esp32station import Station, parse_mac, usable_mac
from esp32reset import Button, at_boot  # noqa: F401 (Button: board.py's)

LAN_DHCP = True     # the router serves DHCP on the access point (natlink claims it)

# Defaults for every ESP32 board; board.py adds its table sizes (setup()).
DEFAULTS = {
    "ports": natlinkrules.DEFAULTS["ports"],  # the NAT range below lwIP's own ports
    "wan": {"mode": "dhcp"},
    # watchdog_s: the hardware watchdog's timeout (0: none); wan_reboot_min: reboot after
    # this many minutes without a WAN address (0: never).
    "recovery": {"watchdog_s": 60, "wan_reboot_min": 0},
    # the packet capture's ring, made only while a capture runs: what the heap spares
    "capture": {"size": 8192, "snap": 96},
}
STATION_DEFAULTS = {"wifi": {"sta_mac": "", "sta_networks": []}}   # a Wi-Fi WAN's own
RECOVERY_LIMITS = {"watchdog_s": (10, 3600), "wan_reboot_min": (1, 1440)}
STA_NETWORKS_MAX = 4

WAN_WAIT_MS = 15000             # open_links() waits this long for a link and a lease
NETIF_WAIT_MS = 2000            # ... and this long for ESP-IDF to add the netifs
AP_SETTLE_MS = 1000             # ... after the access point restarted with new settings
ROUTER_STACK = 12 * 1024        # the router's thread (from ESP-IDF's heap, not the GC's)
SUPERVISOR_STACK = 12 * 1024    # it restarts the router: open_links, the DHCP server, config
SUPERVISOR = True               # tests turn it off and call esp32watch.supervise()
WEB_STACK = 16 * 1024           # the page's thread (asyncio, microdot), MQTT's (firmware/web)
AP_NETIF = "ap%d"               # lwIP's name of the access point's netif (ESP-IDF's wlanif.c)
SOCKETS = None                  # the socket module lan_only() uses (None: the port's; tests)


# ---- the ESP32's rules on a validated configuration (config.board_rules)

def check(cfg, problems):
    """What config.validate() cannot know: the port split with lwIP and natlink's
    limits (natlinkrules.check: what natlink claims for the router is
    natlinkrules.claims), the tables its heap holds (esp32heap.py), this board's
    "recovery" and a Wi-Fi WAN's own keys."""
    natlinkrules.check(cfg, problems, natlink.MAX_RANGES, natlink.MTU)
    esp32heap.check(cfg, problems)
    rec, default = cfg["recovery"], DEFAULTS["recovery"]
    for key in list(rec):
        lo, hi = RECOVERY_LIMITS.get(key, (0, -1))
        v = rec[key]
        if key not in default:
            problems.add("recovery.%s: unknown key" % key, "ignored")
            del rec[key]
        elif type(v) is not int or not (v == 0 or lo <= v <= hi):
            problems.add("recovery.%s: %r must be 0 (off) or an integer %d..%d"
                         % (key, v, lo, hi), "using %d" % default[key])
            rec[key] = default[key]
    if "sta_mac" in cfg["wifi"]:
        _check_station(cfg["wifi"], problems)


def _check_station(w, problems):
    mac = w["sta_mac"]
    try:
        ok = mac == "" or usable_mac(parse_mac(mac))
    except ValueError:
        ok = False
    if not ok:
        problems.add("wifi.sta_mac: %r must be \"\" (the chip's own) or a unicast MAC "
                     "address \"02:xx:xx:xx:xx:xx\"" % (mac,), "using the chip's own")
        w["sta_mac"] = ""
    nets = w["sta_networks"]
    if not isinstance(nets, list):
        problems.add("wifi.sta_networks: must be a list of {\"ssid\": ..., \"key\": ...}",
                     "none")
        nets = []
    kept = []
    for i, n in enumerate(nets):
        where = "wifi.sta_networks[%d]" % i
        if not isinstance(n, dict) or sorted(n) != ["key", "ssid"]:
            problems.add("%s: must be {\"ssid\": ..., \"key\": ...}" % where, "left out")
        elif not wifi_name_ok(n["ssid"]):
            problems.add("%s.ssid: %r must be a name of 1..32 bytes" % (where, n["ssid"]),
                         "left out")
        elif not wifi_key_ok(n["key"]):
            problems.add("%s.key: %s" % (where, WIFI_KEY_RULE), "left out")
        elif len(kept) == STA_NETWORKS_MAX:
            problems.add("%s: at most %d more networks" % (where, STA_NETWORKS_MAX), "left out")
        else:
            kept.append({"ssid": n["ssid"], "key": n["key"]})
    w["sta_networks"] = kept


# ---- the board

class _Board:
    name = "ESP32"
    wan = None
    lan = None
    button = None


_board = _Board()
_state = {"links": None, "lease": None, "refused": None, "applied": None, "supervisor": False,
          "last_error": None}


def setup(name, wan, lan, table, button=None):
    """Called by board.py at import, before the configuration is loaded: the board's
    name, its interfaces, its default table sizes (over DEFAULTS) and its factory-reset
    button (esp32reset.Button, or None)."""
    _board.name = name
    _board.wan = wan
    _board.lan = lan
    _board.button = button
    merged = {}
    for src in (DEFAULTS, {"table": table}, STATION_DEFAULTS if isinstance(wan, Station) else {}):
        for key, value in src.items():
            merged.setdefault(key, {}).update(value)
    config.board_rules(merged, check)


def boot(path):
    """The board interface: before the configuration is read, a factory reset if the
    board's button is held (esp32reset.py)."""
    if _board.button is not None:
        at_boot(_board.button, path)


def lease():
    """(addr, mask, gateway) the WAN interface holds now, or None without an address."""
    nic = _board.wan.nic
    if nic is None or not addressed(nic):
        return None
    addr, mask = nic.ipconfig("addr4")
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


def follow_lease(cfg, held):
    """The configuration to restart with when the WAN holds a lease the running one
    does not know (it came, or moved); else None."""
    if cfg["wan"]["mode"] != "dhcp" or held is None or held == _state["lease"]:
        return None
    return with_lease(cfg, held)


def _wait_wan(cfg):
    """Static: give the WAN interface its addresses. DHCP: wait (at most WAN_WAIT_MS)
    for a lease and take it into cfg; without one natlink claims nothing on the WAN
    until the supervisor restarts the router with the lease."""
    import network
    nic = _board.wan.nic
    wan = cfg["wan"]
    if wan["mode"] == "static":
        nic.ipconfig(addr4=(wan["addr"], wan["mask"]), gw4=wan["gateway"])
        network.ipconfig(dns=cfg["dns"][0])     # the board's own resolver
        return True
    if not nic.ipconfig("dhcp4"):
        try:
            nic.ipconfig(dhcp4=True)
        except RuntimeError:
            # ESP_ERR_ESP_NETIF_DHCP_ALREADY_STARTED (0x5004): the interface's start event
            # started its client between the two calls (seen booting in QEMU)
            pass
    t0 = time.ticks_ms()
    said = False
    while True:
        held = lease()
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
    if getattr(_board.lan, "restarting", False):
        # Its new radio settings restart it: let ESP-IDF add its netif back before
        # natlink wraps it (should that come later still, the supervisor wraps it again).
        _board.lan.restarting = False
        time.sleep_ms(AP_SETTLE_MS)
    addressed_now = _wait_wan(cfg)
    wan_addr = ip_bytes(cfg["wan"]["addr_int"]) if addressed_now else bytes(4)
    # ESP-IDF adds an interface's lwIP netif a moment after active(True) returns
    # (its start event): natlink refuses one not added yet, so ask again shortly.
    t0 = time.ticks_ms()
    while True:
        try:
            links = natlink.start(lan=lan_nic, wan=wan_nic, wan_addr=wan_addr,
                                  lan_mtu=cfg["lan"]["mtu"], wan_mtu=cfg["wan"]["mtu"],
                                  **claims(cfg))
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
                                   if addressed_now else "(no address yet)"))
    return links


def reconfigure(cfg):
    """The board interface: the running configuration changed while forwarding
    (manage.api): natlink's claims follow its port forwards, NAT range and DHCP from the
    next packet. (The radios follow from the supervisor.)"""
    if natlink.running():
        natlink.claim(**claims(cfg))


def lan_only(sock):
    """The board interface (optional): the page's listening socket (firmware/web) serves
    the access point alone. lwIP takes a packet for any of its addresses on any netif,
    and natlink claims nothing addressed to lwIP: bound to the LAN address only, the page
    would answer a WAN host that routes the LAN's subnet to the board. Bound to the access
    point's netif (SO_BINDTODEVICE, lwIP's tcp_bind_netif), lwIP's listener ignores what
    comes in on the WAN netif, which then refuses it as for any port without a listener.
    ESP-IDF numbers the netif when it adds it: the first "ap<n>" that exists is it."""
    socket = SOCKETS or __import__("socket")
    for n in range(8):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, AP_NETIF % n)
            return
        except OSError:
            continue
    raise OSError("no access point netif to bind the page to")


def wait(timeout_ms):
    """The board interface: sleep (GIL released) until a natlink ring has packets."""
    natlink.wait(timeout_ms)


def start(fn):
    """The board interface: fn (a router's thread: manage/runner.py) in a thread of its
    own; the supervisor too, once. OSError when ESP-IDF's heap has no room for it yet."""
    import _thread
    try:
        _thread.stack_size(ROUTER_STACK)
        _thread.start_new_thread(fn, ())
        if SUPERVISOR and not _state["supervisor"]:
            import esp32watch
            _state["supervisor"] = True
            _thread.stack_size(SUPERVISOR_STACK)
            _thread.start_new_thread(esp32watch.run, ())
    finally:
        _thread.stack_size(0)


# ---- for the REPL (slow path)

def lan_hosts():
    """[(None, MAC)] of the access point's stations (the page's clients: their addresses
    come from the DHCP leases)."""
    nic = _board.lan.nic
    out = []
    for st in (nic.status("stations") if nic is not None else ()):
        mac = st[0] if isinstance(st, tuple) else st
        out.append((None, ":".join("%02x" % b for b in mac)))
    return out


def counters():
    """Per link: natlink's counters (claimed, passed, rx_drops, received, sent,
    tx_full, tx_errors, kick_fails) and the interface's state."""
    lan = natlink.counters(natlink.LAN)
    wan = natlink.counters(natlink.WAN)
    if _board.lan.nic is not None and hasattr(_board.lan, "stations"):
        lan["stations"] = _board.lan.stations()
    if _board.wan.nic is not None:
        wan["up"] = _board.wan.up()
        wan["lease"] = _state["lease"]
        if hasattr(_board.wan, "network"):
            wan["network"] = _board.wan.network()
    return {"lan": lan, "wan": wan}
