#!/usr/bin/env python3
"""The emulated ESP32 (boards/ESP32_QEMU): its image, built from this repository with an
ESP32 SDK, booted in Espressif's QEMU between the virtual board's namespaces.

    qemu.py image                  build the image (tools/build.py ESP32_QEMU) and the
                                   flash and eFuse files QEMU boots from
    qemu.py up [--prefix eq] [--icount]
                                   the namespaces, the board booted; prints its REPL pty
    qemu.py down [--prefix eq]     remove everything `up` made
    qemu.py bench [--prefix eb]    up with --icount, the figures below, down:
                                   the heaps (MicroPython's, ESP-IDF's) with the router
                                   up; the router step and the engine's translate run on
                                   the board (tools/stepbench.py), in guest instructions

    <p>-lan1 tun0 192.168.4.2 ── PPP (ppp_peer.py) ── UART2 ┌ QEMU in <p>-rtr ┐ open_eth ── twan ═ wan ── <p>-isp ── <p>-srv
                                                  192.168.4.1 (the firmware)  DHCP lease (dnsmasq) 198.51.100.2

The SDK is a folder (ESP32_SDK, else ../shared/esp32-sdk beside the repository) holding
`env.sh`, which a shell sources to build (ESP-IDF, the xtensa toolchain, MICROPY_DIR and
whatever else that SDK needs), and `qemu/bin/qemu-system-xtensa`. README: "The emulated
ESP32". The REPL is UART0 on a pty (mpremote connect <pty> resume ...); the LAN host's
end of the PPP link is tools/peers/ppp_peer.py on UART2's pty, because the kernel here has
no PPP (so no pppd); the WAN is QEMU's OpenCores NIC on a TAP joined to the `wan` veth.
--icount runs QEMU with -icount shift=0: one nanosecond of guest time per instruction,
so time.ticks_us() on the board counts thousands of instructions.
"""
import argparse
import binascii
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hostenv import ROOT, sh
from topology import (ISP_WAN, LAN1, LAN_GW, WAN, Console, Topology, Unavailable, check_host,
                      handle_signals)

BOARD = "ESP32_QEMU"
BUILD = ROOT / "build" / "esp32" / BOARD
TAP = "twan"
IMAGE_SOURCES = ("firmware", "boards/ESP32_QEMU", "boards/esp32_common", "boards/natlink")
BOOT_TIMEOUT = 120      # seconds from QEMU's start to the firmware forwarding
PTY = re.compile(r"char device redirected to (/dev/pts/\d+) \(label (\w+)\)")


def sdk():
    """The ESP32 SDK's folder, or None."""
    for path in (os.environ.get("ESP32_SDK"), ROOT.parent / "shared" / "esp32-sdk"):
        if path and (Path(path) / "env.sh").exists():
            return Path(path)
    return None


def qemu_binary():
    root = sdk()
    exe = root / "qemu" / "bin" / "qemu-system-xtensa" if root else None
    return exe if exe and exe.exists() else None


def unavailable():
    """Why the emulated board cannot run here, or None."""
    if sdk() is None:
        return ("no ESP32 SDK: set ESP32_SDK to one (a folder with env.sh and "
                "qemu/bin/qemu-system-xtensa; README: The emulated ESP32), or unpack it at %s"
                % (ROOT.parent / "shared" / "esp32-sdk"))
    if qemu_binary() is None:
        return "the ESP32 SDK at %s has no qemu/bin/qemu-system-xtensa" % sdk()
    try:
        check_host()
    except Unavailable as e:
        return str(e)
    for tool in ("tc", "dnsmasq"):
        if shutil.which(tool) is None:
            return "`%s` is not installed (make setup)" % tool
    return None


def _in_sdk(*cmd, timeout):
    """A command run with the SDK's environment (a shell that sources its env.sh)."""
    script = ". %s/env.sh && exec \"$@\"" % sdk()
    return subprocess.run(["bash", "-c", script, "sdk"] + [str(c) for c in cmd], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def build_image(log=print):
    """Build (make: incremental) the board's image, then the 4 MB flash and the eFuse
    files QEMU boots from. Returns (flash.bin, efuse.bin)."""
    t0 = time.monotonic()
    proc = _in_sdk(sys.executable, ROOT / "tools" / "build.py", BOARD, "-j2", timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError("building %s failed:\n%s" % (BOARD, (proc.stdout + proc.stderr)[-4000:]))
    flash, efuse = BUILD / "flash.bin", BUILD / "efuse.bin"
    args = (BUILD / "flash_args").read_text().split()
    subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "merge-bin",
                    "--fill-flash-size", "4MB", "-o", str(flash)] + args,
                   cwd=BUILD, check=True, capture_output=True, timeout=120)
    efuse.write_bytes(default_efuse())
    log("image: %s (%.0f s)" % (flash, time.monotonic() - t0))
    return flash, efuse


def image_stale():
    """Whether the flash file is missing or older than a source frozen into the image."""
    flash = BUILD / "flash.bin"
    if not flash.exists():
        return True
    built = flash.stat().st_mtime
    return any(p.stat().st_mtime > built for d in IMAGE_SOURCES for p in (ROOT / d).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts)


def default_efuse():
    """The esp32 eFuse bytes `idf.py qemu` boots with (chip revision v3): from the SDK's
    ESP-IDF, tools/idf_py_actions/qemu_ext.py."""
    out = _in_sdk("sh", "-c", "cat \"$IDF_PATH/tools/idf_py_actions/qemu_ext.py\"", timeout=30)
    block = out.stdout.split("'esp32': QemuTarget(", 1)[1].split("binascii.unhexlify(", 1)[1]
    return binascii.unhexlify("".join(re.findall(r"'([0-9a-fA-F]+)'", block.split(")", 1)[0])))


class QemuTopology(Topology):
    BOARDS = (BOARD,)

    def __init__(self, prefix="eq", log=print, icount=False, plugin=None):
        super().__init__(prefix, log, board=BOARD)
        self.icount = icount
        self.plugin = plugin  # QEMU's -plugin argument (tools/qemu_profile.py)
        self.ppp_proc = None
        self.dhcp_proc = None
        self.ptys = {}

    def build(self):
        """The virtual board's namespaces, rewired: lan1's only link is PPP (tun0, made by
        ppp_peer.py), the WAN veth a wire to QEMU's TAP, a DHCP server on the ISP side."""
        super().build()
        sh("ip", "-n", self.lan1, "addr", "flush", "dev", "eth0")
        self.join_tap("wan", TAP)
        conf = self.workdir / "dnsmasq.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("port=0\ninterface=rtr\nbind-interfaces\nleasefile-ro\n"
                        "dhcp-range=%s,%s,255.255.255.0,1h\ndhcp-option=3,%s\n"
                        "dhcp-option=6,%s\n" % (WAN, WAN, ISP_WAN, ISP_WAN))
        self.dhcp_proc = self.popen(self.isp, "dnsmasq", "--no-daemon", "--conf-file=%s" % conf,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def install_flash(self, config=None):
        """A fresh copy of the image's flash (the board writes its filesystem there)."""
        if config is not None:
            raise ValueError("the emulated board boots with its defaults: change them at "
                             "the REPL (writing QEMU's flash takes seconds per kilobyte)")
        flash, efuse = BUILD / "flash.bin", BUILD / "efuse.bin"
        if image_stale():
            flash, efuse = build_image(self.log)
        self.erase_flash()
        shutil.copy(flash, self.flash / "flash.bin")
        shutil.copy(efuse, self.flash / "efuse.bin")

    def start_board(self, main=None, ready_timeout=BOOT_TIMEOUT, heapsize=None, empty=False):
        """QEMU in <p>-rtr, UART0 the REPL (self.pty), UART2 the LAN's PPP, with
        ppp_peer.py on it in <p>-lan1; ready when lan1 pings the board through PPP."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [qemu_binary(), "-M", "esp32", "-m", "4M", "-display", "none",
                "-monitor", "none",
                "-drive", "file=%s,if=mtd,format=raw" % (self.flash / "flash.bin"),
                "-drive", "file=%s,if=none,format=raw,id=efuse" % (self.flash / "efuse.bin"),
                "-global", "driver=nvram.esp32.efuse,property=drive,value=efuse",
                "-global", "driver=timer.esp32.timg,property=wdt_disable,value=true",
                "-nic", "tap,ifname=%s,script=no,downscript=no,model=open_eth" % TAP,
                "-serial", "pty", "-serial", "null", "-serial", "pty"]
        if self.icount:
            argv += ["-icount", "shift=0"]
        if self.plugin:
            argv += ["-plugin", self.plugin]
        log_path = self.workdir / "qemu.log"
        with open(log_path, "ab") as log:
            start = log.tell()
            self.board_proc = subprocess.Popen(["ip", "netns", "exec", self.rtr] + [str(a) for a in argv],
                                               stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                               start_new_session=True)
        deadline = time.monotonic() + 20
        while len(self.ptys) < 2 and time.monotonic() < deadline:
            if self.board_proc.poll() is not None:
                break
            text = log_path.read_bytes()[start:].decode(errors="replace")
            self.ptys = {label: dev for dev, label in PTY.findall(text)}
            time.sleep(0.05)
        if len(self.ptys) < 2:
            raise RuntimeError("QEMU did not start: %s" % log_path.read_text()[-2000:])
        if self.pty.is_symlink() or self.pty.exists():
            self.pty.unlink()
        self.pty.symlink_to(self.ptys["serial0"])
        self.console = Console(self.ptys["serial0"], self.workdir / "console.log")
        self.console.start()
        self.ppp_proc = self.peer_bg(self.lan1, "ppp_peer.py", self.ptys["serial2"], LAN1, LAN_GW,
                                     stdout=subprocess.DEVNULL)
        if self.icount:  # guest time runs behind (a nanosecond an instruction): slower
            ready_timeout *= 5
        deadline = time.monotonic() + ready_timeout
        self._wait_console(("natrouter:", ">>> "), deadline)
        if "natrouter:" not in self.console.text():
            # A fresh flash: the firmware is frozen in, its main.py goes onto the board's
            # filesystem as on a real board (tools/deploy.py), which then resets.
            with self.pty_released():
                sh(sys.executable, ROOT / "tools" / "deploy.py", "--port", self.pty, "--board",
                   BOARD, timeout=120)
        while time.monotonic() < deadline:
            if self.board_proc.poll() is not None:
                raise RuntimeError("QEMU exited (%d); console:\n%s" % (
                    self.board_proc.returncode, self.console.text()[-3000:]))
            if "natrouter: LAN" in self.console.text() and self.ping(self.lan1, LAN_GW):
                return str(self.pty)
            time.sleep(0.5)
        raise RuntimeError("the emulated board did not forward within %d s; console:\n%s"
                           % (ready_timeout, self.console.text()[-3000:]))

    def _wait_console(self, marks, deadline):
        while time.monotonic() < deadline:
            text = self.console.text()
            if any(m in text for m in marks):
                return text
            if self.board_proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the emulated board did not boot; console:\n%s"
                           % self.console.text()[-3000:])

    def stop_board(self):
        for proc in (self.ppp_proc,):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(5)
        self.ppp_proc = None
        super().stop_board()

    def _down(self):
        if self.dhcp_proc is not None and self.dhcp_proc.poll() is None:
            self.dhcp_proc.terminate()
            self.dhcp_proc.wait(5)
        super()._down()


# What the board reports of its memory, as a dict.
HEAP = """\
import gc, esp32
gc.collect()
print(repr({'mp_free': gc.mem_free(), 'mp_alloc': gc.mem_alloc(),
            'idf': [tuple(r) for r in esp32.idf_heap_info(esp32.HEAP_DATA)]}))
"""


def heap(topo):
    """MicroPython's heap (free, allocated) and ESP-IDF's data regions (total, free,
    largest free block, lowest free ever), read on the board."""
    return topo.eval_on_board(HEAP)


# Sent before a benchmark: the board's router and page stop (their threads would share
# the CPU, and compiling the benchmark on the board needs the heap they hold).
QUIET = """\
import gc, web
from manage.runner import runner
runner.stop()
web.stop()
gc.collect()
"""


def bench(topo, rounds=3):
    """On the board under -icount shift=0 (1 ns of guest time an instruction): guest
    instructions per packet of a known flow, for the engine's translate (40 and 1500
    bytes) and the router's step (batched, one packet per poll, the in-memory link's
    share; small tables: the cost per packet does not depend on their size). The board's
    own router stops meanwhile (its thread would share the CPU)."""
    topo.exec_on_board(QUIET)
    code = (ROOT / "tools" / "stepbench.py").read_text() + (
        "\nt40 = translate_cost(%d, 400, 40)\nt1500 = translate_cost(%d, 400, 1500)\n"
        "step = router_step(%d, 1, 2000, {'tcp': 64, 'udp': 16, 'icmp': 16})\n"
        "print(repr({'translate_40': t40, 'translate_1500': t1500, 'step_batched': step[0],"
        " 'step_one_per_poll': step[1], 'links_batched': step[2], 'links_one_per_poll': step[3]}))\n"
        % (rounds, rounds, rounds))
    us = topo.eval_on_board(code, timeout=1800)
    return {k: round(v * 1000) for k, v in us.items()}  # µs of guest time -> instructions


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("image", "up", "down", "bench"))
    ap.add_argument("--prefix", default="eq")
    ap.add_argument("--icount", action="store_true", help="up: QEMU with -icount shift=0")
    args = ap.parse_args(argv)
    why = unavailable() if args.command != "image" else (
        None if sdk() else "no ESP32 SDK (set ESP32_SDK)")
    if why and args.command != "down":
        print("qemu: %s" % why, file=sys.stderr)
        return 1
    if args.command == "image":
        build_image()
        return 0
    topo = QemuTopology(args.prefix, icount=args.icount or args.command == "bench")
    if args.command == "bench":
        handle_signals()
        try:
            topo.up()
            print("heap with the router up:", heap(topo))
            print("guest instructions per packet:", bench(topo))
        finally:
            topo.down()
        return 0
    if args.command == "down":
        topo.down()
        return 0
    handle_signals()
    try:
        topo.up()
    except BaseException:
        topo.down()
        raise
    print("emulated board up: REPL %s (mpremote connect %s resume repl); "
          "`qemu.py down --prefix %s` removes it" % (topo.pty, topo.pty, args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
