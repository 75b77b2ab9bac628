#!/usr/bin/env python3
# The engine benchmark (never asserted by tests). One script for CPython and the
# MicroPython unix port:
#
#     python tools/bench.py [--rounds 15] [--budget-ms 2] [--sweeps 3] [--heapsize 8M]
#         runs here on CPython, then itself under .venv/bin/micropython (MICROPYPATH=
#         firmware:tools), and prints both runtimes' figures in one report;
#     micropython tools/bench.py --here    (or python tools/bench.py --here)
#         this runtime only.
#
# In the same run, for the engine (its fast core, and its pure-Python path beside it)
# and for tools/dictnat.py (the same contract written the plain way, a dict per
# protocol): microseconds per translated packet (parse + translate) of an established
# TCP flow in a full Table(tcp=1024, udp=1024, icmp=1024), 40 B and 1500 B; microseconds
# per add; bytes per flow. Each timed packet is restored from a preallocated copy by
# slice assignment first (TTL goes down on every translation) and a restore-only loop
# is subtracted. The fastest of N rounds, over several sweeps of the whole benchmark.
#
# Then the router's whole forwarding step without real I/O (firmware/forward/router.py on the
# runtime's fast core): links in memory that hand out a packet of a known flow and
# swallow what is sent, engine and screen included; microseconds per packet when the
# loop drains a batch (as under load) and when each poll finds one packet. The targets
# are the unix port's: CPython speed is not one.
import gc
import struct
import sys

UPY = sys.implementation.name == "micropython"
if not UPY:
    import os
    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for sub in ("tools", "firmware"):
        if os.path.join(ROOT, sub) not in sys.path:
            sys.path.insert(0, os.path.join(ROOT, sub))

import dictnat  # noqa: E402  (after the path is set, on CPython)
import stepbench  # noqa: E402
import nat  # noqa: E402
from nat import core  # noqa: E402

CAP = 1024                       # flows per protocol: Table(tcp=CAP, udp=CAP, icmp=CAP)
FLOWS = 3 * CAP
SIZES = (40, 1500)
XL = nat.ip("203.0.113.1")
FIRST_XL_PORT = 20000            # flow i of the fill is translated to FIRST_XL_PORT + i
ADDS = 256                       # adds per round

TARGET_US = 1.0                  # per translated packet, unix port, engine's fast core
TARGET_STEP_US = 2.0             # the router's forwarding step, unix port
TARGET_BYTES = 48                # per flow, engine
STEP_BATCH = stepbench.BATCH
RULES = 32  # firewall rules loaded (filter/rules.py's most): a known flow never meets them
STEP_RULES = "router step, batch of %%d, %d rules" % RULES
POLL_RULES = "router step, 1 per poll(), %d rules" % RULES
STEP_CAPTURE = "router step, capture on (batch %d)"   # each packet kept twice (in, out)

if UPY:
    from time import ticks_us, ticks_diff

    def now():
        return ticks_us()

    def since(t0):
        return ticks_diff(ticks_us(), t0)  # µs
else:
    from time import perf_counter_ns

    def now():
        return perf_counter_ns()

    def since(t0):
        return (perf_counter_ns() - t0) / 1000.0


# ---- packets, built here with dictnat's checksum (whole-packet sums, RFC 1071)

def inside(i):
    return nat.ip("192.168.%d.%d" % (4 + i // 250, 2 + i % 250))


def remote(i):
    return nat.ip("198.51.%d.%d" % (100 + i // 250, 1 + i % 250))


def ipv4(proto, src, dst, l4, size):
    """A size-byte IPv4 packet: header, the transport header l4, a patterned payload."""
    b = bytearray(size)
    for i in range(20 + len(l4), size):
        b[i] = i & 0xFF
    struct.pack_into("!BBHHHBBHII", b, 0, 0x45, 0, size, 1, 0x4000, 64, proto, 0, src, dst)
    struct.pack_into("!H", b, 10, 0xFFFF ^ dictnat.ones_sum(b, 0, 20))
    b[20:20 + len(l4)] = l4
    seg = size - 20
    extra = 0 if proto == dictnat.ICMP else dictnat.pseudo_sum(src, dst, proto, seg)
    at = 20 + dictnat.CHECKSUM_AT[proto]
    struct.pack_into("!H", b, at, 0xFFFF ^ dictnat.ones_sum(b, 20, seg, extra))
    return b


def tcp(src, dst, sport, dport, size=40):
    return ipv4(dictnat.TCP, src, dst, struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50,
                                                   0x18, 8192, 0, 0), size)


def udp(src, dst, sport, dport, size=36):
    return ipv4(dictnat.UDP, src, dst, struct.pack("!HHHH", sport, dport, size - 20, 0), size)


def echo(src, dst, ident, size=36):
    return ipv4(dictnat.ICMP, src, dst, struct.pack("!BBHHH", 8, 0, 0, ident, 1), size)


class Ports:
    """port_gen for add: consecutive ports, wrapping within 1024..65535."""

    def __init__(self, first):
        self.next = first

    def __call__(self):
        port = self.next
        self.next = port + 1 if port < 65535 else 1024
        return port


# ---- the implementations

def implementations():
    """(label, Packet factory, Table factory) for each implementation on this runtime."""
    found = [("engine " + core.NAME, nat.Packet, nat.Table)]
    if core.NAME != "python":
        try:
            nat.Table(tcp=1, udp=1, icmp=1, pure=True)
            found.append(("engine python", lambda: nat.Packet(pure=True),
                          lambda **kw: nat.Table(pure=True, **kw)))
        except TypeError:
            pass  # no switch for the pure-Python path
    found.append(("dictnat", dictnat.Packet, dictnat.Table))
    return found


def fill(table, p):
    """CAP flows of each protocol; flow i is translated to FIRST_XL_PORT + i."""
    for builders in ((lambda i: tcp(inside(i), remote(i), 40000 + i % 20000, 443)),
                     (lambda i: udp(inside(i), remote(i), 40000 + i % 20000, 53)),
                     (lambda i: echo(inside(i), remote(i), 1 + i))):
        gen = Ports(FIRST_XL_PORT)
        for i in range(CAP):
            if i % 64 == 0:
                gc.collect()  # else the first collection finds the flows strewn over the heap
            p.parse(builders(i))
            status = table.add(p, XL, gen)
            if status != 0:
                raise RuntimeError("fill: add returned %d" % status)


def heap_used():
    gc.collect()
    if UPY:
        return -gc.mem_free()
    import tracemalloc
    return tracemalloc.get_traced_memory()[0]


def bytes_per_flow(make_packet, make_table):
    """(bytes per flow once constructed, once filled) for Table(CAP, CAP, CAP)."""
    if not UPY:
        import tracemalloc
        tracemalloc.start()
    p = make_packet()
    make_table(tcp=1, udp=1, icmp=1)  # imports and first-use allocations, outside the count
    before = heap_used()
    t = make_table(tcp=CAP, udp=CAP, icmp=CAP)
    built = heap_used()
    fill(t, p)
    filled = heap_used()
    if not UPY:
        tracemalloc.stop()
    return (built - before) / FLOWS, (filled - before) / FLOWS


# ---- timing
# The loops are written out one by one on purpose: a baseline loop must be the timed
# loop minus the calls it accounts for, with no flag or indirection in the timed one.

def translate_loop(p, t, pkts, iters):
    t0 = now()
    for _ in range(iters):
        for buf, orig, n in pkts:
            buf[:] = orig
            p.parse(buf, n)
            t.translate(p)
    return since(t0)


def parse_alone_loop(p, t, pkts, iters):
    t0 = now()
    for _ in range(iters):
        for buf, orig, n in pkts:
            buf[:] = orig
            p.parse(buf, n)
    return since(t0)


def restore_loop(p, t, pkts, iters):
    t0 = now()
    for _ in range(iters):
        for buf, orig, n in pkts:
            buf[:] = orig
    return since(t0)


def add_loop(p, t, buf, gen, iters, sport):
    t0 = now()
    for i in range(iters):
        struct.pack_into("!H", buf, 20, sport + i)
        p.parse(buf, 40)
        t.add(p, XL, gen)
    return since(t0)


def parse_loop(p, t, buf, gen, iters, sport):
    t0 = now()
    for i in range(iters):
        struct.pack_into("!H", buf, 20, sport + i)
        p.parse(buf, 40)
    return since(t0)


def best(rounds, *runs):
    """The fastest time of each run (a callable timing itself) over rounds rounds; the
    runs take turns, so a busy spell of the machine hits them alike."""
    fastest = [None] * len(runs)
    for _ in range(rounds):
        for i in range(len(runs)):
            gc.collect()
            us = runs[i]()
            if fastest[i] is None or us < fastest[i]:
                fastest[i] = us
    return fastest


def iterations(p, t, pkts, budget_us):
    """Loop iterations that take about budget_us."""
    iters = 8
    while True:
        us = translate_loop(p, t, pkts, iters)
        if us >= budget_us / 4 or iters >= 1 << 20:
            return max(8, int(iters * budget_us / max(us, 1)))
        iters *= 4


def flow_packets(i, size):
    """Flow i's outbound packet and the far end's reply to its translation."""
    return (tcp(inside(i), remote(i), 40000 + i, 443, size),
            tcp(remote(i), XL, 443, FIRST_XL_PORT + i, size))


def translations(p, t, pkts):
    """Each packet of pkts translated once: (statuses, resulting bytes)."""
    out = []
    for buf, orig, n in pkts:
        buf[:] = orig
        p.parse(buf, n)
        out.append((t.translate(p), bytes(buf)))
    return out


class Sweeps:
    """Fastest raw times, kept over several sweeps of the whole benchmark (a busy spell of
    the machine can outlast one sweep's rounds), and the figures derived from them."""

    def __init__(self):
        self.fastest = {}   # (row, label, part) -> µs
        self.iters = {}     # (row, label) -> loop iterations, fixed in the first sweep
        self.figures = {}   # row -> {label: (part, part subtracted, divisor) or a value}

    def keep(self, row, label, parts, times, divisor):
        for part, us in zip(parts, times):
            key = (row, label, part)
            if key not in self.fastest or us < self.fastest[key]:
                self.fastest[key] = us
        self.figures.setdefault(row, {})[label] = (parts[-1], parts[0], divisor)

    def results(self):
        out = {}
        for row, cells in self.figures.items():
            for label, cell in cells.items():
                if isinstance(cell, tuple):
                    part, base, divisor = cell
                    cell = (self.fastest[(row, label, part)]
                            - self.fastest[(row, label, base)]) / divisor
                out.setdefault(row, {})[label] = cell
        return out


def measure(label, make_packet, make_table, rounds, budget_us, sweeps, outputs):
    p = make_packet()
    t = make_table(tcp=CAP, udp=CAP, icmp=CAP)
    fill(t, p)
    for size in SIZES:
        a_out, a_in = flow_packets(CAP // 2, size)
        b_out, b_in = flow_packets(CAP // 3, size)
        patterns = (("TCP %d B, one flow (out, reply)" % size, (a_out, a_in)),
                    ("TCP %d B, two flows interleaved" % size, (a_out, b_out, a_in, b_in)))
        for row, packets in patterns:
            pkts = tuple((bytearray(len(x)), x, len(x)) for x in packets)
            done = translations(p, t, pkts)
            outputs.setdefault(row, []).append((label, done))
            if any(status for status, _ in done):
                sweeps.figures.setdefault(row, {})[label] = None
                continue
            if (row, label) not in sweeps.iters:
                sweeps.iters[(row, label)] = iterations(p, t, pkts, budget_us)
            iters = sweeps.iters[(row, label)]
            times = best(rounds, lambda: restore_loop(p, t, pkts, iters),
                         lambda: translate_loop(p, t, pkts, iters),
                         lambda: parse_alone_loop(p, t, pkts, iters))
            sweeps.keep(row, label, ("restore", "translate"), times[:2], iters * len(pkts))
            if len(packets) == 2:
                sweeps.keep("  of which parse, %d B" % size, label, ("restore", "parse"),
                            (times[0], times[2]), iters * len(pkts))
    # add: each one a new flow (a new source port), the parse subtracted.
    buf = bytearray(tcp(inside(7), remote(7), 1024, 80))
    gen = Ports(FIRST_XL_PORT + CAP)
    sports = [1024]

    def first_sport():  # of the next ADDS flows
        sports[0] = 1024 + (sports[0] - 1024 + ADDS) % (65536 - 1024 - ADDS)
        return sports[0]

    parse, full = best(rounds, lambda: parse_loop(p, t, buf, gen, ADDS, first_sport()),
                       lambda: add_loop(p, t, buf, gen, ADDS, first_sport()))
    sweeps.keep("add, table full (reuses LRU flow)", label, ("parse", "add"), (parse, full), ADDS)
    t = None
    # into a table with room: a new table each round, made before the loop starts its clock.
    room, = best(rounds, lambda: add_loop(p, make_table(tcp=CAP, udp=CAP, icmp=CAP), buf, gen,
                                          ADDS, first_sport()))
    sweeps.keep("add, table with room", label, ("parse", "add"), (parse, room), ADDS)
    built, filled = bytes_per_flow(make_packet, make_table)
    sweeps.figures.setdefault("bytes per flow, table constructed", {})[label] = built
    sweeps.figures.setdefault("bytes per flow, table full", {})[label] = filled


def run_here(rounds, budget_us, n_sweeps):
    impls = implementations()
    sweeps, outputs = Sweeps(), {}
    for sweep in range(n_sweeps):
        for label, make_packet, make_table in impls:
            measure(label, make_packet, make_table, rounds, budget_us, sweeps,
                    outputs if sweep == 0 else {})
            gc.collect()
    warnings = []
    for row, runs in outputs.items():  # every implementation must write the same bytes
        ref_label, ref = runs[-1]      # dictnat's, which the tests check against scapy
        for label, done in runs[:-1]:
            if done != ref:
                warnings.append("%s: %s output differs from %s" % (row, label, ref_label))
    batched, single, link, link_single = stepbench.router_step(rounds, n_sweeps)
    sweeps.figures["router step, batch of %d" % STEP_BATCH] = {impls[0][0]: batched}
    sweeps.figures["  of which the in-memory link"] = {impls[0][0]: link}
    sweeps.figures["router step, one packet per poll()"] = {impls[0][0]: single}
    sweeps.figures["  of which the in-memory links"] = {impls[0][0]: link_single}
    batched, single = stepbench.router_step(rounds, n_sweeps, rules=RULES)[:2]
    sweeps.figures[STEP_RULES % STEP_BATCH] = {impls[0][0]: batched}
    sweeps.figures[POLL_RULES] = {impls[0][0]: single}
    sweeps.figures[STEP_CAPTURE % STEP_BATCH] = {
        impls[0][0]: stepbench.capture_step(rounds, n_sweeps)}
    heap = gc.mem_free() + gc.mem_alloc() if UPY else None
    if UPY:
        name = "MicroPython %d.%d.%d %s %d-bit" % (
            sys.implementation.version[:3] + (sys.platform, 64 if sys.maxsize > 2**32 else 32))
    else:
        name = "CPython %d.%d.%d" % tuple(sys.version_info[:3])
    return {"runtime": name, "upy": UPY, "impls": [x[0] for x in impls],
            "rows": sweeps.results(), "warnings": warnings, "rounds": rounds, "sweeps": n_sweeps,
            "heap": heap}


# ---- the report

ROWS_ORDER = ["TCP 40 B, one flow (out, reply)", "  of which parse, 40 B",
              "TCP 1500 B, one flow (out, reply)", "  of which parse, 1500 B",
              "TCP 40 B, two flows interleaved", "TCP 1500 B, two flows interleaved",
              "add, table with room", "add, table full (reuses LRU flow)",
              "bytes per flow, table constructed", "bytes per flow, table full",
              "router step, batch of %d" % STEP_BATCH, "  of which the in-memory link",
              "router step, one packet per poll()", "  of which the in-memory links",
              STEP_RULES % STEP_BATCH, POLL_RULES, STEP_CAPTURE % STEP_BATCH]


def fmt(v, width=9):
    if v is None:
        return "%*s" % (width, "-")
    return "%*.*f" % (width, 2 if v < 100 else 0, v)


def print_report(runs):
    print("natrouter engine benchmark: Table(tcp=%d, udp=%d, icmp=%d), full; fastest of %d sweeps"
          " of %d rounds" % (CAP, CAP, CAP, runs[0]["sweeps"], runs[0]["rounds"]))
    print("µs per translated packet = parse + translate, the restore of the packet subtracted")
    for run in runs:
        print("")
        print("%s" % run["runtime"])
        print("%-38s" % "" + "".join("%15s" % label for label in run["impls"]))
        for row in ROWS_ORDER:
            unit = "B " if row.startswith("bytes") else "µs"
            cells = run["rows"].get(row, {})
            print("%-36s%s" % (row, unit) + "".join(
                "%15s" % fmt(cells.get(label)) for label in run["impls"]))
        for w in run["warnings"]:
            print("WARNING: " + w)
        if not run["warnings"]:
            print("every timed packet came out byte for byte the same from each implementation")
        if run["upy"]:
            print("dictnat allocates per packet, so on MicroPython its times depend on how its\n"
                  "flows fragment the heap (the allocator scans from the first free block for\n"
                  "every multi-block object): they vary from run to run, and its parse share\n"
                  "can exceed its whole. Heap: %d KiB." % (run["heap"] // 1024))
    print("")
    print("targets")
    for text, value, limit in targets(runs):
        status = "-" if value is None or limit is None else (
            "PASS" if value <= limit else "MISS")
        print("  %-62s %9s  %s" % (text, fmt(value), status))


def targets(runs):
    """(description, measured, limit) for each target the runs can judge: the unix
    port's (CPython speed is not a target)."""
    out = []
    for run in runs:
        if not run["upy"]:
            continue
        engine = run["impls"][0]
        rows = run["rows"]
        for size in SIZES:
            row = rows.get("TCP %d B, one flow (out, reply)" % size, {})
            out.append(("unix port, %s: about %.0f µs per translated packet, %d B"
                        % (engine, TARGET_US, size), row.get(engine), TARGET_US * 1.25))
        out.append(("unix port, router step (batch of %d), no I/O: <= %.0f µs"
                    % (STEP_BATCH, TARGET_STEP_US),
                    rows.get("router step, batch of %d" % STEP_BATCH, {}).get(engine),
                    TARGET_STEP_US))
        out.append(("unix port, router step (one packet per poll()), no I/O: <= %.0f µs"
                    % TARGET_STEP_US,
                    rows.get("router step, one packet per poll()", {}).get(engine),
                    TARGET_STEP_US))
        base = rows.get("router step, batch of %d" % STEP_BATCH, {}).get(engine)
        out.append(("unix port, router step with %d rules: within 10%% of without" % RULES,
                    rows.get(STEP_RULES % STEP_BATCH, {}).get(engine),
                    None if base is None else base * 1.1))
        out.append(("unix port, %s: <= %d bytes per flow" % (engine, TARGET_BYTES),
                    rows.get("bytes per flow, table constructed", {}).get(engine),
                    TARGET_BYTES))
    return out


# ---- entry point

def option(args, name, default):
    if name in args:
        return args[args.index(name) + 1]
    return default


def unix_port(args, rounds, budget_ms, n_sweeps):
    """This script's results on the unix port, or None (with the reason printed)."""
    import json
    import shutil
    import subprocess
    exe = os.path.join(ROOT, ".venv", "bin", "micropython")
    if not os.path.exists(exe):
        exe = shutil.which("micropython")
    if exe is None:
        print("the MicroPython unix port is not installed (make setup): CPython only")
        return None
    env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "firmware") + ":" +
               os.path.join(ROOT, "tools"))
    heap = option(args, "--heapsize", "8M")
    proc = subprocess.run([exe, "-X", "heapsize=" + heap, os.path.abspath(__file__), "--here",
                           "--json", "--rounds", str(rounds), "--budget-ms", str(budget_ms),
                           "--sweeps", str(n_sweeps)],
                          env=env, capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON "):])
    print("the unix port run failed (exit %d):\n%s%s" % (proc.returncode, proc.stdout,
                                                         proc.stderr))
    return None


def main(args):
    rounds = int(option(args, "--rounds", "15"))
    budget_ms = float(option(args, "--budget-ms", "2"))
    n_sweeps = int(option(args, "--sweeps", "3"))
    here = run_here(rounds, budget_ms * 1000, n_sweeps)
    if "--json" in args:
        import json
        print("BENCH-JSON " + json.dumps(here))
        return
    runs = [here]
    if not UPY and "--here" not in args:
        there = unix_port(args, rounds, budget_ms, n_sweeps)
        if there is not None:
            runs.append(there)
    print_report(runs)


if __name__ == "__main__":
    main(sys.argv[1:])
