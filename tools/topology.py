"""The virtual board's topology: Linux network namespaces with the natrouter firmware on
the MicroPython unix port in the middle (tools/vboard.py is its command line).

    <p>-lan1 eth0 192.168.4.2/24 ─┐
    <p>-lan2 eth0 192.168.4.3/24 ─┤ br0 in <p>-sw
                                  └─ lan ┌ <p>-rtr: the board ┐ wan ── rtr  <p>-isp  srv ── eth0 <p>-srv
                              192.168.4.1 (firmware)  198.51.100.2   198.51.100.1  203.0.113.1   203.0.113.10

The firmware owns 192.168.4.1 and 198.51.100.2 (raw sockets, its own ARP); the kernel
of <p>-rtr holds no address on `lan` or `wan`. <p>-isp forwards without NAT. IPv6 is
off everywhere, offloads are off on every veth, MTU 1500. Every namespace name starts
with the prefix, so runs can coexist.

Needs root and `ip netns`. Never touches the root namespace's addresses or routes.
"""
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

from hostenv import BOARDS, FIRMWARE, PEERS, micropython_binary, mpremote_command, sh, wait_port

BOARD = BOARDS / "vboard"

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

    def peer(self, ns, program, *args, **kw):
        """Run one of tools/peers/ in a namespace with the host's Python; returns
        CompletedProcess."""
        return self.run(ns, sys.executable, PEERS / program, *args, **kw)

    def peer_bg(self, ns, program, *args, **kw):
        return self.popen(ns, sys.executable, "-u", PEERS / program, *args, **kw)

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
        # Where br_netfilter is loaded, the bridge would run frames through the kernel's
        # IP checks and silently drop malformed IPv4 before the board saw it: off here,
        # so frames reach the board exactly as sent (per namespace since Linux 5.3).
        for table in ("iptables", "ip6tables", "arptables"):
            self.run(self.sw, "sysctl", "-qw", "net.bridge.bridge-nf-call-%s=0" % table,
                     check=False)
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
        for src in BOARD.glob("*.py"):
            shutil.copy(src, self.flash)
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
        cmd = mpremote_command()
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
        proc = self.peer_bg(ns, "echo_server.py", proto, port, name)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("echo server in %s did not start" % ns)
        return proc

    def talk(self, ns, proto, host, port, messages=("hello",), sport=0, timeout=2):
        """Client of serve(): one result line per message ('<reply>', REFUSED or TIMEOUT)."""
        out = self.peer(ns, "client.py", proto, host, port, sport, timeout, *messages,
                          timeout=len(messages) * 4 * timeout + 10)
        return out.stdout.splitlines()

    def fetch(self, ns, url, timeout=60):
        """Download url; returns (size, sha256 hex)."""
        out = self.peer(ns, "fetch.py", url, timeout, timeout=timeout + 10).stdout.split()
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


def board_state(topo):
    """Counters and flow table, read from the running board over mpremote."""
    out = topo.exec_on_board(
        "import router, board\n"
        "print(router.running.counters())\n"
        "print(board.counters())\n"
        "for f in router.running.flows(): print(f)\n")
    return out


def handle_signals():
    """SIGTERM/SIGHUP unwind like Ctrl-C does, so `finally` blocks tear down."""
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
