#!/usr/bin/env python3
"""The virtual board: the natrouter firmware on the MicroPython unix port, wired
between Linux network namespaces.

    vboard.py up   [--prefix vb]   build the topology, start the board, print its REPL pty
    vboard.py down [--prefix vb]   remove everything `up` made
    vboard.py demo [--prefix vb]   up, a short tour of real traffic, down

Topology (every namespace name starts with the prefix, so runs can coexist):

    <p>-lan1 eth0 192.168.4.2/24 ─┐
    <p>-lan2 eth0 192.168.4.3/24 ─┤ br0 in <p>-sw
                                  └─ lan ┌ <p>-rtr: the board ┐ wan ── rtr  <p>-isp  srv ── eth0 <p>-srv
                              192.168.4.1 (firmware)  198.51.100.2   198.51.100.1  203.0.113.1   203.0.113.10

The firmware owns 192.168.4.1 and 198.51.100.2 (raw sockets, its own ARP); the kernel
of <p>-rtr holds no address on `lan` or `wan`. <p>-isp forwards without NAT. IPv6 is
off everywhere, offloads are off on every veth, MTU 1500.

Needs root and `ip netns`. Never touches the root namespace's addresses or routes.
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARD = ROOT / "boards" / "vboard"

LAN_GW, LAN1, LAN2 = "192.168.4.1", "192.168.4.2", "192.168.4.3"
WAN, ISP_WAN, ISP_SRV, SRV = "198.51.100.2", "198.51.100.1", "203.0.113.1", "203.0.113.10"
FORWARD_TCP, FORWARD_UDP = 8080, 5353  # on WAN -> LAN1:80 / LAN1:5353

CONFIG = {
    "lan": {"addr": LAN_GW, "mask": "255.255.255.0"},
    "wan": {"addr": WAN, "mask": "255.255.255.0", "gateway": ISP_WAN},
    "forwards": [{"proto": "tcp", "port": FORWARD_TCP, "to": LAN1, "to_port": 80},
                 {"proto": "udp", "port": FORWARD_UDP, "to": LAN1, "to_port": 5353}],
    "mtu": 1500,
}

OFFLOADS = ("tso", "gso", "gro", "tx", "rx", "sg")


class Unavailable(RuntimeError):
    """This machine cannot run the virtual board (and why)."""


def micropython_binary():
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    venv = ROOT / ".venv" / "bin" / "micropython"
    return str(venv) if venv.exists() else shutil.which("micropython")


def check_host():
    """Raise Unavailable with the reason when the virtual board cannot run here."""
    if sys.platform != "linux":
        raise Unavailable("network namespaces need Linux")
    if os.geteuid() != 0:
        raise Unavailable("needs root (network namespaces, raw sockets)")
    for tool in ("ip", "ethtool", "socat"):
        if shutil.which(tool) is None:
            raise Unavailable("`%s` is not installed (make setup)" % tool)
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        raise Unavailable("`ip netns` does not work here")
    if micropython_binary() is None:
        raise Unavailable("the MicroPython unix port is not installed (make setup)")


def sh(*cmd, check=True, timeout=30, input=None):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(map(str, cmd)), proc.returncode,
                                                   (proc.stderr or proc.stdout).strip()))
    return proc


class Console:
    """Copies the board's console (its REPL pty) into a log file. The firmware's prints
    block once the pty's buffer is full and nobody reads it; this keeps it drained.
    Paused while mpremote owns the pty (two readers would split the bytes)."""

    def __init__(self, pty, log_path):
        self.pty = pty
        self.log_path = log_path
        self._thread = None
        self._stop = threading.Event()

    def start(self):
        fd = os.open(self.pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._stop.clear()
        self._thread = threading.Thread(target=self._copy, args=(fd,), daemon=True)
        self._thread.start()

    def _copy(self, fd):
        import select
        with open(self.log_path, "ab", buffering=0) as log:
            try:
                while not self._stop.is_set():
                    if select.select([fd], [], [], 0.1)[0]:
                        try:
                            log.write(os.read(fd, 65536))
                        except BlockingIOError:
                            pass
                        except OSError:  # the board went away
                            break
            finally:
                os.close(fd)

    def stop(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(2)
            self._thread = None

    def text(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


class Topology:
    def __init__(self, prefix="vb", log=print):
        self.prefix = prefix
        self.log = log
        for role in ("lan1", "lan2", "sw", "rtr", "isp", "srv"):
            setattr(self, role, "%s-%s" % (prefix, role))
        self.namespaces = (self.lan1, self.lan2, self.sw, self.rtr, self.isp, self.srv)
        self.workdir = Path(tempfile.gettempdir()) / ("vboard-" + prefix)
        self.flash = self.workdir / "flash"
        self.pty = self.workdir / "repl"
        self.board_proc = None
        self.console = None

    # ---- commands in namespaces ------------------------------------------------

    def run(self, ns, *cmd, **kw):
        return sh("ip", "netns", "exec", ns, *cmd, **kw)

    def popen(self, ns, *cmd, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        kw.setdefault("text", True)
        return subprocess.Popen(["ip", "netns", "exec", ns] + [str(c) for c in cmd], **kw)

    def python(self, ns, script, *args, **kw):
        """Run a Python script (source text) in a namespace; returns CompletedProcess."""
        return self.run(ns, sys.executable, "-c", script, *args, **kw)

    def python_bg(self, ns, script, *args, **kw):
        return self.popen(ns, sys.executable, "-u", "-c", script, *args, **kw)

    def exists(self):
        out = sh("ip", "netns", "list").stdout.split()
        return any(ns in out for ns in self.namespaces)

    # ---- building ----------------------------------------------------------------

    def build(self):
        if self.exists():
            raise RuntimeError("namespaces %s-* exist already: run `vboard.py down --prefix %s`"
                               % (self.prefix, self.prefix))
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            # new interfaces inherit `default`: no IPv6 noise (RS, MLD, DAD) on the links
            self.run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        sh("ip", "-n", self.sw, "link", "add", "name", "br0", "type", "bridge")
        sh("ip", "-n", self.sw, "link", "set", "dev", "br0", "up")
        self._veth(self.lan1, "eth0", self.sw, "lan1", bridge=True)
        self._veth(self.lan2, "eth0", self.sw, "lan2", bridge=True)
        self._veth(self.rtr, "lan", self.sw, "rtr", bridge=True)
        self._veth(self.rtr, "wan", self.isp, "rtr")
        self._veth(self.srv, "eth0", self.isp, "srv")
        for ns, addr in ((self.lan1, LAN1), (self.lan2, LAN2)):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "route", "add", "default", "via", LAN_GW)
        sh("ip", "-n", self.isp, "addr", "add", ISP_WAN + "/24", "dev", "rtr")
        sh("ip", "-n", self.isp, "addr", "add", ISP_SRV + "/24", "dev", "srv")
        self.run(self.isp, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", self.srv, "addr", "add", SRV + "/24", "dev", "eth0")
        sh("ip", "-n", self.srv, "route", "add", "default", "via", ISP_SRV)

    def _veth(self, ns_a, name_a, ns_b, name_b, bridge=False):
        sh("ip", "-n", ns_a, "link", "add", "name", name_a, "type", "veth",
           "peer", "name", name_b, "netns", ns_b)
        for ns, name in ((ns_a, name_a), (ns_b, name_b)):
            sh("ip", "-n", ns, "link", "set", "dev", name, "mtu", "1500")
            # no TSO/GSO/GRO: the raw sockets see real frames of at most 1514 bytes;
            # no checksum offload: every packet carries a valid checksum
            self.run(ns, "ethtool", "-K", name, *[x for o in OFFLOADS for x in (o, "off")],
                     check=False)
            if bridge and ns == self.sw:
                sh("ip", "-n", ns, "link", "set", "dev", name, "master", "br0")
            sh("ip", "-n", ns, "link", "set", "dev", name, "up")

    def mac(self, ns, ifname):
        return self.run(ns, "cat", "/sys/class/net/%s/address" % ifname).stdout.strip()

    # ---- the board ---------------------------------------------------------------

    def install_flash(self, config=None):
        """The board's filesystem: firmware, nat package, board module, natrouter.json."""
        if self.flash.exists():
            shutil.rmtree(self.flash)
        self.flash.mkdir(parents=True)
        for src in FIRMWARE.glob("*.py"):
            shutil.copy(src, self.flash)
        shutil.copytree(FIRMWARE / "nat", self.flash / "nat",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("board.py", "arp.py"):
            shutil.copy(BOARD / name, self.flash)
        (self.flash / "natrouter.json").write_text(json.dumps(config or CONFIG, indent=1))

    def start_board(self, main="main.py", ready_timeout=20, heapsize=None):
        """Run `micropython -i <main>` in <p>-rtr on a pty; wait until 192.168.4.1 answers ping.
        heapsize: the unix port's -X heapsize (e.g. "512K"); its default is 2M."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MICROPYPATH="%s:.frozen" % self.flash)
        log = open(self.workdir / "socat.log", "ab")
        exe = micropython_binary()
        self.board_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.rtr, "socat",
             "PTY,link=%s,rawer" % self.pty,
             "EXEC:%s%s -i %s,pty,rawer,stderr,setsid" % (
                 exe, " -X heapsize=%s" % heapsize if heapsize else "", main)],
            cwd=self.flash, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.board_proc.poll() is not None:
                raise RuntimeError("the board exited (%d): %s" % (
                    self.board_proc.returncode, (self.workdir / "socat.log").read_text()[-2000:]))
            if self.console is None and self.pty.exists():
                self.console = Console(str(self.pty), self.workdir / "console.log")
                self.console.start()
            if self.console is not None and self.ping(self.lan1, LAN_GW, count=1, wait=1):
                return str(self.pty)
        raise RuntimeError("the board did not answer ping on %s within %d s; its console:\n%s"
                           % (LAN_GW, ready_timeout, self.console.text() if self.console else ""))

    def stop_board(self):
        """Stop socat and the firmware (every process left in <p>-rtr)."""
        if self.console is not None:
            self.console.stop()
            self.console = None
        if self.board_proc is not None and self.board_proc.poll() is None:
            self.board_proc.terminate()
            try:
                self.board_proc.wait(3)
            except subprocess.TimeoutExpired:
                self.board_proc.kill()
        self.board_proc = None
        self._kill_in(self.rtr)

    def exec_on_board(self, code, timeout=20):
        """Run code on the board's REPL over mpremote; returns its output."""
        mpremote = Path(sys.executable).parent / "mpremote"
        cmd = [str(mpremote)] if mpremote.exists() else [sys.executable, "-m", "mpremote"]
        if self.console is not None:
            self.console.stop()
        try:
            return sh(*cmd, "connect", self.pty, "resume", "exec", code, timeout=timeout).stdout
        finally:
            if self.console is not None:
                self.console.start()

    # ---- whole topology ------------------------------------------------------------

    def up(self, start=True, config=None):
        if not (FIRMWARE / "main.py").exists():
            raise RuntimeError("%s does not exist: no firmware to run" % (FIRMWARE / "main.py"))
        self.build()
        self.install_flash(config)
        if start:
            return self.start_board()

    def down(self):
        # a second Ctrl-C or SIGTERM must not cut the teardown short
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
        try:
            self._down()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _down(self):
        if self.board_proc is not None or self.console is not None:
            self.stop_board()
        listed = sh("ip", "netns", "list").stdout.split()
        for ns in self.namespaces:
            if ns in listed:
                self._kill_in(ns)
                sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill_in(self, ns):
        # every process in our namespaces was started by us (the board, servers, clients)
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(int(pid), sig)
                except (ProcessLookupError, ValueError):
                    pass
            deadline = time.monotonic() + 2
            while pids and time.monotonic() < deadline:
                pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
                time.sleep(0.05)
            if not pids:
                return

    # ---- traffic helpers (used by the demo, the e2e tests and the benchmark) -------

    def ping(self, ns, addr, count=1, wait=1):
        proc = self.run(ns, "ping", "-n", "-c", count, "-W", wait, "-i", "0.2", addr,
                        check=False, timeout=count * (wait + 1) + 5)
        return proc.returncode == 0

    def serve(self, ns, proto, port, name):
        """A line echo server: replies '<name> <text> from <peer ip>:<port>'."""
        proc = self.python_bg(ns, ECHO_SERVER, proto, port, name)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("echo server in %s did not start" % ns)
        return proc

    def talk(self, ns, proto, host, port, messages=("hello",), sport=0, timeout=2):
        """Client of serve(): one result line per message ('<reply>', REFUSED or TIMEOUT)."""
        out = self.python(ns, CLIENT, proto, host, port, sport, timeout, *messages,
                          timeout=len(messages) * 4 * timeout + 10)
        return out.stdout.splitlines()

    def fetch(self, ns, url, timeout=60):
        """Download url; returns (size, sha256 hex)."""
        out = self.python(ns, FETCH, url, timeout, timeout=timeout + 10).stdout.split()
        return int(out[0]), out[1]

    def traceroute(self, ns, addr, max_hops=5):
        """The hops' addresses ('*' for no answer)."""
        out = self.run(ns, "traceroute", "-n", "-q", "1", "-w", "2", "-m", max_hops, addr,
                       check=False, timeout=max_hops * 3 + 10).stdout
        hops = []
        for line in out.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                hops.append(parts[1])
        return hops


# Scripts run with the host's Python inside namespaces.
ECHO_SERVER = r"""
import socket, sys, threading
proto, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def answer(text, peer):
    return ("%s %s from %s:%d\n" % (name, text.strip(), peer[0], peer[1])).encode()
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(answer(data.decode(errors="replace"), peer), peer)
else:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    print("ready", flush=True)
    def serve(c, peer):
        with c, c.makefile("r") as f:
            for line in f:
                c.sendall(answer(line, peer))
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""

# argv: proto host port sport timeout messages...; a message '-' waits for a line on stdin
CLIENT = r"""
import socket, sys
proto, host, port, sport, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sport:
    s.bind(("0.0.0.0", sport))
s.settimeout(timeout)
try:
    s.connect((host, port))
except socket.timeout:
    print("TIMEOUT", flush=True); sys.exit()
except ConnectionRefusedError:
    print("REFUSED", flush=True); sys.exit()
f = s.makefile("r") if kind == socket.SOCK_STREAM else None
for msg in sys.argv[6:]:
    if msg == "-":
        sys.stdin.readline()
        continue
    result = "TIMEOUT"
    for attempt in range(3 if f is None else 1):
        try:
            if f is None:
                s.send(msg.encode())
                result = s.recv(4096).decode().strip()
            else:
                s.sendall(msg.encode() + b"\n")
                result = f.readline().strip() or "CLOSED"
            break
        except socket.timeout:
            continue
        except ConnectionRefusedError:
            result = "REFUSED"
            break
    print(result, flush=True)
"""

FETCH = r"""
import hashlib, sys, urllib.request
data = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read()
print(len(data), hashlib.sha256(data).hexdigest())
"""


def board_state(topo):
    """Counters and flow table, read from the running board over mpremote."""
    out = topo.exec_on_board(
        "import router, board\n"
        "print(router.running.counters())\n"
        "print(board.counters())\n"
        "for f in router.running.flows(): print(f)\n")
    return out


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
    web = topo.popen(topo.srv, sys.executable, "-m", "http.server", "-d", blob, "-b", SRV, "8000",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if topo.run(topo.srv, sys.executable, "-c", PORT_OPEN, SRV, "8000", check=False).returncode == 0:
                break
            time.sleep(0.1)
        t = time.monotonic()
        size, digest = topo.fetch(topo.lan1, "http://%s:8000/blob" % SRV)
        dt = time.monotonic() - t
        same = digest == hashlib.sha256(data).hexdigest()
        say("HTTP download of %d bytes through NAT: %s, %.1f Mbit/s"
            % (size, "hash ok" if same else "HASH MISMATCH", size * 8 / dt / 1e6))
    finally:
        web.terminate()
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


PORT_OPEN = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()"


def handle_signals():
    """SIGTERM/SIGHUP unwind like Ctrl-C does, so `finally` blocks tear down."""
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("up", "down", "demo"))
    ap.add_argument("--prefix", default="vb", help="namespace name prefix (default vb)")
    args = ap.parse_args(argv)
    try:
        check_host()
    except Unavailable as e:
        print("vboard: cannot run: %s" % e, file=sys.stderr)
        return 2
    topo = Topology(args.prefix)
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
        pty = topo.up()
        if args.command == "demo":
            demo(topo)
            return 0
        atexit.unregister(topo.down)  # up: leave it running
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
