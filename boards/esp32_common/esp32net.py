# natrouter on the ESP32: the interfaces (esp32board.py's setup() takes one for the WAN
# and one for the LAN). Each has nic (the network object, once open), open(cfg) (up and
# configured; returns nic), apply(cfg) (settings changed from the REPL, while natlink
# runs), up() (WAN: it holds an address), describe(); needs_restart(cfg) (optional: a
# change that makes ESP-IDF remove and add back the interface's lwIP netif, which natlink
# must not be wrapping then: esp32watch.py restarts the router for it).
import natlink
import network
import machine

from manage import config

_ZERO = "0.0.0.0"


def say(*args):
    print("natrouter:", *args)


def addressed(nic):
    """Whether an interface holds an IPv4 address. What "up" means for a WAN: MicroPython
    v1.28's network.LAN.isconnected() turns False after any Wi-Fi client's DHCP lease on
    the access point (ports/esp32/network_lan.c handles every IP event as an Ethernet
    one: IP_EVENT_AP_STAIPASSIGNED has ETHERNET_EVENT_CONNECTED's number), while the
    address stays until the link goes down (esp_netif_down clears it) or the lease ends."""
    return nic.ipconfig("addr4")[0] != _ZERO


class Ethernet:
    """The WAN on an Ethernet PHY over RMII (network.LAN): a LAN8720 on the boards, the
    DP83848 QEMU emulates. power: the GPIO that powers the PHY (or enables its
    oscillator); ref_clk: the 50 MHz RMII clock's GPIO, into the ESP32 (GPIO0) or out of
    it (ref_clk_out, GPIO16/17). A cable pulled out and back in needs nothing here:
    ESP-IDF drops the address and asks for a lease again (esp32watch follows it)."""
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
        return addressed(self.nic)

    def describe(self):
        return "Ethernet (%s, PHY address %d)" % (self.phy, self.phy_addr)


class AccessPoint:
    """The LAN: the Wi-Fi access point (network.WLAN(IF_AP)) at the LAN address. The
    router serves its DHCP (esp32board.LAN_DHCP: natlink claims the requests); ESP-IDF's
    own server on it is stopped whenever MicroPython starts it (after every ipconfig).

    Its radio settings (SSID, key, channel, clients) go through esp_wifi_set_config,
    which on a running AP stops and starts it: ESP-IDF's default handlers then remove its
    lwIP netif (WIFI_EVENT_AP_STOP: esp_netif_action_stop, netif_remove) and add it back
    (WIFI_EVENT_AP_START: netif_add(..., tcpip_input)), asynchronously, from the event
    task. So a change of them is needs_restart(): natlink is stopped around it, and the
    supervisor wraps the netif again should the events come after natlink started."""

    def __init__(self):
        self.nic = None
        self._wifi = None       # what was last applied, so unchanged settings leave
        self._addr = None       # the clients (and their leases) alone
        self._idf_dhcps = True  # ESP-IDF's DHCP server may be running
        self.restarting = False  # apply() reconfigured the radio: the AP restarts

    def open(self, cfg):
        if self.nic is None:
            self.nic = network.WLAN(network.WLAN.IF_AP)
        if not self.nic.active():
            self.nic.active(True)
        self.apply(cfg)
        return self.nic

    @staticmethod
    def radio(cfg):
        w = cfg["wifi"]
        return (w["ap_ssid"], w["ap_key"], w["ap_channel"], w["ap_clients"])

    def needs_restart(self, cfg):
        return self._wifi is not None and self.radio(cfg) != self._wifi

    def apply(self, cfg):
        """Returns whether the radio was reconfigured (the AP restarts: its netif comes
        back a moment later)."""
        ap = self.nic
        w = cfg["wifi"]
        radio = self.radio(cfg)
        changed = radio != self._wifi
        if changed:
            ap.config(ssid=w["ap_ssid"], key=w["ap_key"],
                      security=ap.SEC_WPA2 if w["ap_key"] else ap.SEC_OPEN,
                      channel=w["ap_channel"], max_clients=w["ap_clients"])
            self._wifi = radio
            self.restarting = True
            if w["ap_key"] == config.defaults()["wifi"]["ap_key"]:
                say("the access point's key is the default one: set wifi.ap_key "
                    "(import nr; nr.set(\"wifi.ap_key\", \"...\"); nr.save())")
        lan = cfg["lan"]
        addr = (lan["addr"], lan["mask"])
        if addr != self._addr:
            ap.ipconfig(addr4=addr, gw4=lan["addr"])   # MicroPython restarts ESP-IDF's server
            self._addr = addr
            self._idf_dhcps = True
        if self._idf_dhcps:
            z = bytes(4)
            natlink.dhcps(ap, enabled=False, dns=z, first=z, last=z, lease_s=3600)
            self._idf_dhcps = False
        return changed

    def stations(self):
        return len(self.nic.status("stations"))

    def describe(self):
        w = self.nic.config("ssid"), self.nic.config("channel")
        return "Wi-Fi access point %r on channel %d" % w
