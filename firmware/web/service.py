# The page's service: the HTTP server (server.py) serving the application (app.py) on the
# LAN address and the port of the running configuration, listening again whenever they
# change or the router restarts (an ESP32 board's access point may come back as another
# netif). Runs asyncio in the thread web.start() made.
import asyncio

from manage.runner import runner
from . import mqtt
from .app import Web
from .server import Http

RECHECK_MS = 1000
RETRY_MS = 5000


def wanted():
    """(LAN address, port) the page should listen on now, and which router it belongs to
    (its number, runner.launches: holding the Router itself would keep its heap after a
    restart); None when the page is off or no router runs."""
    r = runner.router
    if r is None or not r.is_running():
        return None
    cfg = r.cfg
    if not cfg["web"]["enabled"]:
        return None
    return cfg["lan"]["addr"], cfg["web"]["port"], runner.launches


async def serve(board, http, life):
    said = None
    where = None
    while not life["stop"]:
        want = wanted()
        if want != where:
            await http.close()
            where = None
            if want is not None:
                try:
                    http.listen(want[0], want[1])
                    where = want
                    said = "http://%s%s/ (the page; JSON under /api/)" % (
                        want[0], "" if want[1] == 80 else ":%d" % want[1])
                    print("natrouter: web: " + said)
                except OSError as e:
                    text = "cannot listen on %s:%d (%s); trying again" % (want[0], want[1], e)
                    if text != said:
                        print("natrouter: web: " + text)
                        said = text
                    await asyncio.sleep_ms(RETRY_MS)
                    continue
        if mqtt.wanted() and not mqtt.state["running"]:
            _publisher(board)
        await asyncio.sleep_ms(RECHECK_MS)
    await http.close()


def _publisher(board):
    """The MQTT publisher's thread, while MQTT is on (it ends when it goes off)."""
    try:
        import umqtt.simple  # noqa: F401
    except ImportError as e:
        if mqtt.state["last_error"] is None:
            print("natrouter: mqtt: no umqtt.simple (%s)" % e)
        mqtt.state["last_error"] = repr(e)
        return
    import web
    mqtt.state["running"] = True
    web.spawn(mqtt.run, board)


state = {"http": None, "web": None}


def run(board, life):
    """The service's thread, until life["stop"] (web.start)."""
    web = Web()
    http = Http(web.app, board)
    state["web"], state["http"] = web, http
    try:
        asyncio.run(serve(board, http, life))
    finally:
        life["running"] = False
