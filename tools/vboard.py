#!/usr/bin/env python3
"""The virtual board: the natrouter firmware on the MicroPython unix port, wired
between Linux network namespaces (the topology: tools/topology.py).

    vboard.py up   [--prefix vb]   build the topology, start the board, print its REPL pty
    vboard.py up --empty           the same with a freshly flashed board: an empty flash and
                                   the REPL; install the firmware with tools/deploy.py
    vboard.py down [--prefix vb]   remove everything `up` made
    vboard.py demo [--prefix vb]   up, a short tour of real traffic, down
    vboard.py up|demo --board lwip_host
                                   the same firmware on the lwIP host board: Debian's lwIP
                                   and natlink in a host program (boards/lwip_host)

Needs root and `ip netns`. Never touches the root namespace's addresses or routes.
"""
import argparse
import atexit
import os
import subprocess
import sys
import time
from pathlib import Path

from topology import (FORWARD_TCP, LAN_GW, SRV, WAN, Topology, Unavailable, board_state,
                      check_host, handle_signals)
from topology import BOARD_NAMES, check_board


def demo(topo):
    import hashlib
    say = topo.log
    say("board REPL on %s" % topo.pty)
    for dst in (LAN_GW, WAN, SRV):
        say("ping %s from lan1: %s" % (dst, "ok" if topo.ping(topo.lan1, dst, count=2) else "FAILED"))
    blob = topo.workdir / "www"
    blob.mkdir(exist_ok=True)
    data = os.urandom(4 << 20)
    (blob / "blob").write_bytes(data)
    with topo.http_server(blob, 8000):
        t = time.monotonic()
        size, digest = topo.fetch(topo.lan1, "http://%s:8000/blob" % SRV)
        dt = time.monotonic() - t
        same = digest == hashlib.sha256(data).hexdigest()
        say("HTTP download of %d bytes through NAT: %s, %.1f Mbit/s"
            % (size, "hash ok" if same else "HASH MISMATCH", size * 8 / dt / 1e6))
    udp = topo.serve(topo.srv, "udp", 7, "srv")
    say("UDP to %s:7 -> %s" % (SRV, topo.talk(topo.lan1, "udp", SRV, 7, ["hi"])))
    say("UDP to closed port %s:9 -> %s" % (SRV, topo.talk(topo.lan1, "udp", SRV, 9, ["hi"])))
    say("traceroute %s: %s" % (SRV, " -> ".join(topo.traceroute(topo.lan1, SRV))))
    fwd = topo.serve(topo.lan1, "tcp", 80, "lan1")
    say("port forward: srv -> %s:%d -> %s" % (WAN, FORWARD_TCP,
                                              topo.talk(topo.srv, "tcp", WAN, FORWARD_TCP, ["hi"])))
    say("unmapped WAN port: srv -> %s:9999 -> %s" % (WAN, topo.talk(topo.srv, "tcp", WAN, 9999, ["hi"])))
    say("--- the board, over mpremote ---")
    say(board_state(topo).rstrip())
    for p in (udp, fwd):
        p.terminate()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("up", "down", "demo"))
    ap.add_argument("--prefix", default="vb", help="namespace name prefix (default vb)")
    ap.add_argument("--board", choices=BOARD_NAMES, default="vboard",
                    help="up/demo: the board to run the firmware on (default vboard)")
    ap.add_argument("--empty", action="store_true",
                    help="up: no firmware on the board, only its REPL (then tools/deploy.py)")
    args = ap.parse_args(argv)
    if args.empty and args.command != "up":
        ap.error("--empty goes with `up`")
    try:
        check_host()
        if args.command != "down":
            check_board(args.board)
    except Unavailable as e:
        print("vboard: cannot run: %s" % e, file=sys.stderr)
        return 2
    topo = Topology(args.prefix, board=args.board)
    if args.command == "down":
        topo.down()
        print("removed %s-*" % args.prefix)
        return 0

    handle_signals()
    if topo.exists():
        print("vboard: %s-* exists already; run `vboard.py down --prefix %s`" % (args.prefix, args.prefix),
              file=sys.stderr)
        return 1
    atexit.register(topo.down)  # whatever happens before the board runs (Ctrl-C, SIGTERM)
    try:
        pty = topo.up(empty=args.empty)
        if args.command == "demo":
            demo(topo)
            return 0
        atexit.unregister(topo.down)  # up: leave it running
        if args.empty:
            print("empty board in %s; REPL: %s (flash: %s)" % (topo.rtr, pty, topo.flash))
            print("  %s %s --port %s --board vboard" % (sys.executable, Path(__file__).with_name("deploy.py"), pty))
            print("  mpremote connect %s resume repl" % pty)
        else:
            print("board running in %s; REPL: %s (boot messages: %s)" % (topo.rtr, pty, topo.workdir / "console.log"))
            print("  mpremote connect %s resume exec \"import router; print(router.running.counters())\"" % pty)
        print("  ip netns exec %s ping %s" % (topo.lan1, SRV))
        print("  %s down --prefix %s" % (sys.argv[0], args.prefix))
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print("vboard: %s failed: %s" % (args.command, e), file=sys.stderr)
        return 1
    finally:
        if args.command == "demo":
            topo.down()
            atexit.unregister(topo.down)


if __name__ == "__main__":
    sys.exit(main())
