# natrouter on the ESP32: the WAN as a Wi-Fi station (ESP32_GENERIC), an interface of
# esp32net.py's kind. It joins the saved upstream networks in order (wifi.sta_ssid, then
# wifi.sta_networks), each given JOIN_MS to yield an address; when none does, it waits
# (BACKOFF_MS, doubling) and starts over from the first, so that a station searching
# for a lost network does not keep the one radio off the access point's channel.
# MicroPython's own quick reconnects are limited to RETRIES per attempt (its default,
# reconnecting forever at once, is what the backoff replaces). wifi.sta_mac sets the
# station's MAC address before it joins.
import time

import network

from esp32net import addressed, say

JOIN_MS = 15000             # one network's time to give an address
BACKOFF_MS = (5000, 300000)  # the wait between rounds: from the first, doubling, at most the second
RETRIES = 2                 # MicroPython's reconnects per attempt (WLAN.config(reconnects=))


def networks(cfg):
    """[(ssid, key), ...]: the upstream networks to try, in order."""
    w = cfg["wifi"]
    nets = [(w["sta_ssid"], w["sta_key"])] if w["sta_ssid"] else []
    for n in w.get("sta_networks", ()):
        nets.append((n["ssid"], n["key"]))
    return nets


def parse_mac(text):
    """'02:aa:bb:cc:dd:ee' -> 6 bytes; ValueError otherwise."""
    parts = text.split(":") if isinstance(text, str) else ()
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError("not a MAC address: %r" % (text,))
    return bytes(int(p, 16) for p in parts)


def usable_mac(b):
    """A station's own: unicast (ESP-IDF refuses a group bit), not all zero."""
    return not b[0] & 1 and any(b)


class Station:
    """The WAN as a Wi-Fi station (network.WLAN(IF_STA)). On the one radio it shares with
    the access point: the AP moves to the station's channel and they split the air
    time."""
    kind = "Wi-Fi station"

    def __init__(self):
        self.nic = None
        self._factory_mac = None  # the chip's own, for a wifi.sta_mac set back to ""
        self._mac = None        # the MAC in force
        self._nets = None       # networks(cfg) last applied
        self._at = 0            # the network asked for (index in _nets)
        self._since = None      # ticks of that attempt (None: not attempting)
        self._tried = 0         # attempts in this round
        self._resume = None     # ticks when the next round starts (None: not waiting)
        self._backoff = 0
        self._asked = False     # connect() was called

    def open(self, cfg):
        if self.nic is None:
            self.nic = network.WLAN(network.WLAN.IF_STA)
        if not self.nic.active():
            self.nic.active(True)
            # Modem sleep would hold every packet until the next beacon. Once per
            # activation: every config() call rewrites the station's configuration.
            self.nic.config(pm=self.nic.PM_NONE, reconnects=RETRIES)
        self._set_mac(cfg)
        self.apply(cfg)
        return self.nic

    def _wanted_mac(self, cfg):
        text = cfg["wifi"].get("sta_mac", "")
        return parse_mac(text) if text else self._factory_mac

    def needs_restart(self, cfg):
        """A new MAC address: the station restarts, and ESP-IDF adds its netif back."""
        return self._mac is not None and self._wanted_mac(cfg) != self._mac

    def _set_mac(self, cfg):
        if self._factory_mac is None:
            self._factory_mac = self._mac = bytes(self.nic.config("mac"))
        want = self._wanted_mac(cfg)
        if want == self._mac:
            return
        if self._asked:
            self.nic.disconnect()       # ESP-IDF sets a MAC only on a station not joined
        self.nic.config(mac=want)
        # lwIP's netif took the old MAC when the station started (WIFI_EVENT_STA_START:
        # esp_netif_set_mac from esp_wifi_get_mac); restarting the station hands it the
        # new one, or ARP would answer with the old.
        self.nic.active(False)
        self.nic.active(True)
        self.nic.config(pm=self.nic.PM_NONE, reconnects=RETRIES)
        self._mac = want
        say("the station's MAC address is %s" % ":".join("%02x" % b for b in want))
        self._nets = None               # join again

    def apply(self, cfg):
        nets = networks(cfg)
        if nets == self._nets:
            return
        self._nets = nets
        self._tried = 0
        self._resume = None
        self._backoff = 0
        if not nets:
            if self._asked:
                self.nic.disconnect()
                self._asked = False
            self._since = None
            say("wifi.sta_ssid is empty: no WAN until it is set (import nr; "
                "nr.change({\"wifi.sta_ssid\": \"...\", \"wifi.sta_key\": \"...\"}); nr.save())")
            return
        self._join(0, time.ticks_ms())

    def _join(self, i, now):
        ssid, key = self._nets[i]
        self._at = i
        self._since = now
        self._tried += 1
        if self._asked:
            self.nic.disconnect()
        say("joining Wi-Fi network %r" % ssid)
        try:
            self.nic.connect(ssid, key or None)
        except OSError as e:        # the radio is busy: this attempt counts as failed
            say("joining %r: %s" % (ssid, e))
        self._asked = True
        return "joining"

    def tick(self, now):
        """One look (the supervisor's, once a second): an attempt that has had JOIN_MS
        moves on to the next network, a round that got no address waits, then starts
        over from the first network. Returns what it did (None: nothing)."""
        if not self._nets:
            return None
        if self.up():
            self._since = self._resume = None
            self._tried = self._backoff = 0
            return None
        if self._resume is not None:
            if time.ticks_diff(now, self._resume) < 0:
                return None
            self._resume = None
            return self._join(0, now)
        if self._since is None:     # the network it had is gone: give it JOIN_MS too
            self._since = now
            self._tried = 1
            return None
        if time.ticks_diff(now, self._since) < JOIN_MS:
            return None
        if self._tried < len(self._nets):
            return self._join((self._at + 1) % len(self._nets), now)
        self._backoff = min(self._backoff * 2 or BACKOFF_MS[0], BACKOFF_MS[1])
        self._resume = time.ticks_add(now, self._backoff)
        self._since = None
        self._tried = 0
        say("no upstream network gave an address; trying again in %d s (the access point "
            "stays up)" % (self._backoff // 1000))
        return "waiting"

    def up(self):
        return addressed(self.nic)

    def network(self):
        return self._nets[self._at][0] if self._nets else ""

    def describe(self):
        return "Wi-Fi station to %r" % self.network()
