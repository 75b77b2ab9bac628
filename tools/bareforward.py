# A bare MicroPython frame forwarder: the ceiling for the virtual board (tools/bench_net.py).
#
#   micropython bareforward.py <lan-if> <wan-if> <lan-host-mac> <wan-gateway-mac> [seconds]
#   micropython bareforward.py --links [seconds]     (boards/vboard on MICROPYPATH)
#
# Moves IPv4 frames between two interfaces the way the virtual board does (raw
# AF_PACKET sockets, non-blocking, select.poll, recv + one copy + write), with none of
# its work: no ARP (the neighbours hold static entries), no parsing, no translation, a
# static MAC rewrite (everything from the WAN goes to the one LAN host).
# --links forwards through the virtual board's own links (board.py: ARP, framing) but
# still translates nothing: the board's cost without the router's.
# Runs on the unix port only; stops by itself after `seconds` (default 600).
#
# BAREFORWARD_BALLAST_KB=250 (environment): keep that much of small live objects on the
# heap and collect every 128 KB allocated, as the virtual board does: the unix port's
# allocator and collector cost more per received frame (recv allocates) the more the heap
# holds, so this shows what the firmware's mere presence costs (measured: 683 -> 560-594
# Mbit/s TCP, 5.9 -> 7.0 CPU us per UDP packet).
import micropython
import select
import socket
import struct
import sys
import time

_AF_PACKET = 17
_ETH_P_ALL = 0x0300


def raw_socket(ifname):
    with open("/sys/class/net/%s/ifindex" % ifname) as f:
        ifindex = int(f.read())
    s = socket.socket(_AF_PACKET, 3, _ETH_P_ALL)
    s.bind(struct.pack("<HHi", _AF_PACKET, _ETH_P_ALL, ifindex) + bytes(12))
    s.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
    s.setblocking(False)
    return s


def mac_of(text):
    return bytes(int(x, 16) for x in text.split(":"))


def own_mac(ifname):
    with open("/sys/class/net/%s/address" % ifname) as f:
        return mac_of(f.read().strip())


class Direction:
    # frames received on `src` for our MAC there leave on `dst` to `dst_mac`
    def __init__(self, src, src_mac, dst, own_dst_mac, dst_mac):
        self.src = src
        self.mac = src_mac
        self.dst = dst
        self.tx = bytearray(1514)
        self.tx[0:6] = dst_mac
        self.tx[6:12] = own_dst_mac
        self.tx[12] = 0x08
        self.frames = 0

    @micropython.native  # as the virtual board's links and the router's drain loops
    def drain(self, batch):
        src = self.src
        m = self.mac
        tx = self.tx
        for _ in range(batch):
            try:
                f = src.recv(1518)
            except OSError:
                return
            n = len(f)
            if n > 1514 or f[12] != 0x08 or f[13] != 0 or f[5] != m[5] or f[0] != m[0]:
                continue
            tx[14:n] = memoryview(f)[14:]
            try:
                self.dst.write(tx, 0, n)
            except OSError:
                pass
            self.frames += 1


def through_links(seconds):
    import board
    from manage import config
    cfg = config.load(getattr(board, "CONFIG_PATH", config.DEFAULT_PATH))[0]  # as the firmware loads it (each link's MTU...)
    lan, wan = board.open_links(cfg)
    buf = board.packet_buffer()  # as the router gets it
    print("forwarding")
    end = time.ticks_add(time.ticks_ms(), seconds * 1000)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        board.wait(100)
        for src, dst in ((lan, wan), (wan, lan)):
            for _ in range(32):
                n = src.recv_into(buf)
                if not n:
                    break
                dst.send(buf, n)
    print(board.counters())


def _ballast():
    import gc
    import os
    kb = int(os.getenv("BAREFORWARD_BALLAST_KB") or 0)
    if kb:
        gc.collect()
        start = gc.mem_alloc()
        keep = []
        while gc.mem_alloc() - start < kb * 1024:
            keep.append([len(keep), str(len(keep))])
        gc.collect()
        gc.threshold(128 * 1024)  # boards/vboard/board.py GC_THRESHOLD
        return keep
    return None


def main(argv):
    ballast = _ballast()  # noqa: F841 (kept alive while forwarding)
    if argv[1] == "--links":
        return through_links(int(argv[2]) if len(argv) > 2 else 600)
    lan_if, wan_if, lan_host, wan_gw = argv[1:5]
    seconds = int(argv[5]) if len(argv) > 5 else 600
    lan, wan = raw_socket(lan_if), raw_socket(wan_if)
    lan_mac, wan_mac = own_mac(lan_if), own_mac(wan_if)
    out = Direction(lan, lan_mac, wan, wan_mac, mac_of(wan_gw))
    back = Direction(wan, wan_mac, lan, lan_mac, mac_of(lan_host))
    poller = select.poll()
    poller.register(lan, select.POLLIN)
    poller.register(wan, select.POLLIN)
    print("forwarding")  # the unix port's stdout is unbuffered
    end = time.ticks_add(time.ticks_ms(), seconds * 1000)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        poller.ipoll(100)
        out.drain(32)
        back.drain(32)
    print("out", out.frames, "back", back.frames)


main(sys.argv)
