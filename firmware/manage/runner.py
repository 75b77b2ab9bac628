# The one owner of the router's life: start, restart and stop go through it, under one
# lock, whoever asks (main.py at boot, manage.api.apply() on the REPL's thread, an ESP32
# board's supervisor on its own thread).
#
#   from manage.runner import runner
#   runner.start(board)      # config from board.CONFIG_PATH, links, Router, its thread
#   runner.router            # the Router forwarding now (None before start)
#   runner.restart(cfg)      # stop it, then forward again with cfg (validated)
from forward.router import Router

from . import config


class Runner:
    def __init__(self):
        self.router = None       # the Router forwarding now
        self.board = None        # the board module it runs on (boards/README.md)
        self.config_path = None  # where its configuration lives
        self._lock = None        # made at start(): the WASI build has no _thread

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
            self.router = self._launch(cfg)
        print("natrouter: LAN %s/%s, WAN %s/%s via %s; REPL: import nr; nr.help()" % (
            cfg["lan"]["addr"], cfg["lan"]["mask"], cfg["wan"]["addr"], cfg["wan"]["mask"],
            cfg["wan"]["gateway"]))
        return self.router

    def restart(self, cfg):
        """Stop forwarding, then forward again with cfg (validated): the links reopen with
        its addresses and MTU, the flow table starts empty, the DHCP leases are kept."""
        self._need_start()
        with self._lock:
            self._stop()
            self.router = self._launch(cfg)
            return self.router

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
        if self.router is not None:
            self.router.stop()
            self.router.join()
            if self.router.dhcp is not None:  # its loop has ended: nobody else writes
                self.router.dhcp.flush()      # the leases a batch still holds
            # The old tables go before the new ones are made: a board's heap need not
            # hold both (on an ESP32 it would grow into what lwIP needs).
            self.router = None
            import gc
            gc.collect()

    def _launch(self, cfg):
        board = self.board
        lan, wan = board.open_links(cfg)
        buffer = getattr(board, "packet_buffer", None)
        r = Router(cfg, lan, wan, wait=board.wait, buf=buffer() if buffer else None,
                   dhcp=self.make_dhcp(cfg))
        r.mark_running()  # before the thread starts, so that a second start() sees it
        board.start(r.run)
        return r


runner = Runner()   # the firmware's one (main.py, manage.api, a board's supervisor)
