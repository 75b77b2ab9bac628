#!/usr/bin/env python3
"""Where the emulated ESP32's instructions go, per packet of a known flow.

    qemu_profile.py [--prefix ep] [--packets 1000] [--top 25]

Boots the emulated board (tools/qemu.py) under -icount with QEMU's TCG plugin
tools/insnprof.c, which counts the guest instructions of every translated block between
two calls of gc.mem_free() (the marker), and measures three windows:

  traffic   a UDP flow from the LAN host to the server, --packets datagrams (the first
            opens the flow; the rest are a known flow's), minus an idle window as long:
            the C layers a packet crosses besides the router (natlink, lwIP, drivers);
  step      the router's step on the board with in-memory links (tools/stepbench.py),
            --packets packets, minus the same loop with the links alone;
  translate parse + translate of a known flow's packet, minus the restore of the packet.

Each block is mapped to the object file it was linked from (the image's linker map):
natlink's C, lwIP and its PPP, the Ethernet driver, MicroPython's VM and runtime, the
port, FreeRTOS, the ESP32's ROM; blocks outside the image are the firmware's viper and
native code, loaded at run time. Needs what tools/qemu.py needs, and a QEMU built with
plugins (--enable-plugins), gcc and glib's headers for the plugin.
"""
import argparse
import bisect
import re
import subprocess
import sys
import time
from collections import defaultdict

import qemu
from hostenv import ROOT, sh
from topology import LAN1, SRV, handle_signals

PLUGIN_SRC = ROOT / "tools" / "insnprof.c"
PLUGIN = ROOT / "build" / "qemu" / "insnprof.so"
MARK = "gc_mem_free"        # py/modgc.c: called only by gc.mem_free()
STREAM_RATE = 100           # datagrams a second: the emulated board keeps up

# (group, pattern on the object file's path), first match wins
GROUPS = (("natlink (C)", r"natlink"),
          ("lwIP PPP", r"liblwip\.a\((ppp|pppos|lcp|ipcp|fsm|auth|magic|vj)\w*\.c"),
          ("lwIP", r"liblwip\.a|lwip"),
          ("Ethernet driver", r"libesp_eth\.a"),
          ("esp_netif", r"libesp_netif\.a"),
          ("MicroPython VM (bytecode)", r"/(vm|bc)\.c\.obj"),
          ("MicroPython native glue", r"/(nativeglue|objfun)\.c\.obj"),
          ("MicroPython GC", r"/gc\.c\.obj"),
          ("MicroPython runtime", r"libmain\.a\(\w+\.c\.obj\)|/py/"),
          ("MicroPython ESP32 port", r"ports/esp32|libmain\.a"),
          ("FreeRTOS", r"libfreertos\.a"),
          ("UART driver", r"uart"),
          ("libc", r"libc\.a|libnewlib|libgcc|libm\.a"))


PACKET_LAYERS = ("natlink (C)", "lwIP PPP", "lwIP", "Ethernet driver", "esp_netif",
                 "UART driver")


def build_plugin():
    if PLUGIN.exists() and PLUGIN.stat().st_mtime >= PLUGIN_SRC.stat().st_mtime:
        return PLUGIN
    PLUGIN.parent.mkdir(parents=True, exist_ok=True)
    glib = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"], capture_output=True,
                          text=True, check=True).stdout.split()
    sh("gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-I", qemu.sdk() / "qemu" / "include",
       PLUGIN_SRC, "-o", PLUGIN, *glib, timeout=120)
    return PLUGIN


class Image:
    """The image's code, from its linker map: address -> (object file, function)."""

    def __init__(self, map_path):
        starts, ends, objs, names = [], [], [], []
        section = obj = None
        line_re = re.compile(r"^\s*(\S+)?\s+0x([0-9a-f]{8})\s+0x([0-9a-f]+)\s+(\S+)\s*$")
        sym_re = re.compile(r"^\s+0x([0-9a-f]{8})\s+([A-Za-z_]\w*)\s*$")
        for line in open(map_path, errors="replace"):
            if line.startswith(" .") and len(line.split()) == 1:
                section = line.split()[0]
                continue
            m = line_re.match(line)
            if m and m.group(4).endswith((".obj", ".o", ".obj)", ".o)")):
                addr, size = int(m.group(2), 16), int(m.group(3), 16)
                name = m.group(1) or section or ""
                if 0x40000000 <= addr < 0x41000000 and size:
                    obj = m.group(4)
                    starts.append(addr)
                    ends.append(addr + size)
                    objs.append(obj)
                    base = name.split(".")[-1]
                    names.append(base if base not in ("", "text", "literal") else
                                 obj.rsplit("/", 1)[-1].rstrip(")"))
                continue
            m = sym_re.match(line)
            if m and starts and starts[-1] <= int(m.group(1), 16) < ends[-1]:
                names[-1] = m.group(2)
        order = sorted(range(len(starts)), key=starts.__getitem__)
        self.starts = [starts[i] for i in order]
        self.ends = [ends[i] for i in order]
        self.objs = [objs[i] for i in order]
        self.names = [names[i] for i in order]

    def where(self, pc):
        """(group, function) of a guest pc."""
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.ends[i]:
            for group, pattern in GROUPS:
                if re.search(pattern, self.objs[i]):
                    return group, self.names[i]
            return "other ESP-IDF", self.names[i]
        if pc < 0x40070000:
            return "ESP32 ROM", "rom@%x" % pc
        return "viper/native code (the firmware)", "native@%x" % (pc & ~0xFF)


def windows(path):
    """The counts between marks: [{pc: instructions}] (the first, boot until the first
    mark, included)."""
    out, cur = [], defaultdict(int)
    for line in open(path):
        if line.startswith("--"):
            out.append(cur)
            cur = defaultdict(int)
            continue
        pc, n, execs = line.split()
        cur[int(pc, 16)] += int(n) * int(execs)
    return out


def attribute(image, counts):
    groups, funcs = defaultdict(int), defaultdict(int)
    for pc, n in counts.items():
        group, name = image.where(pc)
        groups[group] += n
        funcs[(group, name)] += n
    return groups, funcs


def minus(a, b):
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}


def report(title, image, window, base, packets, top, only=None):
    """only: the groups to count (the rest left out, with their functions)."""
    g1, f1 = attribute(image, window)
    g0, f0 = attribute(image, base)
    groups, funcs = minus(g1, g0), minus(f1, f0)
    if only:
        groups = {g: n for g, n in groups.items() if g in only}
        funcs = {k: n for k, n in funcs.items() if k[0] in only}
    total = sum(groups.values())
    print("\n%s: %d instructions a packet (%d packets)" % (title, round(total / packets), packets))
    for g, n in sorted(groups.items(), key=lambda kv: -kv[1]):
        if abs(n) >= packets:
            print("  %-36s %8d" % (g, round(n / packets)))
    print("  top functions:")
    for (g, name), n in sorted(funcs.items(), key=lambda kv: -kv[1])[:top]:
        print("    %-40s %-28s %7d" % (name, g, round(n / packets)))
    return round(total / packets), {g: round(n / packets) for g, n in groups.items()}


STEP = """\
import gc
import nat
from forward.datapath import drain
from forward.router import Router
from manage import config
cfg = config.validate(config.defaults())[0]
lan, wan = FeedLink(), FeedLink()
r = Router(cfg, lan, wan)
lan.load(tcp_packet(b'\\xc0\\xa8\\x04\\x02', b'\\xcb\\x00\\x71\\x05', 40000, 443))
lan.left = 1
r.poll()
path = r.datapath.lan
step_loop(drain, path, lan, 64)
gc.collect()
gc.mem_free()
step_loop(drain, path, lan, %(n)d)
gc.mem_free()
link_loop(lan, %(n)d)
gc.mem_free()
poll_loop(r, lan, %(n)d)
gc.mem_free()
link_poll_loop(lan, wan, %(n)d)
gc.mem_free()
t = nat.Table(tcp=64, udp=8, icmp=8)
p = nat.Packet()
out = tcp_packet(b'\\xc0\\xa8\\x04\\x02', b'\\xcb\\x00\\x71\\x05', 40000, 443)
p.parse(out)
t.add(p, nat.ip('198.51.100.2'), lambda: 40000)
buf = bytearray(len(out))
p.bind(buf)
from nat import core
gc.mem_free()
translate_loop(core.parse, core.translate_flow, p.fields, t.mems, t.heads, buf, out, len(out), %(n)d)
gc.mem_free()
restore_loop(buf, out, %(n)d)
gc.mem_free()
print(wan.sent)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="ep")
    ap.add_argument("--packets", type=int, default=1000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    why = qemu.unavailable()
    if why:
        print("qemu_profile: %s" % why, file=sys.stderr)
        return 1
    plugin = build_plugin()
    image = Image(qemu.BUILD / "micropython.map")
    mark = next(s for s, n in zip(image.starts, image.names) if n == MARK)
    out = qemu.BUILD / "profile.txt"
    topo = qemu.QemuTopology(args.prefix, icount=True, log=lambda *a: None,
                             plugin="%s,out=%s,mark=0x%x" % (plugin, out, mark))
    handle_signals()
    n = args.packets
    try:
        topo.up()
        sink = topo.popen(topo.srv, "socat", "-u", "UDP-RECV:9", "/dev/null")  # no ICMP back
        topo.exec_on_board("import gc; gc.mem_free()")   # the flow opens outside the windows
        topo.peer(topo.lan1, "udp_stream.py", 46000, SRV, 9, 1, 1, timeout=30)
        time.sleep(1)
        topo.exec_on_board("import gc; gc.mem_free()")
        t0 = time.monotonic()
        topo.peer(topo.lan1, "udp_stream.py", 46000, SRV, 9, n, STREAM_RATE, timeout=n + 60)
        time.sleep(2)
        topo.exec_on_board("import gc; gc.mem_free()")
        time.sleep(time.monotonic() - t0)               # an idle window as long
        topo.exec_on_board("import gc; gc.mem_free()")
        topo.exec_on_board(qemu.QUIET)
        src = (ROOT / "tools" / "stepbench.py").read_text()
        topo.exec_on_board(src + STEP % {"n": n}, timeout=3600)
        sink.terminate()
    finally:
        topo.down()
    w = windows(out)
    # w: boot, flow opened, traffic, idle, setup, step, link, poll, link poll, table,
    # translate, restore
    print("emulated ESP32, guest instructions (QEMU -icount, plugin tools/insnprof.c); "
          "LAN source %s, the image built with %s" % (LAN1, "the SDK's gcc"))
    # The idle loop's share varies from window to window by more than a packet's cost:
    # of the traffic window only the layers that run for packets alone are counted.
    report("traffic (UDP, LAN -> WAN, a known flow): the C layers around the router", image,
           w[2], w[3], n, args.top, only=PACKET_LAYERS)
    report("router step, batches of 32 (in-memory links), the links alone subtracted", image,
           w[5], w[6], n, args.top)
    report("router step, one packet per poll(), the links alone subtracted", image, w[7],
           w[8], n, args.top)
    report("parse + translate_flow, the restore subtracted", image, w[10], w[11], n, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
