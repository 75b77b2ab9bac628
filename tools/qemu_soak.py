#!/usr/bin/env python3
"""Traffic through the emulated ESP32 for minutes, the router rebuilt every minute.

    qemu_soak.py [--prefix es] [--minutes 10] [--rate 100]

Boots the emulated board (tools/qemu.py) and streams UDP from the LAN host to the
server (--rate datagrams a second) while, once a minute, the REPL changes the TCP
table's size (180 and 192 flows by turns) and calls apply(): the router stops and a new
one starts (manage.api.apply, manage.runner.restart; the flow table's arrays reused when
they hold the new size). Each minute the stream must have crossed since the last apply(),
a ping must cross after it, and apply() must neither fail nor leave an error behind. Prints the heaps (MicroPython's,
ESP-IDF's free and largest free block, api.status()["memory"]) at the start, after
each apply() and at the end. Exit status 0 when every minute passed.
"""
import argparse
import ast
import sys
import time

import qemu
from topology import LAN1, SRV, handle_signals

# One minute's check on the board: what crossed since the last apply(), the other TCP
# table size, apply(), the memory after it. The result's line is marked, and waits for
# the page's thread to say where it listens again (web/service.py checks once a second):
# another thread's line would cut into it.
APPLY = """\
import gc, time
from manage import api
s = api.status()
size = %d if s["flows"]["tcp"][1] == %d else %d
api.change({"table.tcp": size})
r = api.apply()
time.sleep_ms(2500)
gc.collect()
t = api.status()
print("SOAK", repr((s["counters"]["translated_out"], size, r["restarted"], t["flows"]["tcp"][1],
                    t["last_error"], t["memory"])))
"""
STATUS = "import gc\nfrom manage import api\ngc.collect()\nprint('SOAK', repr(api.status()['memory']))"
SIZES = (180, 192)   # the TCP table, by turns (the board's default is 192)


def marked(topo, code, timeout=60):
    """What code printed after "SOAK " on the board, as a Python value."""
    out = topo.exec_on_board(code, timeout)
    return ast.literal_eval(next(ln for ln in out.splitlines() if ln.startswith("SOAK "))[5:])


def row(label, m):
    return ("%-10s heap free %7d used %7d | ESP-IDF free %7d largest %7d lowest %7d"
            % (label, m["heap_free"], m["heap_used"], m["idf_free"], m["idf_largest"],
               m["idf_min_free"]))


def soak(topo, minutes, rate, log=print, period=60):
    """Returns (rows, failures): the memory at each point, what went wrong. period: the
    seconds between two apply() (a "minute"; tests take shorter ones)."""
    failures = []
    rows = [("start", marked(topo, STATUS))]
    log(row(*rows[-1]))
    sink = topo.popen(topo.srv, "socat", "-u", "UDP-RECV:9", "/dev/null")
    stream = topo.peer_bg(topo.lan1, "udp_stream.py", 46001, SRV, 9, int(rate * period * minutes) + 1,
                          rate)
    try:
        t0 = time.monotonic()
        for minute in range(1, minutes + 1):
            time.sleep(max(0, t0 + period * minute - time.monotonic()))
            try:
                forwarded, size, restarted, cap, error, m = marked(
                    topo, APPLY % (SIZES[0], SIZES[1], SIZES[1]))
            except Exception as e:  # the REPL's traceback: apply() failed
                failures.append("minute %d: apply() failed: %s" % (minute, str(e)[-300:]))
                log(failures[-1])
                continue
            if not restarted or cap != size:
                failures.append("minute %d: apply() did not rebuild the table (%r, %r)"
                                % (minute, restarted, cap))
            if forwarded == 0:
                failures.append("minute %d: the stream did not cross since the last apply()"
                                % minute)
            if error:
                failures.append("minute %d: the router's last error: %s" % (minute, error))
            if not topo.ping(topo.lan1, SRV, count=3, wait=3):
                failures.append("minute %d: no ping crossed after apply()" % minute)
            rows.append(("minute %d" % minute, m))
            log(row(*rows[-1]))
    finally:
        stream.terminate()
        stream.wait(10)
        sink.terminate()
        sink.wait(10)
    try:
        rows.append(("end", marked(topo, STATUS)))
        log(row(*rows[-1]))
    except Exception as e:  # no router left to ask
        failures.append("at the end: %s" % str(e)[-300:])
    return rows, failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="es")
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--rate", type=float, default=100)
    args = ap.parse_args(argv)
    why = qemu.unavailable()
    if why:
        print("qemu_soak: %s" % why, file=sys.stderr)
        return 1
    topo = qemu.QemuTopology(args.prefix, log=lambda *a: None)
    handle_signals()
    try:
        topo.up()
        print("emulated ESP32, %d minutes of UDP %s -> %s at %g/s, apply() every minute; "
              "ESP-IDF reserve %d" % (args.minutes, LAN1, SRV, args.rate,
                                       marked(topo, STATUS)["idf_reserve"]))
        _, failures = soak(topo, args.minutes, args.rate)
    finally:
        topo.down()
    for f in failures:
        print("FAILED", f)
    print("every minute: apply() rebuilt the router, the stream crossed, a ping crossed"
          if not failures else "%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
