# The one owner of the router's life: start, restart and stop go through it, under one
# lock, whoever asks (main.py at boot, manage.api.apply() on the REPL's thread, an ESP32
# board's supervisor on its own thread).
#
#   from manage.runner import runner
#   runner.start(board)      # config from board.CONFIG_PATH, links, Router, its thread
#   runner.router            # the Router forwarding now (None before start)
#   runner.restart(cfg)      # stop it, then forward again with cfg (validated)
from forward.router import Router
from forward.shared import flow_table, holds
from forward.fragments import Fragments
from forward.traffic import Traffic
from compat import sleep_ms

from . import config

# The router's thread, made before its router, looks this often for it; a thread that
# cannot be made yet is asked for again this many times, NEXT_MS apart.
NEXT_MS = 10
SPAWN_TRIES = 50
# Before a restart's thread is made: the time FreeRTOS's idle task takes to free the stack
# of the thread that ended.
REAP_MS = 50


# The flow tables a router is launched with when the heap could hold neither the ones
# asked for nor the ones before (fragmented): some 1.5 KB.
LAST_RESORT = {"tcp": 16, "udp": 16, "icmp": 8}


def _sizes(cfg):
    t = cfg["table"]
    return "tcp %d, udp %d, icmp %d" % (t["tcp"], t["udp"], t["icmp"])


class Runner:
    def __init__(self):
        self.router = None       # the Router forwarding now
        self.launches = 0        # routers started: which one runs, without holding it
        self.board = None        # the board module it runs on (boards/README.md)
        self.config_path = None  # where its configuration lives
        self._lock = None        # made at start(): the WASI build has no _thread
        self._next = None        # a launched Router, for the router's thread to run
        self._running = None     # the one it runs, until its thread ends
        self._handoff = None
        self._waiting = False    # a router's thread is up and has not taken one (_spawn)
        # Made once, handed to each router: the traffic ring (forward/traffic.py) and the
        # fragments' arrays (8 KB in one piece), which a fragmented heap may not find again.
        self._traffic = None
        self._frags = None

    def start(self, board, path=None):
        """Load the config, open the board's links and run a Router on its own thread.
        A no-op (returning the running router) if one is running already."""
        if self._lock is None:
            import _thread
            self._lock = _thread.allocate_lock()
            self._handoff = _thread.allocate_lock()   # _next, between _loop and _stop
        with self._lock:
            if self.router is not None and self.router.is_running():
                print("natrouter: already running")
                return self.router
            self._stop()  # one stopped by hand (router.stop()): its loop ends first
            self.board = board
            self.config_path = path or getattr(board, "CONFIG_PATH", config.DEFAULT_PATH)
            boot = getattr(board, "boot", None)
            if boot is not None:  # before the configuration is read (a reset button)
                boot(self.config_path)
            cfg, problems = config.load(self.config_path)
            for msg in problems:
                print("natrouter: config:", msg)
            try:
                self.router = self._launch(cfg)
            except MemoryError:  # a file's tables this heap cannot hold: boot anyway
                cfg = dict(cfg, table=config.defaults()["table"])
                print("natrouter: config: table: too big for the heap; using %r" % cfg["table"])
                self.router = self._relaunch(cfg)
                cfg = self.router.cfg
        print("natrouter: LAN %s/%s, WAN %s/%s via %s; REPL: import nr; nr.help()" % (
            cfg["lan"]["addr"], cfg["lan"]["mask"], cfg["wan"]["addr"], cfg["wan"]["mask"],
            cfg["wan"]["gateway"]))
        return self.router

    def restart(self, cfg):
        """Stop forwarding, then forward again with cfg (validated): the links reopen with
        its addresses and MTU, the flow table starts empty, the DHCP leases are kept."""
        self._need_start()
        with self._lock:
            running = self.router.cfg if self.router is not None else None
            table = self._stop()
            if table is not None and not holds(table, cfg):
                table = None      # gone before the new tables are made
                self._collect()
            try:
                self.router = self._launch(cfg, table)
            except MemoryError:
                # (manage.memory.check_tables refuses most of these first: a fragmented
                # heap may still fail.) Forward again as before: the old tables' room is
                # free again.
                if running is None:
                    raise
                self.router = self._relaunch(running, table)
                raise ValueError("table: the heap could not hold %s flows; still forwarding, "
                                 "with %s" % (_sizes(cfg), _sizes(self.router.cfg)))
            return self.router

    def _relaunch(self, cfg, table=None):
        """After a launch the heap could not hold: cfg, else cfg with the smallest tables
        (a router that forwards a few flows beats none; nr.status() shows the sizes).
        table: the flow table the failed launch had, reused where its arrays hold the
        sizes (a second table beside it is what a full heap cannot hold)."""
        self._collect()
        try:
            return self._launch(cfg, table)
        except MemoryError:
            self._collect()
            cfg = dict(cfg, table=dict(LAST_RESORT))
            print("natrouter: the heap holds no more than the smallest tables now: %r"
                  % cfg["table"])
            return self._launch(cfg, table)

    def stop(self):
        """Stop forwarding, wait for the router's loop to end, write the DHCP leases."""
        self._need_start()
        with self._lock:
            self._stop()

    def reconfigured(self, cfg):
        """The running router took cfg's live parts (manage.api): the board follows
        (board.reconfigure, optional: e.g. what natlink claims for the port forwards)."""
        follow = getattr(self.board, "reconfigure", None)
        if follow is not None:
            follow(cfg)

    def make_dhcp(self, cfg):
        """The DHCP server for the LAN, when the configuration enables it and the board
        leaves DHCP to the router (board.LAN_DHCP); else None."""
        if not cfg["dhcp"]["enabled"] or not getattr(self.board, "LAN_DHCP", False):
            return None
        from services import dhcp
        store = dhcp.LeaseFile(getattr(self.board, "LEASES_PATH", dhcp.LEASES_PATH))
        return dhcp.DhcpServer(cfg["dhcp"], cfg["lan"]["addr"], cfg["lan"]["mask"],
                               dns=cfg["dns"], store=store)

    def _need_start(self):
        if self._lock is None:
            raise OSError("the router was never started (runner.start(board))")

    def _stop(self):
        """Stop the router; returns its flow table (restart() reuses it at the same sizes)."""
        r = self.router
        if r is None:
            return None
        r.stop()
        with self._handoff:
            if self._next is r:   # its thread has not taken it: it never will
                self._next = None
                r.run()           # (stopped: returns at once, answers a late call)
        self._done_with(r)
        if r.dhcp is not None:  # its loop has ended: nobody else writes
            r.dhcp.flush()      # the leases a batch still holds
        # What forwarding held goes before the next router's is made, whoever still holds
        # this one: a board's heap need not hold both (on an ESP32 it would grow into
        # what lwIP needs).
        table = r.release()
        self.router = r = None
        self._collect()
        return table

    @staticmethod
    def _collect():
        import gc
        gc.collect()

    def _launch(self, cfg, table=None):
        board = self.board
        self._spawn()     # the router's thread before the router: see _spawn
        # The flow table first: its arrays are the largest, and the heap's largest free
        # blocks are where the last router's were, before the links take pieces of them.
        table = flow_table(cfg, table=table)
        lan, wan = board.open_links(cfg)
        buffer = getattr(board, "packet_buffer", None)
        if self._traffic is None:
            self._traffic, self._frags = Traffic(), Fragments()
        r = Router(cfg, lan, wan, wait=board.wait, buf=buffer() if buffer else None,
                   dhcp=self.make_dhcp(cfg), table=table, traffic=self._traffic,
                   frags=self._frags)
        self.launches += 1
        r.mark_running()  # before its thread runs it, so that a second start() sees it
        self._next = r    # its thread takes it
        return r

    def _spawn(self):
        """A thread for the next router, made before the router. On an ESP32 a thread's
        stack (12 KB) comes from ESP-IDF's heap, where FreeRTOS frees a finished thread's
        late (in its idle task): made after the router, the new stack came out of lwIP's
        reserve, MicroPython's heap having grown into the room the last one left (QEMU:
        ESP-IDF's free heap fell below the reserve at each restart). Made first, after a
        moment for the idle task, it takes that room back. One thread per router: the
        ESP32 port's collector reads another thread's stack whole, and a thread that
        outlived its router would keep that router's objects in its stale frames."""
        if self._waiting:     # one waits already (its router's launch failed)
            return
        if self.launches:
            sleep_ms(REAP_MS)
        for _ in range(SPAWN_TRIES):
            try:
                self.board.start(self._loop)
            except OSError:   # no room for its stack yet
                sleep_ms(NEXT_MS)
                continue
            self._waiting = True
            return
        raise OSError("no room for the router's thread")

    def _loop(self):
        """The router's thread: wait for its router, run it, say so, end."""
        while not self._run_next():
            sleep_ms(NEXT_MS)
        self._running = None   # after _run_next's frame, the one that held it, is gone

    def _run_next(self):
        """Run the router handed over, if any (False: none). The router is held in this
        frame alone: the ESP32 port's collector reads a live thread's stack whole, and
        _loop's frame holding it would keep the stopped router from the collection that
        makes room for the next (a restart ran out of heap in QEMU)."""
        with self._handoff:
            r = self._running = self._next
            self._next = None
            if r is None:
                return False
            self._waiting = False   # the next router needs a thread of its own
        try:
            r.run()          # counts and survives its own errors; this is for a bug
        except Exception as e:
            print("natrouter: the router's loop failed: %r" % (e,))
        return True

    def _done_with(self, r):
        """Wait until the router's thread has let go of r, after stop(): its loop has
        ended and the thread with it, so the collection that follows finds r's objects
        unreachable (Router.join waits for the loop alone)."""
        for _ in range(200):
            if self._running is not r:
                return
            sleep_ms(10)
        raise OSError("the router's loop did not stop")


runner = Runner()   # the firmware's one (main.py, manage.api, a board's supervisor)
