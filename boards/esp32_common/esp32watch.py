# natrouter on the ESP32: the supervisor, a thread of its own (esp32board.start) that
# looks once a second at what a router left alone must follow or recover from:
#
# - the hardware watchdog (machine.WDT, recovery.watchdog_s): fed by a call that runs on
#   the router's own thread between two batches (Router.call), so a forwarding loop that
#   stops turning stops feeding it, and the board reboots;
# - settings changed from the REPL: applied to the access point and the station, or, for
#   a change that makes ESP-IDF add an interface's netif back (the AP's radio settings,
#   the station's MAC), through a restart of the router; a netif re-added anyway is
#   wrapped again (natlink.rehook);
# - the uplink: the station's saved networks tried in order with backoff (esp32station),
#   a new WAN lease or address taken with a restart that leaves the access point, its
#   clients and their DHCP leases alone; optionally a reboot after recovery.wan_reboot_min
#   minutes without a WAN address.
import time

import machine
import natlink

import esp32board
from esp32net import say

SUPERVISE_MS = 1000     # the supervisor looks this often

_state = {"wdt": None, "wdt_s": 0, "stuck": False, "wan_seen": None, "retry": None}


def run():
    """The supervisor thread: supervise() forever; it must outlive any one bad moment."""
    while True:
        time.sleep_ms(SUPERVISE_MS)
        try:
            supervise()
        except Exception as e:
            esp32board._state["last_error"] = repr(e)


def supervise(now=None):
    """One look. Returns what it did, for the tests: "idle" (no router running),
    "stuck" (the router's loop did not answer: the watchdog was not fed), "restarted",
    "failed" (a restart it asked for failed: it asks again at the next look), "applied",
    "rehooked", what the station did ("joining", "waiting") or "nothing"."""
    from manage.runner import runner
    now = time.ticks_ms() if now is None else now
    r = runner.router
    if not _feed(r):
        return "stuck"
    if _state["retry"] is not None:
        return _restart(runner, _state["retry"])
    if r is None or not r.is_running():
        return "idle"
    cfg = r.cfg
    board, state = esp32board._board, esp32board._state
    lan, wan = board.lan, board.wan
    did = "nothing"
    if cfg is not state["applied"]:
        if _needs_restart(lan, cfg) or _needs_restart(wan, cfg):
            say("Wi-Fi settings changed: restarting the router with them")
            return _restart(runner, cfg)
        lan.apply(cfg)
        wan.apply(cfg)
        state["applied"] = cfg
        did = "applied"
    if natlink.rehook():
        say("an interface's netif came back (ESP-IDF restarted it): natlink wraps it again")
        did = "rehooked"
    tick = getattr(wan, "tick", None)
    if tick is not None:
        did = tick(now) or did
    held = esp32board.lease()
    _uplink(cfg, held, now)
    new = esp32board.follow_lease(cfg, held)
    if new is None:
        return did
    say("WAN lease %s/%s via %s: restarting the router" % held)
    return _restart(runner, new)


def _restart(runner, cfg):
    """runner.restart(cfg); when it fails (an interface or natlink refusing), it is asked
    again at every look until it works: a router left alone must not stay stopped."""
    try:
        runner.restart(cfg)
    except Exception as e:
        if _state["retry"] is None:
            say("restarting the router failed (%r): trying again every %d s"
                % (e, SUPERVISE_MS // 1000))
        _state["retry"] = cfg
        return "failed"
    _state["retry"] = None
    return "restarted"


def _needs_restart(nic, cfg):
    check = getattr(nic, "needs_restart", None)
    return check is not None and check(cfg)


def _feed(r):
    """Start, retime or feed the watchdog. False when the router's loop did not run the
    feed within Router.call's few seconds."""
    seconds = r.cfg["recovery"]["watchdog_s"] if r is not None else 0
    if seconds and seconds != _state["wdt_s"]:
        _state["wdt"] = machine.WDT(timeout=seconds * 1000)   # again: a new timeout
        _state["wdt_s"] = seconds
    wdt = _state["wdt"]
    if wdt is None:
        return True
    if r is None or not r.is_running():   # stopped on purpose, or restarting: no loop
        wdt.feed()
        return True
    try:
        r.call(wdt.feed)        # on the router's thread: proof that its loop turns
    except OSError:
        if not _state["stuck"]:
            say("the router's loop does not answer: the watchdog restarts the board "
                "within %d s unless it does" % _state["wdt_s"])
            _state["stuck"] = True
        return False
    _state["stuck"] = False
    return True


def _uplink(cfg, held, now):
    """Reboot after recovery.wan_reboot_min minutes (0: never) without a WAN address."""
    if held is not None or _state["wan_seen"] is None:
        _state["wan_seen"] = now
        return
    minutes = cfg["recovery"]["wan_reboot_min"]
    if minutes and time.ticks_diff(now, _state["wan_seen"]) >= minutes * 60000:
        say("no WAN address for %d minutes: rebooting (recovery.wan_reboot_min)" % minutes)
        machine.reset()
