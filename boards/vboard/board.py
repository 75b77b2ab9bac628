# The virtual board: the firmware on the MicroPython unix port, its two links
# raw Ethernet (AF_PACKET) sockets on veth interfaces of a Linux network
# namespace built by tools/vboard.py. Implements the board interface of
# boards/README.md; see README.md next to this file.
#
# The kernel of the board's namespace holds no address on these interfaces:
# the board owns them, answers ARP for them itself (arp.py) and frames
# every IPv4 packet it sends. Its own IP stack, for the page's server, is that
# kernel behind a third link (LocalLink below): the LAN link's `local`.

import gc
import micropython
import os
import select
import socket
import struct
import time
import _thread

import arp
from compat import const
from nat.addr import ip, ip_bytes
from frames import (classify, egress, next_hop_py, route, FRAME_IPV4, FRAME_ARP, HOP_MISS,
                    HOP_BROADCAST)

LAN_DHCP = True  # no DHCP server on this LAN but the router's (runner.make_dhcp)

# Interface names inside the board's namespace; tools/vboard.py uses the defaults.
LAN_IF = os.getenv("VBOARD_LAN") or "lan"
WAN_IF = os.getenv("VBOARD_WAN") or "wan"
# The board's own IP stack: a veth pair in its namespace, the kernel's end holding the
# LAN address (tools/topology.py makes it; without it the board has none).
LOCAL_IF = os.getenv("VBOARD_LOCAL") or "locfw"    # this end: a raw socket
STACK_IF = os.getenv("VBOARD_STACK") or "loc"      # the kernel's end
_LOCAL_MS = const(5)   # while the router is busy, the local stack's packets wait at most this

_AF_PACKET = const(17)
_SOCK_RAW = const(3)
_ETH_P_ALL = const(0x0300)  # htons(ETH_P_ALL): ARP and IPv4 on one socket
_SOL_PACKET = const(263)
_PACKET_IGNORE_OUTGOING = const(23)  # Linux 4.20+: do not hear our own frames
_ETH = const(14)
_RX_MAX = const(1518)  # read a little past the MTU: a longer frame is dropped, not cut
_HOUSEKEEP_MS = const(100)

# Every received frame allocates (recv). Left alone, the unix port collects only when
# its 2 MB heap is full, and by then each 1.5 KB allocation scans past all the garbage
# since the last collection: measured 60-70 us per packet through the router. A
# collection every 128 KB allocated brings it to ~25 us (tools/bench_net.py).
GC_THRESHOLD = int(os.getenv("VBOARD_GC_THRESHOLD") or 128 * 1024)


def _sysfs(ifname, what):
    with open("/sys/class/net/%s/%s" % (ifname, what)) as f:
        return f.read().strip()


def byte_counts(ifname):
    """(received, sent) bytes of an interface, as its kernel counts them (0, 0 if gone)."""
    try:
        return (int(_sysfs(ifname, "statistics/rx_bytes")),
                int(_sysfs(ifname, "statistics/tx_bytes")))
    except (OSError, ValueError):
        return 0, 0


class Frame:
    """The frame buffer both links share with the router: received frames are copied
    in whole, the router works on the IPv4 packet behind the Ethernet header (`packet`,
    a memoryview made once) and a link sends it from there with a new header. One copy
    per forwarded packet, as a bare forwarder makes."""

    def __init__(self, mtu):
        self.frame = bytearray(_ETH + mtu)
        self.packet = memoryview(self.frame)[_ETH:]


class EthernetLink:
    # name: "lan"/"wan"; ifname: the veth; addr/mask/gateway: dotted strings
    # (gateway may be None: then only on-link destinations are reachable).
    def __init__(self, name, ifname, addr, mask, gateway=None, mtu=1500, shared=None):
        self.name = name
        self.ifname = ifname
        self.mtu = mtu
        self.mac = bytes(int(x, 16) for x in _sysfs(ifname, "address").split(":"))
        self._ip = ip_bytes(ip(addr))
        mask_b = ip_bytes(ip(mask))
        self._route = route(bytes(a & m for a, m in zip(self._ip, mask_b)), mask_b,
                            ip_bytes(ip(gateway)) if gateway else None, self.mac)
        shared = shared or Frame(mtu)
        self._frame = shared.frame
        self._packet = shared.packet
        self._tx = bytearray(_ETH + mtu)  # for packets sent from other buffers
        s = socket.socket(_AF_PACKET, _SOCK_RAW, _ETH_P_ALL)
        ifindex = int(_sysfs(ifname, "ifindex"))
        s.bind(struct.pack("<HHi", _AF_PACKET, _ETH_P_ALL, ifindex) + bytes(12))
        try:
            s.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass  # old kernel: our own broadcasts come back and are ignored below
        s.setblocking(False)
        self.sock = s
        self._ready = select.poll()
        self._ready.register(s, select.POLLIN)
        self._drained = True
        self.arp = a = arp.Arp(self.mac, self._ip, self._write, frame_size=_ETH + mtu)
        self._arp_arrays = a.arrays()
        self.now = time.ticks_ms()
        self._housekept = self.now
        self.rx = 0          # IPv4 packets delivered to the router
        self.tx = 0          # IPv4 packets sent (directly or after ARP)
        self.rx_ignored = 0  # frames for other MACs, other protocols, too long
        self.tx_errors = 0   # the socket refused a frame (link down, queue full)
        self.no_route = 0    # off-link destination and no gateway
        self.local = None    # the LAN link's: the board's own IP stack (LocalLink)
        self.arp.announce()

    # ---- the Link interface ---------------------------------------------------
    # Native code: a bytecode method this size would take its frame from the heap on
    # every call (py/objfun.c, VM_MAX_STATE_ON_STACK); about 1.5 us a packet here.

    @micropython.native
    def recv_into(self, buf):
        sock = self.sock
        while True:
            if self._drained:
                # Once drained, ask before reading: recv() on an empty socket allocates
                # its whole buffer and an exception before failing. While frames keep
                # coming, recv() straight away spares a poll() per frame.
                pending = False
                for _ in self._ready.ipoll(0):
                    pending = True
                if not pending:
                    self.housekeep(time.ticks_ms())  # the router may not wait() while busy
                    return 0
            try:
                f = sock.recv(_RX_MAX)  # one frame; allocates (the unix port has no recv_into)
            except OSError:
                self._drained = True
                return 0
            self._drained = False
            n = len(f)
            kind = classify(f, n, self.mac, self.mtu)
            if kind == FRAME_IPV4:
                if buf is self._packet:
                    self._frame[0:n] = f  # the whole frame: no memoryview to make
                elif n - _ETH <= len(buf):
                    buf[0:n - _ETH] = memoryview(f)[_ETH:n]
                else:
                    self.rx_ignored += 1
                    continue
                self.rx += 1
                if not self.rx & 63:
                    self.housekeep(time.ticks_ms())
                return n - _ETH
            if kind == FRAME_ARP:
                self.arp.input(f, n, self.now)
            else:
                self.rx_ignored += 1

    @micropython.native
    def send(self, buf, n):
        if buf is self._packet:
            frame = self._frame  # the packet is in place behind its header
        elif n <= self.mtu:
            frame = self._tx
            frame[_ETH:_ETH + n] = memoryview(buf)[0:n]
        else:
            self.tx_errors += 1
            return
        ips, states, macs, used = self._arp_arrays
        hop = egress(frame, self._route, ips, states, macs, used)
        if hop >= 0 or hop == HOP_BROADCAST:
            self._write(frame, _ETH + n)
            self.tx += 1
        elif hop == HOP_MISS:
            self._hold(frame, n)
        else:
            self.no_route += 1

    # ---- board internals -----------------------------------------------------

    def _hold(self, frame, n):
        # The next hop has no ARP entry yet: keep the frame and ask (slow path).
        hop, off = next_hop_py(frame, self._route)  # a pair: egress() found a next hop
        if self.arp.hold(frame, _ETH + n, hop, off, self.now):
            self.tx += 1  # counted now; arp.dropped counts held frames that never left

    @micropython.native
    def _write(self, frame, n):
        try:
            self.sock.write(frame, 0, n)
        except OSError:
            self.tx_errors += 1

    # Clock and ARP timers: from board.wait(), and from recv_into() when drained or busy.
    def housekeep(self, now):
        self.now = now
        if time.ticks_diff(now, self._housekept) >= _HOUSEKEEP_MS:
            self._housekept = now
            self.arp.poll(now)
        local = self.local
        if local is not None and time.ticks_diff(now, local.pumped) >= _LOCAL_MS:
            local.pump(now)

    def byte_counts(self):
        """The Link interface's optional byte counters (the router's traffic plot)."""
        return byte_counts(self.ifname)

    def stats(self):
        d = {"rx": self.rx, "tx": self.tx, "rx_ignored": self.rx_ignored,
             "tx_errors": self.tx_errors, "no_route": self.no_route,
             "up": _sysfs(self.ifname, "operstate") != "down"}
        d.update(self.arp.stats())
        return d

    def close(self):
        self.sock.close()


class LocalLink:
    """The board's own IP stack: the kernel of the board's namespace behind a veth pair,
    its end (STACK_IF) holding the LAN address and nothing else, no ARP; this end
    (LOCAL_IF) a raw socket. The slow path hands it the TCP packets the LAN sends the LAN
    address (send(): the page's server, which listens on that address in this namespace);
    pump() sends what the kernel answers out of the LAN link. Slow path: it allocates.
    On the wire nothing changes: the router answers ARP for the address and frames
    everything, and the kernel never sees the LAN or WAN link (tools/topology.py drops
    their frames at its ingress)."""

    def __init__(self, lan, addr, mask):
        self.lan = lan
        self.mac = bytes(int(x, 16) for x in _sysfs(LOCAL_IF, "address").split(":"))
        peer = bytes(int(x, 16) for x in _sysfs(STACK_IF, "address").split(":"))
        self._tx = bytearray(_ETH + lan.mtu)
        self._tx[0:6] = peer          # the kernel's end takes frames to its own MAC
        self._tx[6:12] = self.mac
        self._tx[12:14] = b"\x08\x00"
        self._addr = ip_bytes(ip(addr))
        self._mask = ip_bytes(ip(mask))
        s = socket.socket(_AF_PACKET, _SOCK_RAW, _ETH_P_ALL)
        s.bind(struct.pack("<HHi", _AF_PACKET, _ETH_P_ALL, int(_sysfs(LOCAL_IF, "ifindex")))
               + bytes(12))
        try:
            s.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass
        s.setblocking(False)
        self.sock = s
        self._ready = select.poll()
        self._ready.register(s, select.POLLIN)
        self.pumped = time.ticks_ms()
        self.to_stack = 0     # packets handed to the kernel
        self.from_stack = 0   # packets of the kernel's sent on the LAN
        self.refused = 0      # frames of the kernel's that were not for the LAN

    def send(self, buf, n):
        if n > len(self._tx) - _ETH:
            self.refused += 1
            return
        self._tx[_ETH:_ETH + n] = memoryview(buf)[0:n]
        try:
            self.sock.write(self._tx, 0, _ETH + n)
            self.to_stack += 1
        except OSError:
            self.refused += 1

    def pump(self, now, limit=32):
        """The kernel's packets out of the LAN link: from the LAN address to the LAN."""
        self.pumped = now
        for _ in range(limit):
            if not any(True for _ in self._ready.ipoll(0)):
                return
            try:
                f = self.sock.recv(_RX_MAX)
            except OSError:
                return
            n = len(f)
            if n < _ETH + 20 or f[12] != 0x08 or f[13] != 0 or not self._ours(f):
                self.refused += 1
                continue
            self.lan.send(memoryview(f)[_ETH:], n - _ETH)
            self.from_stack += 1

    def _ours(self, f):
        """From the LAN address to its subnet."""
        a, m = self._addr, self._mask
        for i in range(4):
            if f[_ETH + 12 + i] != a[i] or (f[_ETH + 16 + i] ^ a[i]) & m[i]:
                return False
        return True

    def stats(self):
        return {"to_stack": self.to_stack, "from_stack": self.from_stack,
                "refused": self.refused}

    def close(self):
        self.sock.close()


_stack_addr = [None]


def _stack(addr, mask):
    """The kernel's end holds the LAN address (and only it): set when it changes."""
    prefix = bin(ip(mask)).count("1")
    want = "%s/%d" % (addr, prefix)
    if _stack_addr[0] != want:
        os.system("ip addr flush dev %s && ip addr add %s dev %s" % (STACK_IF, want, STACK_IF))
        _stack_addr[0] = want


_links = ()
_local = None
_poller = None
_shared = None


def open_links(cfg):
    global _links, _poller, _shared, _local
    for link in _links + ((_local,) if _local is not None else ()):
        link.close()
    _local = None
    lan_cfg, wan_cfg = cfg["lan"], cfg["wan"]
    lan_mtu, wan_mtu = lan_cfg["mtu"], wan_cfg["mtu"]  # each link's own (config.py)
    _shared = Frame(max(lan_mtu, wan_mtu))
    lan = EthernetLink("lan", LAN_IF, lan_cfg["addr"], lan_cfg["mask"], lan_cfg.get("gateway"),
                       lan_mtu, _shared)
    wan = EthernetLink("wan", WAN_IF, wan_cfg["addr"], wan_cfg["mask"], wan_cfg.get("gateway"),
                       wan_mtu, _shared)
    gc.collect()
    gc.threshold(GC_THRESHOLD)
    _poller = select.poll()
    _poller.register(lan.sock, select.POLLIN)
    _poller.register(wan.sock, select.POLLIN)
    _links = (lan, wan)
    if _exists(LOCAL_IF) and _exists(STACK_IF):
        _stack(lan_cfg["addr"], lan_cfg["mask"])
        _local = lan.local = LocalLink(lan, lan_cfg["addr"], lan_cfg["mask"])
        _poller.register(_local.sock, select.POLLIN)
    return lan, wan


def _exists(ifname):
    try:
        _sysfs(ifname, "ifindex")
        return True
    except OSError:
        return False


def wait(timeout_ms):
    if _poller is None:
        time.sleep_ms(timeout_ms)
        return
    for link in _links:
        if link.arp.busy():  # frames wait for ARP: wake up for the retries
            timeout_ms = min(timeout_ms, _HOUSEKEEP_MS)
    _poller.ipoll(timeout_ms)  # polls now; which socket is ready does not matter
    now = time.ticks_ms()
    if _local is not None:
        _local.pump(now)
    for link in _links:
        link.housekeep(now)


def packet_buffer():
    """The router's receive buffer: the packet part of the links' shared frame."""
    return _shared.packet


def start(fn):
    _thread.stack_size(64 * 1024)
    _thread.start_new_thread(fn, ())


# Slow path, for the REPL / mpremote: per-link counters and ARP caches.
def counters():
    d = {link.name: link.stats() for link in _links}
    if _local is not None:
        d["local"] = _local.stats()
    return d


def lan_hosts():
    """[(address, MAC)] of the LAN hosts in the ARP cache (the page's clients)."""
    out = []
    for entry in _links[0].arp.entries() if _links else ():
        addr, mac, state = entry.split()
        if state == "reachable":
            out.append((addr, mac))
    return out


def neighbours():
    return {link.name: link.arp.entries() for link in _links}

