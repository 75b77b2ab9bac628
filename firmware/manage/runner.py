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

from . import config


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
        with self._lock:
            if self.router is not None and self.router.is_running():
                print("natrouter: already running")
                return self.router
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
        r.join()
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
        r.mark_running()  # before the thread starts, so that a second start() sees it
        board.start(r.run)
        return r


runner = Runner()   # the firmware's one (main.py, manage.api, a board's supervisor)
