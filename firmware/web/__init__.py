# The router from a browser, and its status for machines: the page and its JSON API on
# the LAN address (service.py: server.py serving app.py's microdot application over
# manage.api), and the MQTT publisher (mqtt.py). main.py starts them beside the router:
#
#   import web; web.start(board)
#
# Each runs in a thread of its own (sharing the interpreter with the router's, which never
# waits for them) and follows the running configuration ("web", "mqtt", "admin":
# manage/webconfig.py) and the router's restarts; the publisher's thread exists only
# while MQTT is on. Without microdot or umqtt on the board, the router runs all the same
# and the console says why there is no page or no MQTT.
STACK = 0   # the threads' stacks (0: the port's default); a board may set WEB_STACK


_KEY = "natrouter.web"   # in sys.modules: what a restart in place finds of the last start


def start(board):
    """The page's service in a thread of its own. Started again in the same interpreter
    (tools/deploy.py restarts the firmware in place on the unix port), the running one
    ends first: asyncio's state is the interpreter's, one loop at a time."""
    import sys
    try:
        from . import service
    except ImportError as e:
        print("natrouter: web: no page (%s)" % e)
        return
    stop()
    sys.modules[_KEY] = life = {"stop": False, "running": True}
    spawn(service.run, board, life)


def stop():
    """End the page's service (its listening socket closed), waiting up to 5 s; True
    when none runs any more."""
    import sys
    from compat import sleep_ms
    life = sys.modules.get(_KEY)
    if life is None:
        return True
    life["stop"] = True
    for _ in range(50):
        if not life["running"]:
            return True
        sleep_ms(100)
    return False


def spawn(fn, board, *more):
    """fn(board, *more) in a thread of its own, with the board's stack size."""
    import _thread
    size = getattr(board, "WEB_STACK", STACK)
    if size:
        _thread.stack_size(size)
    _thread.start_new_thread(fn, (board,) + more)
    if size:
        _thread.stack_size(0)
