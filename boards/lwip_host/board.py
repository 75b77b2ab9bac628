# The lwIP host board: the natrouter firmware on the MicroPython unix port, its links
# two Unix datagram sockets to the host program (host/lwip_host.c), in which Debian's
# lwIP owns the router's addresses on two TAP netifs and natlink hands over the packets
# the router must see. Implements the board interface of boards/README.md; see
# README.md next to this file.
#
# lwIP answers ARP and pings of the router's addresses and frames every packet: the
# links here carry bare IPv4 packets, one per datagram, and allocate nothing per packet.
import micropython
import os
import select
import socket
import struct
import time
import _thread

from manage import config
import lwiprules
from compat import const

# The firmware serves DHCP on the LAN: natlink claims the LAN's DHCP requests for it
# (the host program's --dhcp, and the claims this module sends it).
LAN_DHCP = True

# The port split with lwIP, natlink's limits (lwiprules.py): the host program reads
# natrouter.json with the same rules.
config.board_rules(lwiprules.DEFAULTS, lwiprules.check)

# Where the host program's sockets are (tools/topology.py sets it).
SOCK_DIR = os.getenv("LWIP_HOST_DIR") or "."

# A datagram from the host: the packet, padding, its length (big-endian) in the last two
# bytes; always this size, whatever the links' MTUs (lwip_host.c: DGRAM).
_DGRAM = const(1502)  # lwiprules.PACKET_MAX + 2
_SO_SNDBUF = const(7)
_SO_SNDBUFFORCE = const(32)
_SNDBUF = const(2 << 20)


def _sockaddr(path):
    # The unix port's bind/connect take a raw sockaddr_un, not a path.
    return struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0"


class SocketLink:
    """One link: a Unix datagram socket connected to the host program's. Received
    datagrams are all _DGRAM bytes long, so a non-blocking readinto() returns exactly one
    (a socket's readinto is a stream read: it would glue shorter ones together) and
    allocates nothing. Sent ones are the bare packet, written from the caller's buffer."""

    def __init__(self, name, mtu, dgram):
        self.name = name
        self.mtu = min(mtu, lwiprules.PACKET_MAX)
        self._dgram = dgram  # bytearray(_DGRAM), shared by both links and the router
        here = "%s/%s.upy" % (SOCK_DIR, name)
        host = "%s/%s.host" % (SOCK_DIR, name)
        try:
            os.remove(here)  # left by an earlier run
        except OSError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(_sockaddr(here))
        try:
            s.connect(_sockaddr(host))
        except OSError as e:
            s.close()
            raise OSError("lwip_host: no host program at %s (%s)" % (host, e))
        s.setblocking(False)
        # A datagram counts against its sender's buffer until the host reads it: room for
        # a burst (SO_SNDBUFFORCE as root, else SO_SNDBUF up to net.core.wmem_max).
        for opt in (_SO_SNDBUFFORCE, _SO_SNDBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, _SNDBUF)
                break
            except OSError:
                pass
        self.sock = s
        # Bound once: taking a bound method allocates.
        self._readinto = s.readinto
        self._write = s.write
        self.rx = 0          # packets delivered to the router
        self.tx = 0          # packets handed to the host program
        self.rx_ignored = 0  # datagrams of another size or with a bad length
        self.tx_errors = 0   # the host's queue was full, or the host program is gone
        s.send(("hello %d" % _DGRAM).encode())  # the host checks our datagram size

    # ---- the Link interface ---------------------------------------------------

    # Native code: a bytecode method with a try/except (send) takes its frame from the
    # heap on every call (py/objfun.c, VM_MAX_STATE_ON_STACK).

    @micropython.native
    def recv_into(self, buf):
        d = self._dgram
        size = _DGRAM
        while True:
            n = self._readinto(d)
            if n is None:  # nothing queued (non-blocking)
                return 0
            k = d[size - 2] << 8 | d[size - 1]
            if n != size or k < 20 or k > self.mtu:
                self.rx_ignored += 1
                continue
            if buf is not d:  # another buffer than packet_buffer(): one copy (slow path)
                if k > len(buf):
                    self.rx_ignored += 1
                    continue
                buf[0:k] = memoryview(d)[0:k]
            self.rx += 1
            return k

    @micropython.native
    def send(self, buf, n):
        try:
            if self._write(buf, 0, n) is None:  # would block: the host's queue is full
                self.tx_errors += 1
                return
        except OSError:  # the host program is gone
            self.tx_errors += 1
            return
        self.tx += 1

    def byte_counts(self):
        """The Link interface's optional byte counters (the router's traffic plot): the
        veth's of the same name in the board's namespace, the wire lwIP's TAP joins."""
        out = []
        for d in ("rx", "tx"):
            try:
                with open("/sys/class/net/%s/statistics/%s_bytes" % (self.name, d)) as f:
                    out.append(int(f.read()))
            except (OSError, ValueError):
                out.append(0)
        return out[0], out[1]

    def stats(self):
        return {"rx": self.rx, "tx": self.tx, "rx_ignored": self.rx_ignored,
                "tx_errors": self.tx_errors}

    def close(self):
        self.sock.close()


_links = ()
_poller = None
_dgram = None


def open_links(cfg):
    global _links, _poller, _dgram
    for link in _links:
        link.close()
    mtu = cfg.get("mtu", 1500)
    if _dgram is None:
        _dgram = bytearray(_DGRAM)
    lan = SocketLink("lan", cfg["lan"].get("mtu", mtu), _dgram)
    wan = SocketLink("wan", cfg["wan"].get("mtu", mtu), _dgram)
    _poller = select.poll()
    _poller.register(lan.sock, select.POLLIN)
    _poller.register(wan.sock, select.POLLIN)
    _links = (lan, wan)
    reconfigure(cfg)  # the host program claims what this configuration needs
    return lan, wan


def reconfigure(cfg):
    """The board interface: natlink's claims follow the running configuration (a port
    forward added from the REPL is claimed from the next packet)."""
    answer = _ctl(lwiprules.claims_request(cfg))
    if answer != {"claims": "ok"}:
        print("natrouter: lwip_host: the host program took no claims (%r)" % (answer,))


def wait(timeout_ms):
    if _poller is None:
        time.sleep_ms(timeout_ms)
        return
    _poller.ipoll(timeout_ms)  # which socket is ready does not matter: the router reads both


def packet_buffer():
    """The router's receive buffer: the links' datagram buffer (the packet is at its
    start, so received packets are not copied at all)."""
    return _dgram


def start(fn):
    _thread.stack_size(64 * 1024)
    _thread.start_new_thread(fn, ())


# Slow path, for the REPL / mpremote.

def host(timeout_ms=1000):
    """The host program's own view: natlink's and its counters per link, lwIP's ARP
    cache. None if it does not answer."""
    return _ctl("counters", timeout_ms)


def _ctl(request, timeout_ms=1000):
    """The host program's answer (JSON) to a request on its control socket, or None."""
    import json
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(struct.pack("H", socket.AF_UNIX))  # an autobound (abstract) address to answer to
        s.connect(_sockaddr("%s/ctl" % SOCK_DIR))
        s.send(request.encode())
        p = select.poll()
        p.register(s, select.POLLIN)
        if not p.poll(timeout_ms):
            return None
        return json.loads(s.recv(8192))
    except OSError:
        return None
    finally:
        s.close()


def counters():
    """Per link: this side's rx, tx, rx_ignored, tx_errors, and under "host" what
    host() says about that link (natlink's claimed, passed, rx_drops, ... and the host
    program's delivered, deliver_drops, from_fw, not_for_lwip, ...)."""
    h = host() or {}
    out = {}
    for link in _links:
        d = link.stats()
        d["host"] = h.get(link.name)
        out[link.name] = d
    return out


def neighbours():
    """lwIP's ARP cache, per link: [(ip, mac), ...]."""
    out = {"lan": [], "wan": []}
    for name, ip, mac in (host() or {}).get("arp", ()):
        out[name].append((ip, mac))
    return out


def lan_hosts():
    """[(address, MAC)] of the LAN hosts in lwIP's ARP cache (the page's clients)."""
    return neighbours()["lan"]
