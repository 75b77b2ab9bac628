# The router: moves IPv4 packets between a LAN link and a WAN link through the nat
# engine. Board-independent; the board supplies the links and the waiting
# (boards/README.md).
#
#   import board, router
#   router.start(board)            # config, links, Router, run in the background
#   router.running.counters()      # from the REPL
#
# Per packet the router receives into one buffer, screens it (screen.py: parse and the
# address policy, one call), translates it in place (nat.core.translate) and sends it:
# four calls, with everything they need held in locals of the drain loop. For a packet
# of a known flow nothing allocates (host_tests/upy/router_alloc.py checks it under
# heap_lock on the unix and WASI ports). New flows, fragments and packets for the
# router itself take the slow path (slowpath.py, a mixin of Router), which may allocate.
from array import array
from collections import namedtuple

import config
import nat
from nat import core
from compat import const, sleep_ms, ticks_ms
from counters import NAMES as COUNTERS, C_ERRORS
from icmp import ErrorBuilder
from portgen import PortGen
from slowpath import SlowPath
import fragments
import screen

BATCH = 32          # packets drained from each link per loop iteration
WAIT_MS = 100       # longest wait for traffic; bounds how late tick() and stop() act
ICMP_RATE = 10      # router-originated ICMP errors per second ...
ICMP_BURST = 20     # ... and burst (RFC 1812 4.3.2.8)
EXPIRE_SCAN = 64    # flow slots of each protocol checked for expiry each second

# Copies for the drain loops (MicroPython inlines only a module's own consts).
_OK = const(0)
_V_PASS = const(0)
_V_DROP = const(1)
_F_LEN = const(1)
_C_OUT = const(2)
_C_IN = const(3)
_DHCP_MAX = const(576)   # RFC 2131 2: what every client takes

# A port forward: proto 6 or 17, the WAN port, the LAN host (an int) and its port.
Forward = namedtuple("Forward", ("proto", "port", "to", "to_port"))

_PROTO_NAMES = ((nat.TCP, "tcp"), (nat.UDP, "udp"), (nat.ICMP, "icmp"))


class Router(SlowPath):
    """Forwards between `lan` and `wan` (Link objects) per `cfg` (from config.load).

    wait(timeout_ms) blocks until a link may have a packet (board.wait). ms is the
    millisecond clock of the ICMP rate limit, clock the table's seconds clock (None: the
    engine's own); tests pass fake ones. buf: the receive buffer, at least as long as
    both links' MTU (a board may hand one out that its links frame in place)."""

    def __init__(self, cfg, lan, wan, wait=None, ms=ticks_ms, clock=None, batch=BATCH,
                 icmp_rate=ICMP_RATE, icmp_burst=ICMP_BURST, buf=None, dhcp=None):
        self.cfg = cfg
        self.lan = lan
        self.wan = wan
        self._wait = wait
        self._batch = batch
        self.dhcp = dhcp  # a dhcp.DhcpServer for requests the LAN link delivers, or None
        self._dhcp_pkt = bytearray(28 + _DHCP_MAX) if dhcp is not None else None
        self._job = None  # call(): a function the REPL wants run on this thread
        # Bound once, side 0 the LAN, 1 the WAN: taking a bound method allocates.
        self._recvs = (lan.recv_into, wan.recv_into)
        self._sends = (lan.send, wan.send)
        t = cfg["table"]
        self.table = table = nat.Table(tcp=t["tcp"], udp=t["udp"], icmp=t["icmp"],
                                       clock=clock, timeouts=cfg["nat"]["timeouts"],
                                       share=cfg["nat"]["share"])
        self._filtering = cfg["nat"]["filtering"]
        self._started_s = table.now()
        size = max(lan.mtu, wan.mtu)
        if buf is None:
            buf = bytearray(size)
        elif len(buf) < size:
            raise ValueError("receive buffer of %d bytes for an MTU of %d" % (len(buf), size))
        self._buf = buf
        # Fragments (fragments.py): tracked datagrams, held out-of-order pieces, and a
        # buffer to cut packets too long for a link into. Side 0 is the LAN, 1 the WAN.
        self.frags = fragments.Fragments(ms=ms)
        self._frag_out = bytearray(size)
        self._links = (lan, wan)
        self._pkt = nat.Packet()
        self._pkt.bind(buf)
        self._f = self._pkt.fields
        self._c = array("I", bytes(4 * len(COUNTERS)))
        self._lan_mtu = lan.mtu
        self._wan_mtu = wan.mtu
        self._set_policy(cfg)
        la, wa = cfg["lan"]["addr_int"], cfg["wan"]["addr_int"]
        self._wan_addr = wa  # slow path only
        self._lan_hi, self._lan_lo = la >> 16, la & 0xFFFF
        self._wan_hi, self._wan_lo = wa >> 16, wa & 0xFFFF
        self._errors = ErrorBuilder(ms, icmp_rate, icmp_burst)
        self._forwards = ()
        self._portgen = None
        self._set_forwards(cfg)
        self._client_port = 0
        self._client_port_gen = self._client_port_once
        self._running = False
        self._stopped = False
        self._thread = None
        self._exited = False
        self.last_error = None

    # ---- per-packet path: no allocation for packets of known flows

    def drain_lan(self, limit):
        """Handle up to `limit` packets from the LAN link; returns how many came."""
        recv, send, screen_lan, translate, buf, f, pol, c, mems, heads = self._lan_path
        for i in range(limit):
            n = recv(buf)
            if n <= 0:
                return i
            v = screen_lan(buf, n, f, pol, c)
            if v == _V_PASS:
                st = translate(buf, f, mems, heads)
                if st == _OK:
                    send(buf, f[_F_LEN])
                    c[_C_OUT] += 1
                else:
                    self._lan_untranslated(st)
            elif v != _V_DROP:
                self._lan_for_router(v)
        return limit

    def drain_wan(self, limit):
        """Handle up to `limit` packets from the WAN link; returns how many came."""
        recv, send, screen_wan, translate, buf, f, pol, c, mems, heads = self._wan_path
        for i in range(limit):
            n = recv(buf)
            if n <= 0:
                return i
            v = screen_wan(buf, n, f, pol, c)
            if v == _V_PASS:
                st = translate(buf, f, mems, heads)
                if st == _OK:
                    send(buf, f[_F_LEN])
                    c[_C_IN] += 1
                else:
                    self._wan_untranslated(st)
            elif v != _V_DROP:
                self._wan_special(v)
        return limit

    # ---- configuration that changes while forwarding (reconfigure())

    def _set_policy(self, cfg):
        # What each drain loop needs, in one tuple: one lookup and an unpack in place of
        # ten attribute lookups, the bulk of a loop's cost when it drains one packet.
        pol = screen.policy(cfg, self._lan_mtu, self._wan_mtu, cfg["allow_source_route"])
        (lan_recv, wan_recv), (lan_send, wan_send) = self._recvs, self._sends
        buf, f, c, mems, heads = self._buf, self._f, self._c, self.table.mems, self.table.heads
        self._lan_path = (lan_recv, wan_send, screen.screen_lan, core.translate,
                          buf, f, pol, c, mems, heads)
        self._wan_path = (wan_recv, lan_send, screen.screen_wan, core.translate,
                          buf, f, pol, c, mems, heads)

    def _set_forwards(self, cfg):
        self._forwards = tuple(Forward(proto=f["proto_num"], port=f["port"], to=f["to_int"],
                                       to_port=f["to_port"]) for f in cfg["forwards"])
        ports = cfg["ports"]
        self._portgen = PortGen(self.table, first=ports["first"], last=ports["last"],
                                reserved=[(f.proto, f.port) for f in self._forwards])

    def reconfigure(self, cfg, dhcp=None):
        """Take the parts of a validated cfg that apply while forwarding: port forwards
        (a removed one takes its flows with it), the port range, source routing, the NAT's
        filtering, share and timeouts, the DHCP server (rebuilt by the caller). Addresses,
        MTU and table sizes need a new Router (manage.apply()). Run it on the router's
        thread: call(r.reconfigure, cfg)."""
        kept = [(f["proto_num"], f["port"], f["to_int"], f["to_port"]) for f in cfg["forwards"]]
        for fw in self._forwards:
            if tuple(fw) not in kept:
                self.table.remove_redirects(fw.proto, self._wan_addr, fw.port)
        self.cfg = cfg
        self._set_forwards(cfg)
        self._set_policy(cfg)
        self.table.set_timeouts(**cfg["nat"]["timeouts"])
        self.table.set_share(cfg["nat"]["share"])
        self._filtering = cfg["nat"]["filtering"]
        if dhcp is not None or not cfg["dhcp"]["enabled"]:
            self.dhcp = dhcp
            if dhcp is not None and self._dhcp_pkt is None:
                self._dhcp_pkt = bytearray(28 + _DHCP_MAX)

    def call(self, fn, *args):
        """Run fn(*args) on the router's own thread, between two batches, and return what
        it returns (or raise what it raised): the REPL's changes never interleave with
        the forwarding loop. Waits at most a few seconds; called from the router's
        thread, or while it does not run, fn runs at once."""
        import _thread
        if not self._running or _thread.get_ident() == self._thread:
            return fn(*args)
        job = [fn, args, None, None, False]  # fn, args, result, exception, done
        for _ in range(200):  # one job at a time
            if self._job is None:
                break
            sleep_ms(10)
        else:
            raise OSError("the router is busy with another call")
        self._job = job
        for _ in range(500):
            if job[4]:
                break
            sleep_ms(10)
        else:
            raise OSError("the router did not answer within 5 s")
        if job[3] is not None:
            raise job[3]
        return job[2]

    def _run_job(self):
        job = self._job
        try:
            job[2] = job[0](*job[1])
        except Exception as e:
            job[3] = e
        job[4] = True
        self._job = None

    def _chores(self):
        """Once a second: what runs on time, not per packet."""
        self.table.expire(EXPIRE_SCAN)
        self.frags.expire()
        if self.dhcp is not None:
            self.dhcp.tick()

    # ---- the loop (new flows, fragments, the router's own packets: slowpath.py)

    def poll(self):
        """One loop iteration without waiting: refresh the table's clock, then drain
        each link up to a batch. Returns the number of packets handled."""
        if self.table.tick():
            self._chores()
        if self._job is not None:
            self._run_job()
        return self.drain_lan(self._batch) + self.drain_wan(self._batch)

    def run(self):
        """Forward until stop(). Exceptions (a link failing to send...) are counted and
        the loop goes on: a router must not die of one bad moment."""
        import _thread
        if self._stopped:
            return
        self._thread = _thread.get_ident()
        self._running = True
        wait = self._wait
        while self._running:
            try:
                busy = self.poll()
            except Exception as e:
                self._c[C_ERRORS] += 1
                self.last_error = repr(e)
                busy = 0
            if not busy and wait is not None:
                wait(WAIT_MS)
        if self._job is not None:  # a REPL call that came too late: it must not hang
            self._run_job()
        self._exited = True

    def stop(self):
        self._stopped = True
        self._running = False

    def join(self, timeout_ms=2000):
        """Wait until run() has returned (after stop())."""
        for _ in range(timeout_ms // 10):
            if self._exited or self._thread is None:
                return
            sleep_ms(10)
        raise OSError("the router's loop did not stop")

    def uptime(self):
        """Seconds since this router was made (the table's clock: it does not wrap)."""
        return self.table.now() - self._started_s

    def is_running(self):
        return self._running

    # ---- inspection (slow path)

    def counters(self):
        """Every counter, plus the table's occupancy, as one dict."""
        d = {}
        for i in range(len(COUNTERS)):
            d[COUNTERS[i]] = self._c[i]
        for proto, name in _PROTO_NAMES:
            d["flows_" + name] = self.table.count(proto)
            d["capacity_" + name] = self.table.capacity(proto)
        d.update(self.frags.counters())
        return d

    def flows(self):
        """The table's flows as readable lines, e.g.
        'tcp 192.168.4.2:40000 -> 203.0.113.5:80 as 198.51.100.2:40000 -> 203.0.113.5:80
        idle 3s'."""
        names = dict(_PROTO_NAMES)
        out = []
        for (proto, src, sport, dst, dport, xl_host, xl_port, final_ip, final_port,
             idle) in self.table.flows():
            out.append("%s %s:%d -> %s:%d as %s:%d -> %s:%d idle %ds" % (
                names.get(proto, str(proto)), nat.ip_str(src), sport, nat.ip_str(dst), dport,
                nat.ip_str(xl_host), xl_port, nat.ip_str(final_ip), final_port, idle))
        return out


if core.NAME == "viper":
    # Native emitters: the drain loops as machine code (_router_native.py says why).
    from _router_native import drain_lan as _drain_lan, drain_wan as _drain_wan
    Router.drain_lan = _drain_lan
    Router.drain_wan = _drain_wan


running = None       # the Router forwarding now (the REPL: import nr; nr.help())
board = None         # the board module it runs on
config_path = None   # where its configuration lives


def start(board_module, path=None):
    """Load the config, open the board's links and run a Router in the background.
    A no-op (returning the running router) if one is running already."""
    global running, board, config_path
    if running is not None and running.is_running():
        print("natrouter: already running")
        return running
    board, config_path = board_module, path or board_module.CONFIG_PATH
    cfg, problems = config.load(config_path)
    for msg in problems:
        print("natrouter: config:", msg)
    running = _launch(cfg)
    print("natrouter: LAN %s/%s, WAN %s/%s via %s; REPL: import nr; nr.help()" % (
        cfg["lan"]["addr"], cfg["lan"]["mask"], cfg["wan"]["addr"], cfg["wan"]["mask"],
        cfg["wan"]["gateway"]))
    return running


def restart(cfg):
    """Stop forwarding, then forward again with cfg (validated): the links reopen with
    its addresses and MTU, the flow table starts empty (manage.apply())."""
    global running
    if running is not None:
        running.stop()
        running.join()
    running = _launch(cfg)
    return running


def _launch(cfg):
    lan, wan = board.open_links(cfg)
    buffer = getattr(board, "packet_buffer", None)
    r = Router(cfg, lan, wan, wait=board.wait, buf=buffer() if buffer else None,
               dhcp=make_dhcp(cfg))
    r._running = True  # before the thread starts, so a second start() sees it
    board.start(r.run)
    return r


def make_dhcp(cfg):
    """The DHCP server for the LAN, when the configuration enables it and the board
    leaves DHCP to the router (board.LAN_DHCP); else None."""
    if not cfg["dhcp"]["enabled"] or not getattr(board, "LAN_DHCP", False):
        return None
    import dhcp
    store = dhcp.LeaseFile(getattr(board, "LEASES_PATH", "dhcp_leases.json"))
    return dhcp.DhcpServer(cfg["dhcp"], cfg["lan"]["addr"], cfg["lan"]["mask"], dns=cfg["dns"],
                           store=store)
