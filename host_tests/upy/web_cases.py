# The page (firmware/web) on an ESP32 board without an ESP32: the boot path against the
# fakes of network, machine and natlink (esp32_cases.boot()), and the page's heap on the
# 32-bit WASI build. Run by host_tests/test_web_esp32.py.
import sys

import esp32_cases
from esp32_cases import LEASE, result


def _upylib():
    """build/upylib (microdot: `make upylib`), found from the firmware's own path, and the
    unix port's frozen modules (asyncio), which MICROPYPATH leaves out."""
    import compat
    root = compat.__file__.rsplit("/", 2)[0]
    sys.path.extend((root + "/build/upylib", ".frozen"))


class FakeSockets:
    """The socket module as the ESP32's lwIP offers it to the page: records what the page
    asks of its listening socket; only `netif` exists to bind it to."""
    AF_INET, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR, SO_BINDTODEVICE = 2, 1, 0xFFF, 4, 0x100B

    def __init__(self, netif):
        self.netif = netif
        self.calls = []

    def socket(self, *args):
        return _FakeSocket(self)

    def getaddrinfo(self, host, port):
        return [(2, 1, 0, "", (host, port))]


class _FakeSocket:
    def __init__(self, mod):
        self.mod = mod

    def setsockopt(self, level, opt, value):
        self.mod.calls.append(["setsockopt", opt, value])
        if opt == self.mod.SO_BINDTODEVICE and value != self.mod.netif:
            raise OSError(19)  # ENODEV: lwIP has no netif of that name

    def bind(self, addr):
        self.mod.calls.append(["bind", list(addr)])

    def listen(self, n):
        self.mod.calls.append(["listen", n])

    def setblocking(self, flag):
        pass

    def close(self):
        self.mod.calls.append(["close"])


def page_starts():
    """main.py starts the page's service; it listens on the access point's address, its
    socket bound to the access point's netif."""
    _upylib()
    import web
    started = []
    web.spawn = lambda fn, board, *more: started.append(fn.__name__)
    r = esp32_cases.boot(leases={"eth": LEASE, "sta": LEASE})
    from web import server, service
    import esp32board
    import board
    fake = FakeSockets("ap1")
    server.socket = esp32board.SOCKETS = fake
    want = service.wanted()
    server.open_socket(want[0], want[1], board)
    result(started=started, want=[want[0], want[1]], calls=fake.calls,
           stack=getattr(board, "WEB_STACK", None), running=r.is_running())
    r.stop()


def heap():
    """The page's heap on this board's defaults, on the 32-bit WASI build (no collection
    may run there: every figure counts the garbage made on the way, an upper bound).
    imports: the page's modules and microdot (compiled from source here; frozen in flash
    on the board, where only their objects take heap); app: the application (routes,
    sessions, limiter); then each page made from the router's data (api + HTML)."""
    import gc
    import network
    import natlink
    network.reset()
    natlink.fake_reset()
    import esp32board
    esp32board.WAN_WAIT_MS = 0
    import board
    from manage import api, config
    from manage.runner import runner
    from forward.router import Router
    runner.board = board
    cfg = config.validate({})[0]
    lan, wan = board.open_links(cfg)
    r = Router(cfg, lan, wan, wait=board.wait, dhcp=runner.make_dhcp(cfg))
    runner.router = r
    for _ in range(r.traffic.samples):  # a full ring, as after three minutes
        r.traffic.sample(r.shared.counters, r.wan)
    out = {}
    t0 = gc.mem_alloc()
    import microdot  # noqa: F401
    t1 = gc.mem_alloc()
    from web import app, pages
    t2 = gc.mem_alloc()
    w = app.Web()
    s = w.sessions.new(True)
    t3 = gc.mem_alloc()
    out.update(microdot=t1 - t0, modules=t2 - t1, app=t3 - t2)
    for name, make in (
            ("status", lambda: pages.status(*api.overview(), s.csrf)),
            ("clients", lambda: pages.clients(api.clients(), s.csrf)),
            ("flows", lambda: pages.flows(api.flows(limit=50), {}, s.csrf)),
            ("forwards", lambda: pages.forwards(api.forwards(), s.csrf)),
            ("config", lambda: pages.configuration(list(app.flat(api.configuration())),
                                                   api.pending(), s.csrf)),
            ("api_status", lambda: __import__("json").dumps(api.status()))):
        a = gc.mem_alloc()
        text = make()
        out[name] = [gc.mem_alloc() - a, len(text)]
    result(**out)


if __name__ == "__main__":
    globals()[sys.argv[1]]()
