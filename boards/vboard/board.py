# The virtual board: the firmware on the MicroPython unix port, its two links
# raw Ethernet (AF_PACKET) sockets on veth interfaces of a Linux network
# namespace built by tools/vboard.py. Implements the board interface of
# boards/README.md; see README.md next to this file.
#
# The kernel of the board's namespace holds no address on these interfaces:
# the board owns them, answers ARP for them itself (arp.py) and frames
# every IPv4 packet it sends.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x
import gc
import os
import select
import socket
import struct
import time
import _thread

import arp

CONFIG_PATH = "natrouter.json"

# Interface names inside the board's namespace; tools/vboard.py uses the defaults.
LAN_IF = os.getenv("VBOARD_LAN") or "lan"
WAN_IF = os.getenv("VBOARD_WAN") or "wan"

_AF_PACKET = const(17)
_SOCK_RAW = const(3)
_ETH_P_ALL = const(0x0300)  # htons(ETH_P_ALL): ARP and IPv4 on one socket
_SOL_PACKET = const(263)
_PACKET_IGNORE_OUTGOING = const(23)  # Linux 4.20+: do not hear our own frames
_ETH = const(14)
_HOUSEKEEP_MS = const(100)

# Every received frame allocates (recv). Left alone, the unix port collects only when
# its 2 MB heap is full, and by then each 1.5 KB allocation scans past all the garbage
# since the last collection: measured 60-70 us per packet through the router. A
# collection every 128 KB allocated brings it to ~25 us (tools/bench_net.py).
GC_THRESHOLD = 128 * 1024

_BROADCAST = b"\xff\xff\xff\xff\xff\xff"


def _sysfs(ifname, what):
    with open("/sys/class/net/%s/%s" % (ifname, what)) as f:
        return f.read().strip()


def _ip_bytes(dotted):
    return bytes(int(x) for x in dotted.split("."))


class EthernetLink:
    # name: "lan"/"wan"; ifname: the veth; addr/mask/gateway: dotted strings
    # (gateway may be None: then only on-link destinations are reachable).
    def __init__(self, name, ifname, addr, mask, gateway=None, mtu=1500):
        self.name = name
        self.ifname = ifname
        self.mtu = mtu
        self.mac = bytes(int(x, 16) for x in _sysfs(ifname, "address").split(":"))
        self._ip = _ip_bytes(addr)
        self._mask = _ip_bytes(mask)
        self._net = bytes(a & m for a, m in zip(self._ip, self._mask))
        self._gw = _ip_bytes(gateway) if gateway else None
        self._rxmax = _ETH + mtu + 4  # a longer frame is dropped, not cut
        self._tx = bytearray(_ETH + mtu)
        self._txmv = memoryview(self._tx)
        self._tx[6:12] = self.mac
        self._tx[12] = 0x08  # IPv4
        self._tx[13] = 0x00
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
        self.arp = arp.Arp(self.mac, self._ip, self._write, frame_size=_ETH + mtu)
        self.now = time.ticks_ms()
        self._housekept = self.now
        self.rx = 0          # IPv4 packets delivered to the router
        self.tx = 0          # IPv4 packets sent (directly or after ARP)
        self.rx_ignored = 0  # frames for other MACs, other protocols, too long
        self.tx_errors = 0   # the socket refused a frame (link down, queue full)
        self.no_route = 0    # off-link destination and no gateway
        self.arp.announce()

    # ---- the Link interface ---------------------------------------------------

    def recv_into(self, buf):
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
                f = self.sock.recv(self._rxmax)  # one frame; allocates (unix port has no recv_into)
            except OSError:
                self._drained = True
                return 0
            self._drained = False
            n = len(f)
            if n < _ETH + 20 or f[12] != 0x08:
                self.rx_ignored += 1
                continue
            if f[13] == 0x06:
                self.arp.input(f, n, self.now)
                continue
            if f[13] != 0x00 or n - _ETH > self.mtu or n - _ETH > len(buf) or not self._for_me(f):
                self.rx_ignored += 1
                continue
            n -= _ETH
            buf[0:n] = memoryview(f)[_ETH:]
            self.rx += 1
            if not self.rx & 63:
                self.housekeep(time.ticks_ms())
            return n

    def send(self, buf, n):
        if n > self.mtu:
            self.tx_errors += 1
            return
        tx = self._tx
        self._txmv[_ETH:_ETH + n] = memoryview(buf)[0:n]
        # next hop: the destination itself when on-link, else the gateway
        m = self._mask
        net = self._net
        if (tx[30] & m[0]) == net[0] and (tx[31] & m[1]) == net[1] \
                and (tx[32] & m[2]) == net[2] and (tx[33] & m[3]) == net[3]:
            if (tx[30] | m[0]) == 255 and (tx[31] | m[1]) == 255 \
                    and (tx[32] | m[2]) == 255 and (tx[33] | m[3]) == 255:
                tx[0:6] = _BROADCAST  # the subnet's broadcast address
                self._write(tx, _ETH + n)
                self.tx += 1
                return
            hop, off = tx, 30
        elif tx[30] == 255 and tx[31] == 255 and tx[32] == 255 and tx[33] == 255:
            tx[0:6] = _BROADCAST
            self._write(tx, _ETH + n)
            self.tx += 1
            return
        elif self._gw is not None:
            hop, off = self._gw, 0
        else:
            self.no_route += 1
            return
        a = self.arp
        slot = a.lookup(hop, off, self.now)
        if slot >= 0:
            tx[0:6] = a.mac_of(slot)
            self._write(tx, _ETH + n)
            self.tx += 1
        elif a.hold(tx, _ETH + n, hop, off, self.now):
            self.tx += 1  # counted now; arp.dropped counts held frames that never left

    # ---- board internals -----------------------------------------------------

    def _for_me(self, f):
        m = self.mac
        if f[5] == m[5] and f[4] == m[4] and f[3] == m[3] and f[2] == m[2] \
                and f[1] == m[1] and f[0] == m[0]:
            return True
        return f[0] == 0xFF and f[1] == 0xFF and f[2] == 0xFF and f[3] == 0xFF \
            and f[4] == 0xFF and f[5] == 0xFF

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

    def stats(self):
        d = {"rx": self.rx, "tx": self.tx, "rx_ignored": self.rx_ignored,
             "tx_errors": self.tx_errors, "no_route": self.no_route}
        d.update(self.arp.stats())
        return d

    def close(self):
        self.sock.close()


_links = ()
_poller = None


def open_links(cfg):
    global _links, _poller
    for link in _links:
        link.close()
    lan_cfg, wan_cfg = cfg["lan"], cfg["wan"]
    mtu = cfg.get("mtu", 1500)
    lan = EthernetLink("lan", LAN_IF, lan_cfg["addr"], lan_cfg["mask"], lan_cfg.get("gateway"), mtu)
    wan = EthernetLink("wan", WAN_IF, wan_cfg["addr"], wan_cfg["mask"], wan_cfg.get("gateway"), mtu)
    gc.collect()
    gc.threshold(GC_THRESHOLD)
    _poller = select.poll()
    _poller.register(lan.sock, select.POLLIN)
    _poller.register(wan.sock, select.POLLIN)
    _links = (lan, wan)
    return lan, wan


def wait(timeout_ms):
    if _poller is None:
        time.sleep_ms(timeout_ms)
        return
    for link in _links:
        if link.arp.busy():  # frames wait for ARP: wake up for the retries
            timeout_ms = min(timeout_ms, _HOUSEKEEP_MS)
    _poller.ipoll(timeout_ms)  # polls now; which socket is ready does not matter
    now = time.ticks_ms()
    for link in _links:
        link.housekeep(now)


def start(fn):
    _thread.stack_size(64 * 1024)
    _thread.start_new_thread(fn, ())


# Slow path, for the REPL / mpremote: per-link counters and ARP caches.
def counters():
    return {link.name: link.stats() for link in _links}


def neighbours():
    return {link.name: link.arp.entries() for link in _links}


ticks_ms = time.ticks_ms
sleep_ms = time.sleep_ms
