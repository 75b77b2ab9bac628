# The router: moves IPv4 packets between a LAN link and a WAN link through the nat
# engine. Board-independent: the board supplies the links and the waiting
# (boards/README.md); manage/runner.py starts, restarts and stops it.
#
# A Router is three parts around one Shared (shared.py: the receive buffer, the counters,
# the flow table, the links): the Datapath (datapath.py), which drains each link, screens
# and translates packets in place and sends them; the SlowPath (slowpath.py), which
# takes what the datapath hands on (new flows, the router's own packets, ICMP errors,
# fragments); and the loop here, which runs them, the once-a-second chores and the REPL's
# calls on one thread.
import nat
from compat import sleep_ms, ticks_ms, ticks_diff
from .counters import NAMES as COUNTER_NAMES, C_ERRORS
from .datapath import Datapath, drain
from .shared import Shared
from .slowpath import SlowPath
from .traffic import Traffic

try:
    from _thread import allocate_lock, get_ident
except ImportError:  # the WASI build: one thread, which runs poll() alone
    allocate_lock = get_ident = None

BATCH = 32          # packets drained from each link per loop iteration
WAIT_MS = 100       # longest wait for traffic; bounds how late tick() and stop() act
ICMP_RATE = 10      # router-originated ICMP errors per second ...
ICMP_BURST = 20     # ... and burst (RFC 1812 4.3.2.8)
EXPIRE_SCAN = 64    # flow slots of each protocol checked for expiry each second
TICK_MS = 100       # the table's seconds clock is read at most this often (poll())


class Router:
    """Forwards between `lan` and `wan` (Link objects) per `cfg` (manage.config.load).

    wait(timeout_ms) blocks until a link may have a packet (board.wait). ms is the
    millisecond clock of the ICMP rate limit, clock the table's seconds clock (None: the
    engine's own); tests pass fake ones. buf: the receive buffer, at least as long as
    both links' MTU (a board may hand one out that its links frame in place). dhcp: the
    LAN's DHCP server (services.dhcp.DhcpServer) or None. table: a flow table to use
    (shared.flow_table: reshaped to cfg's sizes when its arrays hold them, else replaced). traffic: a
    traffic.Traffic to sample into (cleared), else one of its own; frags: the same for
    the fragments' arrays (fragments.Fragments on the ms clock)."""

    def __init__(self, cfg, lan, wan, wait=None, ms=ticks_ms, clock=None, batch=BATCH,
                 icmp_rate=ICMP_RATE, icmp_burst=ICMP_BURST, buf=None, dhcp=None, table=None,
                 traffic=None, frags=None):
        self.shared = s = Shared(cfg, lan, wan, buf, clock, table)
        self.table = s.table
        self.slow = SlowPath(s, ms, icmp_rate, icmp_burst, dhcp, frags)
        self.datapath = Datapath(s, self.slow)
        self._wait = wait
        self._batch = batch
        self._ms = ms
        self._ticked_ms = ms()
        self._started_s = s.table.now()
        if traffic is None:
            traffic = Traffic()
        traffic.clear()
        self.traffic = traffic  # once a second, for the page's plot (traffic.py)
        self.capture = None       # a filter.capture.Capture, made by manage.api's capture_start
        self._job = None  # call(): a function the REPL wants run on this thread
        # call()'s callers take turns: the REPL, the page, the capture stream and MQTT
        # each have a thread, and two that saw no job pending would overwrite each other
        self._callers = allocate_lock() if allocate_lock is not None else None
        self._thread = None
        self._running = False
        self._stopped = False
        self._exited = False

    @property
    def cfg(self):
        return self.shared.cfg

    @property
    def last_error(self):
        return self.shared.last_error

    @property
    def dhcp(self):
        return self.slow.dhcp if self.slow is not None else None

    @property
    def lan(self):
        return self.shared.links[0]

    @property
    def wan(self):
        return self.shared.links[1]

    # ---- the loop

    def poll(self):
        """One loop iteration without waiting: refresh the table's clock (when TICK_MS
        have passed), then drain each link up to a batch. Returns the number of packets
        handled. Its own cost counts when traffic is light (a packet per call): two C
        calls and a compare, the drains called from here."""
        now = self._ms()
        if not 0 <= ticks_diff(now, self._ticked_ms) < TICK_MS:
            self._tick(now)
        if self._job is not None:
            self._run_job()
        dp = self.datapath
        return drain(dp.lan, self._batch) + drain(dp.wan, self._batch)

    def _tick(self, now):
        self._ticked_ms = now
        if self.table.tick():
            self._chores()

    def _chores(self):
        """Once a second: what runs on time, not per packet."""
        self.table.expire(EXPIRE_SCAN)
        self.slow.frags.expire()
        if self.slow.dhcp is not None:
            self.slow.dhcp.tick()
        self.traffic.sample(self.shared.counters, self.wan)

    def run(self):
        """Forward until stop(). Exceptions (a link failing to send...) are counted and
        the loop goes on: a router must not die of one bad moment."""
        if self._stopped:
            self._exited = True
            return
        self._thread = get_ident()
        self._running = True
        wait = self._wait
        while self._running:
            try:
                busy = self.poll()
            except Exception as e:
                self.shared.counters[C_ERRORS] += 1
                self.shared.last_error = repr(e)
                busy = 0
            if not busy and wait is not None:
                wait(WAIT_MS)
        if self._job is not None:  # a REPL call that came too late: it must not hang
            self._run_job()
        self._exited = True

    def mark_running(self):
        """Say the router runs before its thread is up (the runner does, so that a
        second start() sees it), unless it was stopped already."""
        if not self._stopped:
            self._running = True

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

    def is_running(self):
        return self._running

    def release(self):
        """Once stopped and joined: drop what forwarding held (the flow table, buffers,
        the slow path), so that a stale handle on this Router (another thread's local)
        does not keep its heap from the next one. Returns the flow table, for reuse."""
        s = self.shared
        table = s.table
        # cfg and the counters stay (a last look at them); the rest goes
        s.table = s.buf = s.packet = s.fields = s.links = s.recvs = s.sends = None
        self.table = self.slow = self.datapath = self.traffic = self.capture = None
        return table

    # ---- changes while forwarding

    def reconfigure(self, cfg, dhcp=None):
        """Take the parts of a validated cfg that apply while forwarding: port forwards
        (a removed one takes its flows with it), the port range, source routing, the NAT's
        filtering, share and timeouts, the DHCP server (rebuilt by the caller). Addresses,
        MTU and table sizes need a new Router (the runner's restart()). Run it on the
        router's thread: call(r.reconfigure, cfg)."""
        self.shared.cfg = cfg
        self.slow.reconfigure(cfg, dhcp)
        self.datapath.set_policy(cfg)
        self.table.set_timeouts(**cfg["nat"]["timeouts"])
        self.table.set_share(cfg["nat"]["share"])

    def call(self, fn, *args):
        """Run fn(*args) on the router's own thread, between two batches, and return what
        it returns (or raise what it raised): the REPL's changes never interleave with
        the forwarding loop. Waits at most a few seconds; called from the router's
        thread, or while it does not run, fn runs at once."""
        if not self._running or get_ident() == self._thread:
            return fn(*args)
        job = _Job(fn, args)
        with self._callers:
            for _ in range(200):  # a job left by a caller that gave up on it
                if self._job is None:
                    break
                sleep_ms(10)
            else:
                raise OSError("the router is busy with another call")
            self._job = job
            for _ in range(500):
                if job.done:
                    break
                if self._exited:  # its loop ended after its last look at _job
                    if not job.done:
                        self._run_job()
                    break
                sleep_ms(10)
            else:
                raise OSError("the router did not answer within 5 s")
        if job.error is not None:
            raise job.error
        return job.result

    def _run_job(self):
        job = self._job
        try:
            job.result = job.fn(*job.args)
        except Exception as e:
            job.error = e
        job.done = True
        self._job = None

    # ---- inspection (slow path)

    def uptime(self):
        """Seconds since this router was made (the table's clock: it does not wrap)."""
        return self.table.now() - self._started_s

    def rates(self):
        """Packets and bytes per second over the last minutes (traffic.py)."""
        return self.traffic.rates()

    def counters(self):
        """Every counter, plus the table's occupancy, as one dict."""
        c = self.shared.counters
        d = {}
        for i in range(len(COUNTER_NAMES)):
            d[COUNTER_NAMES[i]] = c[i]
        for proto, name in nat.PROTOCOLS:
            d["flows_" + name] = self.table.count(proto)
            d["capacity_" + name] = self.table.capacity(proto)
        d.update(self.slow.frags.counters())
        return d

    def flows(self):
        """The table's flows as readable lines, e.g.
        'tcp 192.168.4.2:40000 -> 203.0.113.5:80 as 198.51.100.2:40000 -> 203.0.113.5:80
        idle 3s'."""
        out = []
        for (proto, src, sport, dst, dport, xl_host, xl_port, final_ip, final_port,
             idle) in self.table.flows():
            out.append("%s %s:%d -> %s:%d as %s:%d -> %s:%d idle %ds" % (
                nat.proto_name(proto), nat.ip_str(src), sport, nat.ip_str(dst), dport,
                nat.ip_str(xl_host), xl_port, nat.ip_str(final_ip), final_port, idle))
        return out


class _Job:
    """A REPL call waiting for the router's thread (Router.call)."""

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args
        self.result = None
        self.error = None
        self.done = False
