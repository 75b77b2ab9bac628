# The ESP32 boards left alone: what they must recover from or follow without a person,
# run on the MicroPython unix port against the fakes (host_tests/upy/fakes/), one case
# per process (host_tests/test_esp32_recovery.py reads the RESULT line). The shared
# helpers (boot, supervise, the fake wire) are esp32_cases.py's.
import time

import machine
import natlink
import network
import pktlib
from nat import ip_str
from esp32_cases import FakeWire, LAN_HOST, LEASE, REMOTE, boot, last_wan_addr, result, summary
from esp32_cases import supervise

CLIENT_MAC = b"\x02\xcc\x00\x00\x00\x07"
STATIC_MAC = b"\x02\xcc\x00\x00\x00\x09"
NEW_LEASE = ("100.64.0.9", "255.192.0.0", "100.64.0.1")


def runner():
    from manage.runner import runner
    return runner


# ---- a DHCP client on the access point (RFC 2131), through natlink's rings

def dhcp_packet(mtype, mac, xid, ciaddr="0.0.0.0", requested=None):
    """A client's DHCP message (option 53 = mtype) in its IPv4/UDP packet: broadcast
    from 0.0.0.0 before it has an address, unicast to the server from ciaddr after."""
    m = bytearray(240)
    m[0], m[1], m[2] = 1, 1, 6
    m[4:8] = xid.to_bytes(4, "big")
    m[12:16] = pktlib.addr(ciaddr)
    m[28:34] = mac
    m[236:240] = b"\x63\x82\x53\x63"
    m += bytes((53, 1, mtype, 61, 7, 1)) + mac
    if requested is not None:
        m += bytes((50, 4)) + pktlib.addr(requested)
    m += b"\xff"
    if ciaddr == "0.0.0.0":
        return pktlib.udp("0.0.0.0", "255.255.255.255", 68, 67, payload=bytes(m))
    return pktlib.udp(ciaddr, "192.168.4.1", 68, 67, payload=bytes(m))


def dhcp_reply(pkt):
    """(type, yiaddr, {option: bytes}) of the server's reply packet, or None."""
    if pkt is None:
        return None
    m = pkt[28:]
    opts, i = {}, 240
    while i < len(m) and m[i] != 255:
        if m[i] == 0:
            i += 1
            continue
        opts[m[i]] = bytes(m[i + 2:i + 2 + m[i + 1]])
        i += 2 + m[i + 1]
    return opts[53][0], ip_str(pktlib.field(pkt, "dst")), ".".join(str(b) for b in m[16:20]), opts


def lease_for(w, mac, xid):
    """DISCOVER, OFFER, REQUEST, ACK: the address the server bound, and its ACK."""
    w.put(natlink.LAN, dhcp_packet(1, mac, xid))
    offer = dhcp_reply(w.get(natlink.LAN))
    w.put(natlink.LAN, dhcp_packet(3, mac, xid + 1, requested=offer[2]))
    ack = dhcp_reply(w.get(natlink.LAN))
    return offer, ack


def quad(b):
    return [".".join(str(x) for x in b[i:i + 4]) for i in range(0, len(b), 4)]


# ---- the cases

DHCP_CFG = {"dhcp": {"first": "192.168.4.2", "last": "192.168.4.250", "lease_s": 600,
                     "static": [{"mac": "02:cc:00:00:00:09", "addr": "192.168.4.42"}]},
            "dns": ["192.0.2.53", "9.9.9.9"],
            "wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}}


def dhcp_served():
    """The router's DHCP server on the access point: a pool ESP-IDF's server refused
    (249 addresses), a static lease, two DNS servers; leases kept across a reboot."""
    boot(DHCP_CFG, leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    w = FakeWire()
    offer, ack = lease_for(w, CLIENT_MAC, 100)
    static = lease_for(w, STATIC_MAC, 200)[1]
    out = {"offer": offer[:3], "ack": ack[:3], "static": static[:3],
           "options": [quad(ack[3][1]), quad(ack[3][3]), quad(ack[3][6]),
                       int.from_bytes(ack[3][51], "big")],
           "idf_dhcps": [e[2]["enabled"] for e in natlink.fake_log if e[0] == "dhcps"]}
    runner().stop()         # as a reboot would find it: the leases written
    result(**out)


def dhcp_after_reboot():
    """The next boot in the same flash: the client renews the address it had."""
    boot(None, leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    from manage import api
    bound = [x["addr"] for x in api.leases() if x["state"] == "bound"]
    w = FakeWire()
    w.put(natlink.LAN, dhcp_packet(3, CLIENT_MAC, 300, ciaddr=bound[0] if bound else "0.0.0.0"))
    result(bound=bound, renewed=dhcp_reply(w.get(natlink.LAN))[:3])
    runner().router.stop()


def ap_lease_keeps_the_wan():
    """MicroPython v1.28's LAN.isconnected() goes False after a Wi-Fi client's lease on
    the AP: the WAN's address decides, so a restart keeps the lease and the supervisor
    goes on."""
    r = boot(None, leases={"eth": LEASE}, wait_ms=300)
    network.ap_client_leased()
    out = {"isconnected": network.LAN().isconnected(), "first": supervise()}
    from manage import api
    api.set("table.tcp", 100)
    t0 = time.ticks_ms()
    api.apply()             # a restart: open_links asks the WAN for its lease again
    out["waited_ms"] = time.ticks_diff(time.ticks_ms(), t0)
    r = runner().router
    out["wan"] = [r.cfg["wan"]["addr"], last_wan_addr()]
    network.lease("eth", NEW_LEASE)
    out["moved"] = supervise()
    out["wan_after"] = runner().router.cfg["wan"]["addr"]
    runner().router.stop()
    result(**out)


def ap_settings_live():
    """ESP-IDF stops and starts an access point whose radio settings change, removing
    its netif and adding it back (netif_add: lwIP's input again), from its event task."""
    from manage import api
    boot({"wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}},
         leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    w = FakeWire()
    out = {}
    pkt = pktlib.tcp(LAN_HOST, REMOTE, 40000, 80, flags=0x02)
    network.run_events()            # the boot's own AP configuration, done late
    out["boot"] = [natlink.fake_inject(natlink.LAN, pkt), supervise()]
    w.put(natlink.LAN, pkt)
    out["boot_out"] = summary(w.get(natlink.WAN))
    api.set("wifi.ap_key", "a new key 42")
    mark = len(natlink.fake_log)
    out["change"] = supervise()
    out["natlink"] = [e[0] for e in natlink.fake_log[mark:]]
    network.run_events()            # the AP's restart, after natlink started again
    out["late"] = [natlink.fake_inject(natlink.LAN, pkt), supervise(), supervise()]
    w.put(natlink.LAN, pktlib.tcp(LAN_HOST, REMOTE, 40001, 80, flags=0x02))
    out["late_out"] = summary(w.get(natlink.WAN))
    runner().router.stop()
    result(**out)


def watchdog():
    """The watchdog is fed on the router's own thread: a loop that stops turning stops
    feeding it."""
    r = boot({"recovery": {"watchdog_s": 10}, "wifi": {"sta_ssid": "upstream",
                                                       "sta_key": "secret99"}},
             leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    out = {"first": supervise()}
    out["started"] = [e[:2] for e in machine.WDT_LOG if e[0] == "start"]
    feeds = len(machine.WDT_LOG)
    gate = {"open": False}

    def stuck():                    # a forwarding loop caught in something
        t0 = time.ticks_ms()
        while not gate["open"] and time.ticks_diff(time.ticks_ms(), t0) < 30000:
            time.sleep_ms(5)
        return 0

    r.poll = stuck
    time.sleep_ms(300)              # the loop is in it now
    t0 = time.ticks_ms()
    out["stuck"] = supervise()
    out["stuck_ms"] = time.ticks_diff(time.ticks_ms(), t0)
    out["fed_while_stuck"] = len(machine.WDT_LOG) - feeds
    del r.poll
    gate["open"] = True
    time.sleep_ms(300)
    out["back"] = supervise()
    out["fed_after"] = len(machine.WDT_LOG) - feeds
    runner().stop()
    feeds = len(machine.WDT_LOG)
    out["stopped"] = [supervise(), len(machine.WDT_LOG) - feeds]   # stopped on purpose
    result(**out)


def uplink_ethernet():
    """The Ethernet cable out and back in, then a new lease: the access point, its
    client and the client's DHCP lease untouched; only a new address restarts."""
    r = boot(None, leases={"eth": LEASE})
    w = FakeWire()
    ack = lease_for(w, CLIENT_MAC, 100)[1]
    mark = len(network.CALLS)
    network.link(False)
    out = {"down": [supervise(), runner().router is r, r.is_running()]}
    network.link(True)
    out["up"] = [supervise(), runner().router is r]
    network.lease("eth", NEW_LEASE)
    out["moved"] = [supervise(), runner().router is not r, runner().router.cfg["wan"]["addr"]]
    out["ap_calls"] = [c for c in network.CALLS[mark:] if c[0] == "ap"]
    w.put(natlink.LAN, dhcp_packet(3, CLIENT_MAC, 400, ciaddr=ack[2]))
    out["renewed"] = [ack[2], dhcp_reply(w.get(natlink.LAN))[:3]]
    w.put(natlink.LAN, pktlib.tcp(ack[2], REMOTE, 40000, 80, flags=0x02))
    out["through"] = summary(w.get(natlink.WAN))
    runner().router.stop()
    result(**out)


STA_CFG = {"wifi": {"sta_ssid": "home", "sta_key": "homekey12",
                    "sta_networks": [{"ssid": "backup", "key": "backupkey"}],
                    "sta_mac": "02:11:22:33:44:55"}}


def station_rounds():
    """The saved networks in order, JOIN_MS each, then backoff; the station's MAC set
    before it joins; the access point and the router left alone while it searches."""
    import esp32station
    join = esp32station.JOIN_MS
    boot(STA_CFG, leases={"sta": LEASE}, visible={"backup": "backupkey"}, wait_ms=50)
    sta = network.WLAN(network.WLAN.IF_STA)
    out = {"mac": [sta.config("mac"), sta.netif_mac],
           "boot": [c[1:3] for c in network.CALLS if c[0] == "sta"]}
    t = time.ticks_ms()
    out["joined"] = [supervise(time.ticks_add(t, join)), runner().router.cfg["wan"]["addr"],
                     supervise(time.ticks_add(t, join + 500))]
    r = runner().router
    mark = len(network.CALLS)
    network.VISIBLE.clear()         # out of range
    network.station_lost()
    lost = time.ticks_add(t, join + 1000)
    out["steps"] = [supervise(time.ticks_add(lost, dt)) for dt in (
        0, join, 2 * join, 2 * join + 1000, 2 * join + 5000, 3 * join + 5000, 4 * join + 5000,
        4 * join + 14000)]
    network.VISIBLE["home"] = "homekey12"
    out["found"] = [supervise(time.ticks_add(lost, dt)) for dt in (4 * join + 15000,
                                                                   4 * join + 16000)]
    out["searched"] = [c[2][0] for c in network.CALLS[mark:] if c[1] == "connect"]
    out["same_router"] = runner().router is r
    out["ap_calls"] = [c for c in network.CALLS[mark:] if c[0] == "ap"]
    out["backoff"] = [ln for ln in _said if "trying again" in ln]
    from manage import api
    api.set("wifi.sta_mac", "02:11:22:33:44:66")
    mark = len(natlink.fake_log)
    out["mac_change"] = [supervise(), [e[0] for e in natlink.fake_log[mark:]], sta.netif_mac]
    runner().router.stop()
    result(**out)


_said = []


def _capture_say():
    import esp32net
    say = esp32net.say

    def keep(*args):
        _said.append(" ".join(str(a) for a in args))
        say(*args)
    for name in ("esp32net", "esp32station", "esp32board", "esp32watch", "esp32reset"):
        __import__(name).say = keep


def wan_reboot():
    """recovery.wan_reboot_min: a reboot after that long without a WAN address."""
    boot({"recovery": {"wan_reboot_min": 2}}, wait_ms=50)
    t = time.ticks_ms()
    out = {"steps": [supervise(t), supervise(time.ticks_add(t, 119000))]}
    try:
        supervise(time.ticks_add(t, 120000))
        out["rebooted"] = False
    except SystemExit as e:
        out["rebooted"] = str(e)
    result(**out)


def _factory(press_after_ms, held_ms, hold_ms=300):
    """Boot with the factory-reset button (GPIO0 or GPIO34, whichever the board has)
    pressed press_after_ms after the boot starts, for held_ms (None: held on)."""
    import json
    import os
    import esp32reset
    esp32reset.HOLD_MS = hold_ms
    with open("natrouter.json", "w") as f:
        f.write(json.dumps({"wifi": {"ap_key": "my own key 1"}, "mtu": 1400}))
    t0 = time.ticks_ms()

    def level():
        dt = time.ticks_diff(time.ticks_ms(), t0)
        return 0 if dt >= press_after_ms and (held_ms is None
                                              or dt < press_after_ms + held_ms) else 1
    for gpio in (0, 34):
        machine.INPUTS[gpio] = level
    r = boot(None, leases={"eth": LEASE, "sta": LEASE}, window_ms=None)
    kept = "natrouter.json.before-reset"
    result(key=r.cfg["wifi"]["ap_key"], mtu=r.cfg["mtu"],
           kept=json.loads(open(kept).read()) if kept in os.listdir() else None,
           read=sorted({p for p, mode in machine.PINS if mode == machine.Pin.IN}))
    r.stop()


def factory_held():
    _factory(0, None)           # held from power-up


def factory_released():
    _factory(0, 100)            # let go before HOLD_MS


def factory_late():
    _factory(150, None)         # pressed a moment after the firmware started


def factory_repl():
    """nr.reset() at the REPL: the defaults in force, the old file kept beside."""
    import json
    with open("natrouter.json", "w") as f:
        f.write(json.dumps({"wifi": {"ap_key": "my own key 1"}, "mtu": 1400}))
    boot(None, leases={"eth": LEASE, "sta": LEASE})
    import nr
    nr.reset()
    r = runner().router
    result(key=r.cfg["wifi"]["ap_key"], mtu=r.cfg["mtu"],
           file=json.loads(open("natrouter.json").read())["mtu"],
           kept=json.loads(open("natrouter.json.before-reset").read()))
    r.stop()


def rules():
    """This board's own keys, judged at boot."""
    import json
    cfg = {"recovery": {"watchdog_s": 5, "wan_reboot_min": "soon", "spare": 1},
           "wifi": {"sta_mac": "01:00:5e:00:00:01",
                    "sta_networks": [{"ssid": "ok", "key": "okokokok"}, {"ssid": ""},
                                     {"ssid": "k", "key": "short"}, "x"]}}
    with open("natrouter.json", "w") as f:
        f.write(json.dumps(cfg))
    import board  # noqa: F401  (its rules)
    from manage import config
    got, problems = config.load("natrouter.json")
    result(problems=problems, recovery=got["recovery"], wifi=config.to_file(got)["wifi"])


_capture_say()


def restart_retried():
    """A restart the supervisor asked for fails (natlink refuses the interfaces): it asks
    again at the next look, until the router runs."""
    import esp32board
    esp32board.NETIF_WAIT_MS = 100
    boot({"wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}},
         leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    natlink.fake_not_started[0] = 10 ** 6          # natlink refuses from now on
    who = "eth" if network.LAN._instance is not None else "sta"
    network.lease(who, NEW_LEASE)
    out = {"moved": [supervise(), runner().router is None]}   # the old one stopped
    out["again"] = supervise()
    natlink.fake_not_started[0] = 0                 # and takes them again
    out["retried"] = [supervise(), runner().router.is_running(),
                      runner().router.cfg["wan"]["addr"], supervise()]
    runner().router.stop()
    result(**out)
