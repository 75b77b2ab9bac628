# A fake of MicroPython's ESP32 `network` module for the board tests
# (host_tests/test_esp32_boards.py): the calls boards/esp32_common/esp32board.py makes,
# with the ESP32 port's signatures and refusals (ports/esp32/network_lan.c,
# network_wlan.c, network_common.c at v1.28), every call recorded in CALLS. The test
# plays the network: it sets what a DHCP server would lease (LEASES), which networks
# a station can join (VISIBLE) and reads CALLS.
#
# Under the unix-port build with the real natlink binding (host_tests/natlink_unix/),
# each interface also carries an _lwipsim.Netif as `_sim`, kept at the addresses the
# fake holds, so natlink.start() finds a real lwIP netif behind it as on the ESP32.
#
# Also what the real port does that the board must survive: MicroPython v1.28's
# network.LAN.isconnected() turning False after a Wi-Fi client's DHCP lease on the AP
# (ap_client_leased()), ESP-IDF removing an interface's netif and adding it back
# (netif_epoch counts the additions) when an access point's radio settings change
# (asynchronously: at the next run_events()) or a station restarts, an Ethernet cable
# pulled out (link()), a station's network gone (station_lost()).
import machine

CALLS = []          # (interface, method, args, kwargs) in call order
VISIBLE = {}        # ssid -> key of the networks a station finds
LEASES = {}         # "eth" (network.LAN) / "sta" -> (addr, mask, gateway) its DHCP server gives
PHY_LAN8720 = 1     # ports/esp32/modnetwork.h: PHY_LAN8710, PHY_LAN8720, ...
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
_ZERO = "0.0.0.0"
_state = {"dns": _ZERO}
_EVENTS = []        # ESP-IDF's event task: what it has yet to do (run_events)

try:
    import _lwipsim
    _lwipsim.boot()
except ImportError:
    _lwipsim = None
_sims = {}


def _bytes(dotted):
    return bytes(int(x) for x in dotted.split("."))


def _record(who, method, args=(), kw=None):
    CALLS.append((who, method, tuple(args), dict(kw or {})))


def ipconfig(*args, **kw):
    """network.ipconfig(dns=...) sets the board's own resolver; ("dns") reads it."""
    if kw:
        if args:
            raise TypeError("can't specify pos and kw args")
        for k, v in kw.items():
            if k != "dns":
                raise ValueError("unexpected key")
            _bytes(v)
            _state["dns"] = v
        _record("network", "ipconfig", (), kw)
        return None
    if args == ("dns",):
        return _state["dns"]
    raise ValueError("unexpected key")


class _Nic:
    _dhcp_client = True   # STA and Ethernet run a DHCP client, the AP a server

    def __init__(self, who, index):
        self.who = who
        self.netif_epoch = 0  # netif_add()s so far: each gives it lwIP's own input again
        self._active = False
        self._dhcp4 = self._dhcp_client
        self._addr = (_ZERO, _ZERO)
        self._gw = _ZERO
        self._sim = None
        if _lwipsim is not None:
            if index not in _sims:
                _sims[index] = _lwipsim.Netif(index, bytes((2, 0, 0, 0, 0, index + 1)),
                                              bytes(4), bytes(4), bytes(4))
            self._sim = _sims[index]

    def active(self, *args):
        if args:
            _record(self.who, "active", args)
            if args[0] and not self._active:
                self.netif_epoch += 1       # started: ESP-IDF adds its netif
                self._started()
            self._active = bool(args[0])
            self.sync()
        return self._active

    def _started(self):
        pass

    def _linked(self):
        return self.isconnected()

    def _current(self):
        if self._dhcp_client and self._dhcp4:
            lease = LEASES.get(self.who)
            if lease is not None and self._linked():
                return (lease[0], lease[1]), lease[2]
            return (_ZERO, _ZERO), _ZERO
        return self._addr, self._gw

    def ipconfig(self, *args, **kw):
        if not kw:
            if len(args) != 1:
                raise TypeError("must query one param")
            key = args[0]
            if key == "addr4":
                return self._current()[0]
            if key == "gw4":
                return self._current()[1]
            if key == "dhcp4" and self._dhcp_client:
                return self._dhcp4
            raise ValueError("unexpected key")
        if args:
            raise TypeError("can't specify pos and kw args")
        _record(self.who, "ipconfig", (), kw)
        touched = False
        for k, v in kw.items():
            if k == "dhcp4" and self._dhcp_client:
                self._dhcp4 = bool(v)
            elif k == "addr4":
                if isinstance(v, str):
                    raise ValueError("esp32board passes (addr, mask)")
                addr, mask = v
                _bytes(addr)
                _bytes(mask)
                self._addr = (addr, mask)
                touched = True
            elif k == "gw4":
                _bytes(v)
                self._gw = v
                touched = True
            else:
                raise ValueError("unexpected key")
        if touched and self._dhcp_client:
            self._dhcp4 = False     # a static address stops the DHCP client
        self.sync()
        return None

    def sync(self):
        """Bring the lwIP netif (under the real binding) to the addresses in force."""
        if self._sim is not None:
            (addr, mask), gw = self._current()
            self._sim.set_addr(_bytes(addr), _bytes(mask), _bytes(gw))

    def isconnected(self):
        return self._active


class LAN(_Nic):
    """network.LAN: one Ethernet interface; the first call's keywords build it, later
    calls return it (network_lan.c's get_lan)."""
    _instance = None
    built_with = None

    def __new__(cls, *args, **kw):
        if cls._instance is None:
            if args and args[0] not in (None, 0):
                raise ValueError("invalid LAN interface identifier")
            for req in ("phy_addr", "phy_type"):
                if req not in kw:
                    raise TypeError("'%s' argument required" % req)
            for k, v in kw.items():
                if k in ("mdc", "mdio", "power", "reset", "ref_clk", "cs", "int"):
                    if v is not None and not isinstance(v, machine.Pin):
                        raise ValueError("expecting a pin")
                elif k not in ("phy_addr", "phy_type", "ref_clk_mode", "spi", "id"):
                    raise TypeError("unexpected keyword argument '%s'" % k)
            if not 0 <= kw["phy_addr"] <= 0x1F:
                raise ValueError("invalid phy address")
            if kw["phy_type"] != PHY_LAN8720:
                raise ValueError("the fake knows the LAN8720 only")
            if kw.get("mdc") is None or kw.get("mdio") is None:
                raise ValueError("mdc and mdio must be specified")
            self = object.__new__(cls)
            _Nic.__init__(self, "eth", 1)
            self.link = True      # the cable is in
            self.eth_status = "started"
            self.sync()
            LAN._instance = self
            LAN.built_with = dict(kw)
            _record("eth", "LAN", args, kw)
        return cls._instance

    def __init__(self, *args, **kw):
        pass

    def _linked(self):
        return self._active and self.link

    def isconnected(self):
        # network_lan.c: active and eth_status == ETH_GOT_IP, which every IP event of
        # ESP-IDF's moves (eth_event_handler checks no event base, v1.28)
        return self._active and self.eth_status == "got_ip"

    def status(self):
        return {"got_ip": 5, "connected": 3}.get(self.eth_status, 0)

    def sync(self):
        _Nic.sync(self)
        if self._linked() and self._current()[0][0] != _ZERO:
            self.eth_status = "got_ip"      # IP_EVENT_ETH_GOT_IP

    def config(self, *args, **kw):
        if args == ("mac",):
            return b"\x02\x00\x00\x00\x00\x02"
        raise ValueError("unknown config param")


class WLAN(_Nic):
    IF_STA = 0
    IF_AP = 1
    SEC_OPEN = 0
    SEC_WPA2 = 3
    SEC_WPA_WPA2 = 4
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2
    _instances = {}

    def __new__(cls, interface=0):
        if interface not in (0, 1):
            raise ValueError("invalid WLAN interface identifier")
        if interface not in cls._instances:
            self = object.__new__(cls)
            self.interface = interface
            self._dhcp_client = interface == 0
            _Nic.__init__(self, "sta" if interface == 0 else "ap", 2 if interface == 0 else 0)
            if interface == 1:       # MicroPython's AP default: 192.168.4.1/24
                self._addr = ("192.168.4.1", "255.255.255.0")
                self._gw = "192.168.4.1"
            self._conf = {"ssid": "ESP_000000" if interface else "", "key": "",
                          "security": 0, "channel": 1, "max_clients": 4, "pm": 1,
                          "hidden": False, "reconnects": -1,
                          "mac": bytes((0x24, 0x0a, 0xc4, 0, 0, 0x10 + interface))}
            self.netif_mac = None   # the MAC lwIP's netif took when the interface started
            self._joined = None
            self.stations = []
            self.sync()
            cls._instances[interface] = self
        return cls._instances[interface]

    def __init__(self, interface=0):
        pass

    def _require(self, interface):
        if self.interface != interface:
            raise OSError("STA required" if interface == 0 else "AP required")

    def config(self, *args, **kw):
        if kw:
            if args:
                raise TypeError("either pos or kw args are allowed")
            _record(self.who, "config", (), kw)
            conf = dict(self._conf)
            for k, v in kw.items():
                if k == "essid":
                    k = "ssid"
                if k == "password":
                    k = "key"
                if k not in conf or (k in ("ssid", "key", "security", "max_clients", "hidden")
                                     and self.interface == 0 and k != "ssid"):
                    raise ValueError("unknown config param")
                if k == "reconnects":
                    self._require(0)
                if k == "mac":
                    # esp_wifi_set_mac: the interface's mode on, the station not joined
                    if len(v) != 6 or v[0] & 1:
                        raise OSError("Wifi Invalid Mac")
                    if not self._active or self._joined is not None:
                        raise OSError("Wifi Invalid Mode")
                    v = bytes(v)
                conf[k] = v
            if self.interface == 1:
                if not self._active:
                    raise OSError("Wifi Not Started")
                if not 1 <= len(conf["ssid"].encode()) <= 32:
                    raise OSError("Wifi SSID Invalid")
                if conf["security"] != self.SEC_OPEN and not 8 <= len(conf["key"]) <= 64:
                    raise OSError("Wifi Invalid Password")
                if not 1 <= conf["channel"] <= 13:
                    raise OSError("Wifi Invalid Argument")
            radio = [k for k in ("ssid", "key", "security", "channel", "max_clients", "hidden")
                     if conf[k] != self._conf[k]]
            self._conf = conf
            if self.interface == 1 and radio:
                # esp_wifi_set_config on a running AP stops and starts it: ESP-IDF's
                # handlers remove its netif and add it back, from the event task
                _EVENTS.append(self._readd)
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        key = args[0]
        if key == "channel" and self.interface == 1 and WLAN(0).isconnected():
            return WLAN(0)._conf["channel"]    # one radio: the AP follows the station
        if key not in self._conf:
            raise ValueError("unknown config param")
        return self._conf[key]

    def _started(self):
        self.netif_mac = self._conf["mac"]  # WIFI_EVENT_*_START: esp_netif_set_mac

    def _readd(self):
        if self._active:
            self.netif_epoch += 1
            self._started()

    def active(self, *args):
        if args and not args[0] and self.interface == 0:
            self._joined = None             # a stopped station leaves its network
        return _Nic.active(self, *args)

    def connect(self, ssid=None, key=None, bssid=None):
        self._require(0)
        _record("sta", "connect", (ssid, key))
        if not self._active:
            raise OSError("Wifi Not Started")
        self._joined = (ssid, key) if VISIBLE.get(ssid) == (key or "") else None
        if self._joined:
            self._conf["channel"] = 11      # where the upstream network is
        self.sync()

    def disconnect(self):
        self._require(0)
        _record("sta", "disconnect")
        self._joined = None
        self.sync()

    def isconnected(self):
        if self.interface == 1:
            return self._active and bool(self.stations)
        return self._active and self._joined is not None

    def status(self, *args):
        if args == ("stations",):
            self._require(1)
            return list(self.stations)
        if args == ("rssi",):
            self._require(0)
            return -55
        if args:
            raise ValueError("unknown status param")
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE


def lease(who, held):
    """The DHCP server behind interface `who` ("eth": network.LAN, "sta") leases `held`
    ((addr, mask, gateway), or None: the lease is gone)."""
    if held is None:
        LEASES.pop(who, None)
    else:
        LEASES[who] = tuple(held)
    for nic in [LAN._instance] + list(WLAN._instances.values()):
        if nic is not None and nic.who == who:
            nic.sync()


def ap_client_leased():
    """ESP-IDF's AP DHCP server leased an address to a Wi-Fi client: IP_EVENT_AP_
    STAIPASSIGNED, which v1.28's network_lan.c takes for ETHERNET_EVENT_CONNECTED."""
    if LAN._instance is not None:
        LAN._instance.eth_status = "connected"


def link(up):
    """The Ethernet cable pulled out (up False) or put back: ESP-IDF's esp_netif_down
    clears the address, and the DHCP client asks again once the link is back."""
    nic = LAN._instance
    nic.link = up
    nic.eth_status = "started" if up else "disconnected"
    nic.sync()


def station_lost():
    """The upstream network is gone (out of range): the station drops, and finds it
    again only once it is VISIBLE and joined anew."""
    sta = WLAN._instances.get(0)
    if sta is not None:
        sta._joined = None
        sta.sync()


def run_events():
    """What ESP-IDF's event task has yet to do (an access point's restart)."""
    while _EVENTS:
        _EVENTS.pop(0)()


def reset():
    """Forget every interface and call (a new boot)."""
    CALLS[:] = []
    _EVENTS[:] = []
    VISIBLE.clear()
    LEASES.clear()
    _state["dns"] = _ZERO
    LAN._instance = None
    LAN.built_with = None
    WLAN._instances.clear()
