# The ESP32 boards' link modules and boot path, run on the MicroPython unix port
# against the fakes in host_tests/upy/fakes/ (network, machine, natlink), or against
# the real natlink binding built into the unix port with in-memory lwIP netifs
# (host_tests/natlink_unix/; the fake network then carries an _lwipsim.Netif per
# interface). host_tests/test_esp32_boards.py runs one case per process, in a fresh
# working directory (the board's flash), and reads the line the case prints:
#   RESULT <json>
import json
import sys
import time

import machine
import natlink
import network
import pktlib
from nat import ip_str

REAL = not hasattr(natlink, "fake_inject")   # the C binding over lwIP
LAN_HOST = "192.168.4.2"
REMOTE = "203.0.113.5"
LEASE = ("203.0.113.7", "255.255.255.0", "203.0.113.1")
HOST_MAC = b"\x02\xaa\x00\x00\x00\x02"       # the LAN host, the WAN's gateway/remote
GW_MAC = b"\x02\xbb\x00\x00\x00\x01"


def jsonable(v):
    if isinstance(v, (bytes, bytearray)):
        return ".".join(str(b) for b in v) if len(v) == 4 else v.hex()
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, machine.Pin):
        return "Pin(%d)" % v.id
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return getattr(v, "who", repr(v))       # a network interface: its name


def result(**kw):
    print("RESULT " + json.dumps(jsonable(kw)))


def boot(cfg=None, leases=None, visible=None, wait_ms=300, window_ms=0):
    """A fresh board: fakes reset, natrouter.json written (when cfg), then the firmware's
    own boot path (import main). Returns the running router. window_ms: how long the
    factory-reset button may still be pressed after boot (None: as the board says)."""
    network.reset()
    for who, held in (leases or {}).items():
        network.lease(who, held)
    network.VISIBLE.update(visible or {})
    if not REAL:
        natlink.fake_reset()
    if cfg is not None:
        with open("natrouter.json", "w") as f:
            f.write(json.dumps(cfg))
    import esp32board
    esp32board.SUPERVISOR = False          # the cases call supervise() themselves
    esp32board.ROUTER_STACK = 64 * 1024    # the unix port is 64-bit: bigger frames
    esp32board.WAN_WAIT_MS = wait_ms
    esp32board.AP_SETTLE_MS = 0            # the fake's AP restarts at run_events()
    import board                           # noqa: F401  (setup() before the config loads)
    if esp32board._board.button is not None and window_ms is not None:
        esp32board._board.button.window_ms = window_ms   # no waiting at every boot
    import main                            # noqa: F401  runner.start(board)
    from manage.runner import runner
    return runner.router


def supervise(now=None):
    import esp32watch
    return esp32watch.supervise(now)


def starts():
    """natlink.start()'s arguments so far (the fake's log; the real binding keeps none)."""
    return [] if REAL else [e[1] for e in natlink.fake_log if e[0] == "start"]


def last_wan_addr():
    return starts()[-1]["wan_addr"] if starts() else None


# ---- the wire: packets into natlink, packets out of it

class FakeWire:
    """natlink's rings (the fake): packets as natlink would hand them over."""

    def put(self, which, pkt):
        assert natlink.fake_inject(which, pkt)

    def get(self, which, ms=1000):
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < ms:
            p = natlink.fake_take(which)
            if p is not None:
                return p
            time.sleep_ms(2)
        return None


class LwipWire:
    """Ethernet frames into the lwIP netifs behind the interfaces (natlink's wrapper
    sees them as a driver hands them over), frames out of lwIP's output, ARP answered
    for whoever lwIP asks about."""

    def nic(self, which):
        if which == natlink.LAN:
            return network.WLAN(network.WLAN.IF_AP)._sim
        import esp32board
        return esp32board._board.wan.nic._sim

    def mac(self, which):
        return bytes((2, 0, 0, 0, 0, 1)) if which == natlink.LAN else bytes(
            (2, 0, 0, 0, 0, 2 if network.LAN._instance is not None else 3))

    def put(self, which, pkt):
        frame = self.mac(which) + (HOST_MAC if which == natlink.LAN else GW_MAC) + b"\x08\x00"
        assert self.nic(which).inject(frame + bytes(pkt)) == 0

    def get(self, which, ms=1000):
        nic = self.nic(which)
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < ms:
            f = nic.take()
            if f is None:
                time.sleep_ms(2)
                continue
            if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01":   # ARP request: answer
                me = HOST_MAC if which == natlink.LAN else GW_MAC
                reply = (f[6:12] + me + b"\x08\x06" + f[14:20] + b"\x00\x02" + me + f[38:42]
                         + f[22:28] + f[28:32])
                nic.inject(reply)
                continue
            if f[12:14] == b"\x08\x00":
                return f[14:]
        return None


def wire():
    return LwipWire() if REAL else FakeWire()


def summary(pkt):
    """(src, sport, dst, dport, proto, checksums right) of a packet, or None."""
    if pkt is None:
        return None
    ident = pkt[9] == pktlib.ICMP
    return [ip_str(pktlib.field(pkt, "src")),
            pktlib.field(pkt, "id") if ident else pktlib.field(pkt, "sport"),
            ip_str(pktlib.field(pkt, "dst")),
            None if ident else pktlib.field(pkt, "dport"), pkt[9], pktlib.valid(pkt)]


# ---- the cases

def boot_calls(cfg=None):
    """What the boot path asked of the hardware and of natlink."""
    r = boot(cfg, leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    from manage import config
    d = r.cfg["dhcp"]
    result(network=network.CALLS, pins=machine.PINS, natlink=natlink.fake_log,
           built_with=network.LAN.built_with, running=r.is_running(),
           cfg=config.to_file(r.cfg), links=[r.lan.name, r.lan.mtu, r.wan.name, r.wan.mtu],
           dhcp_server=[d["first"], d["last"]] if r.dhcp is not None else None)
    r.stop()


def forward():
    """Traffic through the running router: out and back, a port forward, a ping."""
    cfg = {"forwards": [{"proto": "tcp", "port": 8080, "to": LAN_HOST, "to_port": 80}],
           "wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}}
    r = boot(cfg, leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    w = wire()
    out = {}
    w.put(natlink.LAN, pktlib.tcp(LAN_HOST, REMOTE, 40000, 80, flags=0x02))
    sent = w.get(natlink.WAN)
    out["out"] = summary(sent)
    if sent is not None:
        port = pktlib.field(sent, "sport")
        w.put(natlink.WAN, pktlib.tcp(REMOTE, LEASE[0], 80, port, flags=0x12))
        out["back"] = summary(w.get(natlink.LAN))
    w.put(natlink.WAN, pktlib.tcp("198.18.0.9", LEASE[0], 5555, 8080, flags=0x02))
    out["forwarded"] = summary(w.get(natlink.LAN))
    w.put(natlink.LAN, pktlib.udp(LAN_HOST, "9.9.9.9", 5353, 53, payload=b"q"))
    out["udp"] = summary(w.get(natlink.WAN))
    from esp32_recovery_cases import dhcp_packet, dhcp_reply   # the router's DHCP server
    w.put(natlink.LAN, dhcp_packet(1, HOST_MAC, 77))
    offer = dhcp_reply(w.get(natlink.LAN))
    out["dhcp"] = offer[:3] if offer else None
    out["counters"] = r.counters()
    out["links"] = __import__("board").counters()
    r.stop()
    r.join()
    result(**out)


def binding():
    """The real binding's own promises, over lwIP: the netifs' input wrapped and given
    back, stale links, refusals, wait(), and recv_into/send allocating nothing."""
    import micropython
    r = boot({"wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}},
             leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    r.stop()
    r.join()
    out = {}
    w = wire()
    lan_nic = w.nic(natlink.LAN)
    out["wrapped"] = [not lan_nic.input_is_lwip(), natlink.running()]
    lan, wan = r.lan, r.wan
    out["idle_wait"] = natlink.wait(30)             # nothing pending: times out
    w.put(natlink.LAN, pktlib.tcp(LAN_HOST, REMOTE, 40001, 80, flags=0x02))
    out["woken"] = natlink.wait(1000)
    out["pending"] = natlink.pending(natlink.LAN)
    buf = bytearray(1500)
    n = again = None
    micropython.heap_lock()
    try:
        n = lan.recv_into(buf)
        wan.send(buf, n)
        again = lan.recv_into(buf)
        natlink.wait(0)
        locked = "ok"
    except MemoryError:
        locked = "ALLOC"
    finally:
        micropython.heap_unlock()
    out["locked"] = [locked, n, again]
    out["sent"] = summary(w.get(natlink.WAN))       # untranslated: it went straight out
    refusals = []
    for call in (lambda: natlink.start(lan=lan_nic, wan=lan_nic, wan_addr=bytes(4), tcp=(),
                                       udp=(), icmp=()),
                 lambda: lan.send(buf, 2000), lambda: natlink.counters(7),
                 lambda: natlink.start(lan=1, wan=2, wan_addr=bytes(4), tcp=(), udp=(), icmp=())):
        try:
            call()
            refusals.append(None)
        except Exception as e:
            refusals.append(type(e).__name__)
    out["refusals"] = refusals
    out["counters"] = sorted(natlink.counters(natlink.WAN))
    natlink.claim(tcp=((0, 1023),), udp=(), icmp=(), dhcp=False)   # while running: taken
    out["rehook"] = natlink.rehook()                               # nothing came back
    natlink.stop()
    try:
        natlink.claim(tcp=(), udp=(), icmp=())
        out["claim_stopped"] = None
    except OSError:
        out["claim_stopped"] = "OSError"
    out["stopped"] = [lan_nic.input_is_lwip(), natlink.running(), repr(lan), lan.recv_into(buf)]
    w.put(natlink.LAN, pktlib.tcp(LAN_HOST, REMOTE, 40002, 80, flags=0x02))
    out["after_stop"] = natlink.pending(natlink.LAN)  # lwIP has its input back
    from manage.runner import runner
    runner.restart(r.cfg)                            # open_links again: a clean restart
    out["restarted"] = [not lan_nic.input_is_lwip(), runner.router.is_running()]
    import _lwipsim
    out["dhcps"] = _lwipsim.last_dhcps()
    runner.router.stop()
    result(**out)


def netif_late():
    """ESP-IDF adds the netifs a moment after active(True): natlink.start() is asked
    again until they are there, for NETIF_WAIT_MS at most."""
    import esp32board
    natlink.fake_not_started[0] = 3
    r = boot(leases={"eth": LEASE, "sta": LEASE})
    out = {"late": [e[0] for e in natlink.fake_log], "running": r.is_running()}
    r.stop()
    r.join()
    from manage.runner import runner
    natlink.fake_not_started[0] = 10 ** 6
    esp32board.NETIF_WAIT_MS = 200
    t0 = time.ticks_ms()
    try:
        runner.restart(r.cfg)
        out["never"] = None
    except OSError as e:
        out["never"] = str(e)
    out["waited_ms"] = time.ticks_diff(time.ticks_ms(), t0)
    natlink.fake_not_started[0] = 0
    result(**out)


def gil():
    """While one thread sleeps in natlink.wait(), does another run? (The router's thread
    waits there; the REPL is the other.) On a build with a GIL, as the ESP32's."""
    import _thread
    state = {"done": False, "r": None, "ms": 0, "in_wait": False, "during": 0}

    def waiter():
        t0 = time.ticks_ms()
        state["in_wait"] = True
        state["r"] = natlink.wait(500)
        state["in_wait"] = False
        state["ms"] = time.ticks_diff(time.ticks_ms(), t0)
        state["done"] = True

    _thread.start_new_thread(waiter, ())
    time.sleep_ms(20)
    t0 = time.ticks_ms()
    while not state["done"] and time.ticks_diff(time.ticks_ms(), t0) < 3000:
        if state["in_wait"]:
            state["during"] += 1  # this thread's turns while the other waited
    result(timed_out=state["r"], waited_ms=state["ms"], ran_meanwhile=state["during"])


def lease_later():
    """No lease at boot: natlink claims nothing on the WAN; the lease comes and the
    supervisor restarts the router with it; a new address restarts it again."""
    r = boot({"wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}},
             visible={"upstream": "secret99"}, wait_ms=50)
    out = {"first": [r.cfg["wan"]["addr"], last_wan_addr()]}
    out["quiet"] = supervise()
    who = "eth" if network.LAN._instance is not None else "sta"
    network.lease(who, LEASE)
    out["came"] = supervise()
    from manage.runner import runner
    out["second"] = [runner.router.cfg["wan"]["addr"], runner.router.cfg["wan"]["gateway"],
                     last_wan_addr(), len(starts())]
    out["same"] = supervise()
    network.lease(who, ("100.64.0.9", "255.192.0.0", "100.64.0.1"))
    out["moved"] = supervise()
    out["third"] = [runner.router.cfg["wan"]["addr"], runner.router.cfg["wan"]["mask"]]
    network.lease(who, ("192.168.4.77", "255.255.255.0", "192.168.4.254"))   # the LAN's
    out["overlap"] = [supervise(), supervise()]
    out["kept"] = runner.router.cfg["wan"]["addr"]
    runner.router.stop()
    result(**out)


def static_wan():
    cfg = {"wan": {"mode": "static", "addr": "198.51.100.20", "mask": "255.255.255.0",
                   "gateway": "198.51.100.1"}, "dns": ["192.0.2.53"],
           "wifi": {"sta_ssid": "upstream", "sta_key": "secret99"}}
    r = boot(cfg, visible={"upstream": "secret99"})
    result(network=network.CALLS, natlink=natlink.fake_log, wan=r.cfg["wan"]["addr"],
           dns=network.ipconfig("dns"))
    r.stop()


def live_changes():
    """Changes made from the REPL (manage) reach the hardware: the port forwards to
    natlink's claims at once, the DHCP server at once, the access point's radio through a
    restart of the router (the supervisor), the rest through api.apply()'s restart."""
    from manage import api
    r = boot({"wifi": {"sta_ssid": "upstream", "sta_key": "secret99"},
              "ports": {"first": 20000, "last": 29999}},
             leases={"eth": LEASE, "sta": LEASE}, visible={"upstream": "secret99"})
    out = {"boot": supervise()}
    mark = len(network.CALLS), len(natlink.fake_log)
    out["forward"] = api.add_forward("tcp", 2222, LAN_HOST, 22)
    server = r.dhcp
    out["set_dns"] = api.change({"dns": ["1.1.1.1", "9.9.9.9"], "dhcp.lease_s": 7200})
    from manage.runner import runner
    out["dhcp"] = [r.dhcp is not server and r.dhcp is not None, runner.router is r]
    out["set_key"] = api.set("wifi.ap_key", "a new key 42")
    out["applied"] = supervise()
    out["again"] = supervise()
    out["calls"] = network.CALLS[mark[0]:]
    out["natlink"] = natlink.fake_log[mark[1]:]
    refused = []
    for key, value in (("ports.last", 60000), ("recovery.watchdog_s", 5),
                       ("mtu", 9000), ("wifi.ap_key", "short")):
        try:
            api.set(key, value)
            refused.append(None)
        except ValueError as e:
            refused.append(str(e))
    out["refused"] = refused
    r = runner.router
    old = r.lan
    mark = len(network.CALLS), len(natlink.fake_log)
    out["pending"] = api.set("table.tcp", 100)
    out["apply"] = api.apply()
    out["restart"] = [network.CALLS[mark[0]:], [e[0] for e in natlink.fake_log[mark[1]:]],
                      repr(old), runner.router.table.capacity(6), runner.router is not r]
    runner.router.stop()
    result(**out)


def station():
    """The Wi-Fi-only board: no station network named yet, then one set from the REPL."""
    from manage import api
    r = boot(None, visible={"upstream": "secret99"}, wait_ms=50)
    out = {"calls": network.CALLS[:], "wan": r.cfg["wan"]["addr"]}
    mark = len(network.CALLS)
    api.change({"wifi.sta_ssid": "upstream", "wifi.sta_key": "secret99"})
    out["applied"] = supervise()
    out["joined"] = network.CALLS[mark:]
    network.lease("sta", LEASE)
    out["leased"] = supervise()
    from manage.runner import runner
    out["wan_after"] = runner.router.cfg["wan"]["addr"]
    out["channel"] = network.WLAN(network.WLAN.IF_AP).config("channel")
    runner.router.stop()
    result(**out)


def checks():
    """The board's configuration rules, through config.load at boot."""
    from manage import config
    cfg = {"ports": {"first": 20000, "last": 65535}, "mtu": 9000, "dns": ["192.0.2.53", "9.9.9.9"],
           "forwards": [{"proto": "tcp", "port": 50000, "to": LAN_HOST},
                        {"proto": "udp", "port": 68, "to": LAN_HOST},
                        {"proto": "tcp", "port": 8080, "to": LAN_HOST, "to_port": 80}]
           + [{"proto": "tcp", "port": p, "to": LAN_HOST} for p in range(1100, 1800, 100)],
           "dhcp": {"enabled": True, "first": "192.168.4.2", "last": "192.168.4.250",
                    "lease_s": 600, "capacity": 16,
                    "static": [{"mac": "02:00:00:00:00:09", "addr": "192.168.4.9"}]}}
    with open("natrouter.json", "w") as f:
        f.write(json.dumps(cfg))
    import board  # noqa: F401  (its rules)
    got, problems = config.load("natrouter.json")
    import esp32board
    result(problems=problems, cfg=config.to_file(got), claims=esp32board.claims(got))


def heap():
    """The router's heap on this board's defaults, for the 32-bit WASI build (where
    gc.collect() must never run, so every figure also counts the garbage made on the
    way: an upper bound of what stays). imports: the firmware's modules, the board's and
    the configuration (compiled from source here; frozen in flash on the ESP32, where
    only their objects take heap); setup: board.open_links (with the fakes' own
    records); dhcp: the LAN's DHCP server at the default pool (its lease table); router:
    building the Router around it (the flow table, buffers, counters); watch: the
    supervisor's module and state and the watchdog."""
    import gc
    t0 = gc.mem_alloc()
    network.reset()
    natlink.fake_reset()
    import esp32board
    esp32board.WAN_WAIT_MS = 0
    import board  # noqa: F401
    from manage import config
    from manage.runner import runner
    from forward.router import Router
    runner.board = board
    cfg = config.validate({})[0]
    t1 = gc.mem_alloc()
    lan, wan = board.open_links(cfg)
    t2 = gc.mem_alloc()
    dhcp = runner.make_dhcp(cfg)
    t3 = gc.mem_alloc()
    r = Router(cfg, lan, wan, wait=board.wait, dhcp=dhcp)
    t4 = gc.mem_alloc()
    import esp32watch
    esp32watch._state["wdt"] = machine.WDT(timeout=cfg["recovery"]["watchdog_s"] * 1000)
    t5 = gc.mem_alloc()
    t = cfg["table"]
    result(table=t, flows=t["tcp"] + t["udp"] + t["icmp"], imports=t1 - t0, setup=t2 - t1,
           dhcp=t3 - t2, router=t4 - t3, watch=t5 - t4, total=t5 - t1,
           dhcp_server=dhcp is not None, pool=[cfg["dhcp"]["first"], cfg["dhcp"]["last"]],
           capacity=[r.table.capacity(6), r.table.capacity(17), r.table.capacity(1)])


if __name__ == "__main__":
    globals()[sys.argv[1]]()
