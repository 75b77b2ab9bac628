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

The board's own IP stack (its page's server, its MQTT client) is the kernel of <p>-rtr,
holding only the router's addresses on a device of its own (`wire_local`): on the virtual
board a veth pair `loc`/`locfw` (boards/vboard: LocalLink), on the lwIP host board a TUN
`loc` behind lwIP's netifs (boards/lwip_host/host/localstack.c). The kernel never takes
anything from the wire: on the virtual board it does no ARP on `lan` and `wan`, and an
nftables input chain drops every packet that did not come from `loc`.

Topology(board="lwip_host") runs the same firmware on the lwIP host board
(boards/lwip_host): in <p>-rtr, a TAP device per link joined to its veth by tc, and a host
program in which Debian's lwIP owns 192.168.4.1 and 198.51.100.2 and natlink hands the
router its packets over Unix datagram sockets (boards/lwip_host/README.md).
"""
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from hostenv import (BOARDS, FIRMWARE, PEERS, ROOT, board_files, lwip_host_binary,
                     micropython_binary, mpremote_command, sh, wait_port)

BOARD = BOARDS / "vboard"

LAN_GW, LAN1, LAN2 = "192.168.4.1", "192.168.4.2", "192.168.4.3"
WAN, ISP_WAN, ISP_SRV, SRV = "198.51.100.2", "198.51.100.1", "203.0.113.1", "203.0.113.10"
SRV2 = "203.0.113.11"  # a second address of <p>-srv: a second remote for NAT behaviour tests
FORWARD_TCP, FORWARD_UDP = 8080, 5353  # on WAN -> LAN1:80 / LAN1:5353

CONFIG = {
    "lan": {"addr": LAN_GW, "mask": "255.255.255.0"},
    "wan": {"addr": WAN, "mask": "255.255.255.0", "gateway": ISP_WAN},
    "forwards": [{"proto": "tcp", "port": FORWARD_TCP, "to": LAN1, "to_port": 80},
                 {"proto": "udp", "port": FORWARD_UDP, "to": LAN1, "to_port": 5353}],
    "mtu": 1500,
}

OFFLOADS = ("tso", "gso", "gro", "tx", "rx", "sg")

# The boards a Topology can run. On lwip_host, lwIP picks the ports of its own connections
# from 0xC000 up: the NAT range ends below (boards/natlink/README.md, "The port split").
BOARD_NAMES = ("vboard", "lwip_host")
LWIP_CONFIG = dict(CONFIG, ports={"first": 1024, "last": 0xBFFF})
LWIP_TAPS = {"lan": "tlan", "wan": "twan"}  # in <p>-rtr, beside the veths lan and wan
LOCAL = ("loc", "locfw")  # the board's own stack: the kernel's end, the firmware's (vboard)
# Third-party MicroPython code the boards run (tools/upylib.py, `make upylib`): microdot
# also goes into the flash (firmware/manifest.py); umqtt.simple only from here.
UPYLIB = ROOT / "build" / "upylib"
# The virtual board's kernel takes in only what its own stack's veth brings.
LOCAL_ONLY = """
table inet vboard_local {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname != { "loc", "lo" } drop
    }
}
"""


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


def check_board(board):
    """Raise Unavailable with the reason when `board` cannot run here (check_host first)."""
    if board == "lwip_host":
        if lwip_host_binary() is None:
            raise Unavailable("the lwIP host program is not built (make lwip-host; needs "
                              "liblwip-dev)")
        if shutil.which("tc") is None:
            raise Unavailable("`tc` is not installed (iproute2)")



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
    BOARDS = BOARD_NAMES  # what this class runs (tools/qemu.py: the emulated ESP32)

    def __init__(self, prefix="vb", log=print, board="vboard"):
        if board not in self.BOARDS:
            raise ValueError("board %r: one of %s" % (board, ", ".join(self.BOARDS)))
        self.board = board
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
        self.sockets = self.workdir / "sock"  # lwip_host: the host program's sockets
        self.host_proc = None

    # ---- commands in namespaces ------------------------------------------------

    def run(self, ns, *cmd, **kw):
        return sh("ip", "netns", "exec", ns, *cmd, **kw)

    def _offloads_off(self, ns, dev):
        # No TSO/GSO/GRO: the raw sockets see real frames of at most 1514 bytes; no
        # checksum offload: every packet carries a valid checksum.
        self.run(ns, "ethtool", "-K", dev, *[x for o in OFFLOADS for x in (o, "off")],
                 check=False)

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
        # No multicast snooping: with it the bridge joins 224.0.0.106 (RFC 4286) and sends
        # its own IGMP reports to the LAN hosts, which would look like leaks in a capture.
        sh("ip", "-n", self.sw, "link", "set", "dev", "br0", "type", "bridge", "mcast_snooping", "0")
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
        sh("ip", "-n", self.srv, "addr", "add", SRV2 + "/24", "dev", "eth0")
        sh("ip", "-n", self.srv, "route", "add", "default", "via", ISP_SRV)

    def _veth(self, ns_a, name_a, ns_b, name_b, bridge=False):
        sh("ip", "-n", ns_a, "link", "add", "name", name_a, "type", "veth",
           "peer", "name", name_b, "netns", ns_b)
        for ns, name in ((ns_a, name_a), (ns_b, name_b)):
            sh("ip", "-n", ns, "link", "set", "dev", name, "mtu", "1500")
            self._offloads_off(ns, name)
            if bridge and ns == self.sw:
                sh("ip", "-n", ns, "link", "set", "dev", name, "master", "br0")
            sh("ip", "-n", ns, "link", "set", "dev", name, "up")

    def mac(self, ns, ifname):
        return self.run(ns, "cat", "/sys/class/net/%s/address" % ifname).stdout.strip()

    # ---- the board ---------------------------------------------------------------

    def erase_flash(self):
        """An empty filesystem, as on a freshly flashed board (tools/deploy.py fills it)."""
        if self.flash.exists():
            shutil.rmtree(self.flash)
        self.flash.mkdir(parents=True)

    def install_flash(self, config=None):
        """The board's filesystem: the firmware, the board's modules, natrouter.json."""
        self.erase_flash()
        for remote, src in board_files(BOARDS / self.board).items():
            (self.flash / remote).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, self.flash / remote)
        default = LWIP_CONFIG if self.board == "lwip_host" else CONFIG
        (self.flash / "natrouter.json").write_text(json.dumps(config or default, indent=1))

    def start_board(self, main="main.py", ready_timeout=20, heapsize=None, empty=False):
        """Run `micropython -i <main>` in <p>-rtr on a pty; wait until 192.168.4.1 answers ping.
        heapsize: the unix port's -X heapsize (e.g. "512K"); its default is 2M.
        empty: run nothing, only the REPL (a freshly flashed board); ready once it answers
        mpremote."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (self.flash, UPYLIB))
        env.update(self.board_env())
        if self.board == "lwip_host":
            self.start_lwip_host()
        else:
            self.wire_local()
        log = open(self.workdir / "socat.log", "ab")
        argv = [micropython_binary()] + (["-X", "heapsize=%s" % heapsize] if heapsize else [])
        argv += ["-i"] + ([] if empty else [main])
        self.board_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.rtr, "socat",
             "PTY,link=%s,rawer" % self.pty,
             "EXEC:%s,pty,rawer,stderr,setsid" % " ".join(argv)],
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
            if self.console is not None and (self._repl_answers() if empty else
                                             self.ping(self.lan1, LAN_GW, count=1, wait=1)
                                             and self._firmware_up()):
                return str(self.pty)
        raise RuntimeError("the board did not answer %s within %d s; its console:\n%s"
                           % ("mpremote" if empty else "ping on " + LAN_GW, ready_timeout,
                              self.console.text() if self.console else ""))

    def _repl_answers(self):
        try:
            return self.exec_on_board("print(6 * 7)", timeout=5).strip() == "42"
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

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
        self.stop_lwip_host()
        self.unwire_local()

    # ---- the lwIP host board (boards/lwip_host) -------------------------------------

    def board_env(self):
        """Environment the board's firmware needs beyond MICROPYPATH."""
        return {"LWIP_HOST_DIR": str(self.sockets)} if self.board == "lwip_host" else {}

    def _firmware_up(self):
        # On lwip_host, lwIP answers ping of 192.168.4.1 before the firmware runs.
        return self.board != "lwip_host" or "natrouter: LAN" in (
            self.console.text() if self.console else "")

    def wire_lwip(self):
        """In <p>-rtr only: a TAP device per link, joined to that link's veth by tc
        (ingress on each, mirred redirect to the other). The veth becomes a plain wire:
        every frame goes to lwIP's netif on the TAP, whatever its MAC, and the kernel of
        <p>-rtr sees none. lwIP's netif takes the veth's MAC, so the board keeps the
        MAC the neighbours and the tests know (a bridge would claim that MAC itself)."""
        for link, tap in LWIP_TAPS.items():
            self.join_tap(link, tap)
        # A unix datagram socket queues 10 datagrams by default (per namespace): room
        # for the bursts between the host program and the firmware.
        self.run(self.rtr, "sysctl", "-qw", "net.unix.max_dgram_qlen=512")

    def join_tap(self, link, tap):
        """A TAP device in <p>-rtr joined to the veth `link` by tc (ingress on each,
        mirred redirect to the other): whatever sits on the TAP owns the wire."""
        self.run(self.rtr, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
        self._offloads_off(self.rtr, tap)
        sh("ip", "-n", self.rtr, "link", "set", "dev", tap, "mtu", "1500", "up")
        for src, dst in ((link, tap), (tap, link)):
            self.run(self.rtr, "tc", "qdisc", "add", "dev", src, "handle", "ffff:", "ingress")
            self.run(self.rtr, "tc", "filter", "add", "dev", src, "parent", "ffff:",
                     "protocol", "all", "u32", "match", "u32", "0", "0",
                     "action", "mirred", "egress", "redirect", "dev", dst)

    def wire_local(self):
        """The virtual board's own IP stack: a veth pair in <p>-rtr, `loc` (the kernel's
        end, no ARP: the firmware gives it the LAN address) and `locfw` (the firmware's
        raw socket); and the kernel deaf to the wire: no ARP on `lan` and `wan`, and
        nothing taken in that did not come from `loc` (the firmware's raw sockets still
        see every frame: they are served before the kernel's IP and ARP)."""
        self.unwire_local()
        stack, fw = LOCAL
        sh("ip", "-n", self.rtr, "link", "add", "name", stack, "type", "veth", "peer", "name", fw)
        for dev in (stack, fw):
            self._offloads_off(self.rtr, dev)
            sh("ip", "-n", self.rtr, "link", "set", "dev", dev, "mtu", "1500", "up")
        for dev in (stack, "lan", "wan"):
            sh("ip", "-n", self.rtr, "link", "set", "dev", dev, "arp", "off")
        self.run(self.rtr, "nft", "-f", "-", input=LOCAL_ONLY)

    def wire_local_tun(self, lan, wan, gateway):
        """The lwIP host board's own IP stack: a TUN `loc` in <p>-rtr holding the LAN and
        WAN addresses (lan, wan: "addr/prefix"), the WAN's gateway its default route, and
        the kernel's own ports where natlink leaves them to lwIP (0xC000 and up)."""
        self.unwire_local()
        stack = LOCAL[0]
        self.run(self.rtr, "ip", "tuntap", "add", "dev", stack, "mode", "tun")
        for addr in (lan, wan):
            sh("ip", "-n", self.rtr, "addr", "add", addr, "dev", stack)
        sh("ip", "-n", self.rtr, "link", "set", "dev", stack, "mtu", "1500", "up")
        sh("ip", "-n", self.rtr, "route", "add", "default", "via", gateway, "dev", stack)
        self.run(self.rtr, "sysctl", "-qw", "net.ipv4.ip_local_port_range=49152 65535")

    def unwire_local(self):
        if self.rtr not in sh("ip", "netns", "list").stdout.split():
            return
        sh("ip", "-n", self.rtr, "link", "del", "dev", LOCAL[0], check=False)
        self.run(self.rtr, "nft", "delete", "table", "inet", "vboard_local", check=False)
        for link in ("lan", "wan"):
            sh("ip", "-n", self.rtr, "link", "set", "dev", link, "arp", "on", check=False)

    def unwire_lwip(self):
        """Back to plain veths (the virtual board's raw sockets need them)."""
        listed = sh("ip", "netns", "list").stdout.split()
        if self.rtr not in listed:
            return
        for link, tap in LWIP_TAPS.items():
            self.run(self.rtr, "tc", "qdisc", "del", "dev", link, "ingress", check=False)
            sh("ip", "-n", self.rtr, "link", "del", "dev", tap, check=False)

    def start_lwip_host(self, ready_timeout=10):
        """Wire the TAPs and start the host program in <p>-rtr, configured from the
        flash's natrouter.json (boards/lwip_host/host/hostargs.py)."""
        exe = lwip_host_binary()
        if exe is None:
            raise RuntimeError("the lwIP host program is not built (make lwip-host)")
        # A program, not an import: the board's rules it loads into manage/config.py
        # must not reach this process.
        args = json.loads(sh(sys.executable, BOARDS / "lwip_host" / "host" / "hostargs.py",
                             self.flash / "natrouter.json", self.sockets,
                             *["%s,%s" % (LWIP_TAPS[link], self.mac(self.rtr, link))
                               for link in ("lan", "wan")]).stdout)
        self.stop_lwip_host()
        self.wire_lwip()
        lan, wan = (args[args.index(k) + 1].split(",") for k in ("--lan", "--wan"))
        self.wire_local_tun(*["%s/%d" % (a[2], _prefix(a[3])) for a in (lan, wan)], wan[4])
        args += ["--local", LOCAL[0]]
        self.sockets.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "lwip_host.log"
        with open(log_path, "ab") as log:
            start = log.tell()
            self.host_proc = subprocess.Popen(["ip", "netns", "exec", self.rtr, exe] + args,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            text = log_path.read_bytes()[start:].decode(errors="replace")
            if "lwip_host: ready" in text:
                return
            if self.host_proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop_lwip_host()
        raise RuntimeError("the lwIP host program did not start: %s" % text[-2000:])

    def stop_lwip_host(self):
        """SIGTERM: the host program stops natlink, then lwIP; then the TAPs go."""
        proc, self.host_proc = self.host_proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.unwire_lwip()

    def lwip_host_state(self, timeout=2):
        """The host program's counters and ARP cache (its control socket), or None."""
        import socket
        # An address to answer to: a path, since an abstract (autobound) one belongs to
        # this process's network namespace, not to <p>-rtr's.
        here = self.sockets / ("ctl.%d.%d" % (os.getpid(), threading.get_ident()))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(str(here))
            s.settimeout(timeout)
            s.sendto(b"counters", str(self.sockets / "ctl"))
            return json.loads(s.recv(8192))
        except (OSError, ValueError):
            return None
        finally:
            s.close()
            try:
                here.unlink()
            except OSError:
                pass

    def exec_on_board(self, code, timeout=20):
        """Run code on the board's REPL over mpremote; returns its output."""
        with self.pty_released():
            return sh(*mpremote_command(), "connect", self.pty, "resume", "exec", code,
                      timeout=timeout).stdout

    def eval_on_board(self, code, timeout=20):
        """Run code on the board's REPL; the value its last output line prints (repr)."""
        return ast.literal_eval(self.exec_on_board(code, timeout).strip().splitlines()[-1])

    @contextmanager
    def pty_released(self):
        """The console copier pauses while something else (mpremote, tools/deploy.py)
        drives the REPL: two readers would split its bytes."""
        if self.console is not None:
            self.console.stop()
        try:
            yield str(self.pty)
        finally:
            if self.console is not None:
                self.console.start()

    # ---- whole topology ------------------------------------------------------------

    def up(self, start=True, config=None, empty=False):
        """Build the topology and start the board. empty: a freshly flashed board, an
        empty filesystem and the REPL (tools/deploy.py installs the firmware)."""
        if not empty and not (FIRMWARE / "main.py").exists():
            raise RuntimeError("%s does not exist: no firmware to run" % (FIRMWARE / "main.py"))
        self.build()
        if empty:
            self.erase_flash()
        else:
            self.install_flash(config)
        if start:
            return self.start_board(empty=empty)

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

    def serve(self, ns, proto, port, name, address="0.0.0.0"):
        """A line echo server: replies '<name> <text> from <peer ip>:<port>'."""
        proc = self.peer_bg(ns, "echo_server.py", proto, port, name, address)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("echo server in %s did not start" % ns)
        return proc

    @contextmanager
    def http_server(self, directory, port, address=SRV):
        """Python's http.server on srv, serving directory; ready when entered, stopped on
        exit whatever happens."""
        proc = self.popen(self.srv, sys.executable, "-m", "http.server", "-d", directory,
                          "-b", address, port, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        try:
            wait_port(self.srv, address, port)
            yield proc
        finally:
            proc.terminate()
            proc.wait(5)

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


def _prefix(mask):
    return sum(bin(int(x)).count("1") for x in mask.split("."))


def board_state(topo):
    """Counters and flow table, read from the running board over mpremote."""
    out = topo.exec_on_board(
        "import board\nfrom manage.runner import runner\n"
        "print(runner.router.counters())\n"
        "print(board.counters())\n"
        "for f in runner.router.flows(): print(f)\n")
    return out


def handle_signals():
    """SIGTERM/SIGHUP unwind like Ctrl-C does, so `finally` blocks tear down."""
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
