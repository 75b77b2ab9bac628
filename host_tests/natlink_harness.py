"""ctypes side of boards/natlink/host/harness.c: real lwIP (Debian's liblwip, its
tcpip thread) with three in-memory Ethernet netifs, and the natlink core on two of
them. lwIP can be started once per process, so `get()` returns one shared Harness."""
import ctypes
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SO = ROOT / "build" / "natlink" / "libnatlink_host.so"
LWIPOPTS = Path("/usr/include/lwip/lwipopts.h")

# natlink_counters_t, in order (h_counters reports the C field count; checked at load).
COUNTERS = ("claimed", "passed", "rx_drops", "received", "sent", "tx_full", "tx_errors",
            "kick_fails")

LAN, WAN = 0, 1          # natlink links, and the harness netif indexes they use
OTHER = 2                # a third netif natlink does not wrap
PPP = 3                  # an IP-only point-to-point netif (PPP's kind: no Ethernet)

# The harness's netifs: (mac, address, mask, gateway)
NETIFS = {
    LAN: ("02:00:00:00:04:01", "192.168.4.1", "255.255.255.0", "0.0.0.0"),
    WAN: ("02:00:00:00:64:02", "198.51.100.2", "255.255.255.0", "198.51.100.1"),
    OTHER: ("02:00:00:00:0a:01", "10.0.0.1", "255.255.255.0", "0.0.0.0"),
}


# The IP-only netif: (address, peer)
IP_NETIFS = {PPP: ("192.168.9.1", "192.168.9.2")}


def _mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def _ip(s):
    return bytes(int(x) for x in s.split("."))


def unavailable():
    """Why the harness cannot run here, or None."""
    if not LWIPOPTS.exists():
        return "liblwip-dev is not installed (make setup installs it as root)"
    return None


def build():
    """The library, built by the Makefile's own rule if missing or stale (its target
    alone: never `make setup` from inside the tests)."""
    subprocess.run(["make", "-s", str(SO.relative_to(ROOT))], cwd=ROOT, check=True)
    return SO


class Harness:
    def __init__(self, path):
        lib = self.lib = ctypes.CDLL(str(path))
        c_u8p, c_u16p = ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint16)
        sig = {
            "h_boot": ([], ctypes.c_int),
            "h_netif_add": ([ctypes.c_int, c_u8p, c_u8p, c_u8p, c_u8p], ctypes.c_int),
            "h_netif_add_ip": ([ctypes.c_int, c_u8p, c_u8p], ctypes.c_int),
            "h_inject_ip": ([ctypes.c_int, c_u8p, ctypes.c_int], ctypes.c_int),
            "h_input_is_lwip": ([ctypes.c_int], ctypes.c_int),
            "h_inject": ([ctypes.c_int, c_u8p, ctypes.c_int, ctypes.c_int], ctypes.c_int),
            "h_rx_outstanding": ([], ctypes.c_long),
            "h_rx_allocs": ([], ctypes.c_long),
            "h_take": ([ctypes.c_int, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
            "h_clear": ([ctypes.c_int], None),
            "h_count_only": ([ctypes.c_int, ctypes.c_int, c_u8p, ctypes.c_int], None),
            "h_out_stats": ([ctypes.c_int, ctypes.POINTER(ctypes.c_uint64)], None),
            "h_sync": ([], ctypes.c_int),
            "h_core_lock": ([], None),
            "h_core_unlock": ([], None),
            "h_arp_flush": ([ctypes.c_int], None),
            "h_set_mtu": ([ctypes.c_int, ctypes.c_int], None),
            "h_start": ([ctypes.c_int, ctypes.c_int, c_u8p, c_u16p, ctypes.c_int, c_u16p,
                         ctypes.c_int, c_u16p, ctypes.c_int, ctypes.c_int], ctypes.c_int),
            "h_set_claims": ([c_u16p, ctypes.c_int, c_u16p, ctypes.c_int, c_u16p, ctypes.c_int,
                              ctypes.c_int], ctypes.c_int),
            "h_rehook": ([], ctypes.c_int),
            "h_netif_readd": ([ctypes.c_int], ctypes.c_int),
            "h_stop": ([], ctypes.c_int),
            "h_running": ([], ctypes.c_int),
            "h_set_wan": ([c_u8p], None),
            "h_recv": ([ctypes.c_int, ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
            "h_send": ([ctypes.c_int, c_u8p, ctypes.c_int], ctypes.c_int),
            "h_pending": ([ctypes.c_int], ctypes.c_int),
            "h_tx_free": ([], ctypes.c_int),
            "h_bad_frees": ([], ctypes.c_uint),
            "h_counters": ([ctypes.c_int, ctypes.POINTER(ctypes.c_uint32), ctypes.c_int],
                           ctypes.c_int),
            "h_sizes": ([ctypes.POINTER(ctypes.c_int)], ctypes.c_int),
            "h_pump": ([ctypes.c_int, c_u8p, ctypes.c_int, c_u8p, ctypes.c_int, ctypes.c_int,
                        ctypes.c_double, ctypes.POINTER(ctypes.c_uint64)], ctypes.c_int),
        }
        for name, (args, res) in sig.items():
            f = getattr(lib, name)
            f.argtypes, f.restype = args, res
        sizes = (ctypes.c_int * 4)()
        lib.h_sizes(sizes)
        self.mtu, self.rx_slots, self.tx_slots, self.max_ranges = list(sizes)
        self.efd = lib.h_boot()
        assert self.efd >= 0, "lwIP did not start"
        out = (ctypes.c_uint32 * 16)()
        assert lib.h_counters(0, out, 16) == len(COUNTERS), "COUNTERS does not match natlink.h"
        for idx, (mac, addr, mask, gw) in NETIFS.items():
            assert lib.h_netif_add(idx, _mac(mac), _ip(addr), _ip(mask), _ip(gw)) == 0
        for idx, (addr, peer) in IP_NETIFS.items():
            assert lib.h_netif_add_ip(idx, _ip(addr), _ip(peer)) == 0
        self._buf = ctypes.create_string_buffer(2048)

    # natlink
    @staticmethod
    def _claims(tcp, udp, icmp, lan_dhcp):
        def pairs(ranges):
            flat = [v for r in ranges for v in r] or [0]
            return (ctypes.c_uint16 * len(flat))(*flat), len(ranges)
        t, u, i = pairs(tcp), pairs(udp), pairs(icmp)
        return (t[0], t[1], u[0], u[1], i[0], i[1], int(lan_dhcp))

    def start(self, wan_addr, tcp=(), udp=(), icmp=(), lan=LAN, wan=WAN, lan_dhcp=False):
        return self.lib.h_start(lan, wan, _ip(wan_addr), *self._claims(tcp, udp, icmp, lan_dhcp))

    def set_claims(self, tcp=(), udp=(), icmp=(), lan_dhcp=False):
        """natlink_set_claims() while it runs: 0, or -1 (bad ranges)."""
        return self.lib.h_set_claims(*self._claims(tcp, udp, icmp, lan_dhcp))

    def rehook(self):
        """natlink_rehook(): netifs wrapped again, or -1 when not running."""
        return self.lib.h_rehook()

    def readd(self, idx):
        """The netif removed and added back with lwIP's own input, as ESP-IDF does when
        an access point restarts."""
        assert self.lib.h_netif_readd(idx) == 0

    def stop(self):
        return self.lib.h_stop()

    def running(self):
        return bool(self.lib.h_running())

    def set_wan(self, addr):
        self.lib.h_set_wan(_ip(addr))

    def recv(self, link, cap=2048):
        n = self.lib.h_recv(link, self._buf, cap)
        if n < 0:
            return n
        return self._buf.raw[:n] if n else None

    def recv_all(self, link):
        out = []
        while (p := self.recv(link)) is not None:
            out.append(p)
        return out

    def send(self, link, pkt):
        pkt = bytes(pkt)
        return self.lib.h_send(link, pkt, len(pkt))

    def pending(self, link):
        return self.lib.h_pending(link)

    def tx_free(self):
        return self.lib.h_tx_free()

    def bad_frees(self):
        return self.lib.h_bad_frees()

    def counters(self, link):
        out = (ctypes.c_uint32 * len(COUNTERS))()
        self.lib.h_counters(link, out, len(COUNTERS))
        return dict(zip(COUNTERS, out))

    # the netifs
    def inject(self, idx, frame, split=0):
        frame = bytes(frame)
        return self.lib.h_inject(idx, frame, len(frame), split)

    def inject_ip(self, idx, pkt):
        """A bare IPv4 packet into an IP-only netif, as PPP hands ip4_input() one."""
        pkt = bytes(pkt)
        return self.lib.h_inject_ip(idx, pkt, len(pkt))

    def take(self, idx):
        n = self.lib.h_take(idx, self._buf, len(self._buf))
        return self._buf.raw[:n] if n > 0 else None

    def take_all(self, idx):
        out = []
        while (f := self.take(idx)) is not None:
            out.append(f)
        return out

    def clear(self):
        for idx in list(NETIFS) + list(IP_NETIFS):
            self.lib.h_clear(idx)

    def count_only(self, idx, on, expect_dst=None, expect_len=0):
        self.lib.h_count_only(idx, int(on), _mac(expect_dst) if expect_dst else None, expect_len)

    def out_stats(self, idx):
        out = (ctypes.c_uint64 * 4)()
        self.lib.h_out_stats(idx, out)
        return dict(zip(("frames", "ipv4", "mismatches", "cap_drops"), out))

    def input_is_lwip(self, idx):
        return bool(self.lib.h_input_is_lwip(idx))

    def arp_flush(self, idx):
        self.lib.h_arp_flush(idx)

    def set_mtu(self, idx, mtu):
        self.lib.h_set_mtu(idx, mtu)

    # lwIP
    def sync(self):
        assert self.lib.h_sync() == 0, "lwIP's thread did not answer"

    def core_lock(self):
        self.lib.h_core_lock()

    def core_unlock(self):
        self.lib.h_core_unlock()

    def rx_outstanding(self):
        return self.lib.h_rx_outstanding()

    def rx_allocs(self):
        return self.lib.h_rx_allocs()

    def pump(self, n, fwd, passframe, pass_every, timeout=120.0):
        fwd, passframe = bytes(fwd), bytes(passframe)
        res = (ctypes.c_uint64 * 6)()
        rc = self.lib.h_pump(n, fwd, len(fwd), passframe, len(passframe), pass_every,
                             timeout, res)
        return rc, dict(zip(("received", "injected", "passes", "lost_wakeups", "odd_wakeups",
                             "us"), res))

    def drain_efd(self):
        """The eventfd's count (number of wake-ups since the last drain), or 0."""
        try:
            return int.from_bytes(os.read(self.efd, 8), "little")
        except BlockingIOError:
            return 0


_harness = None


def get():
    global _harness
    if _harness is None:
        _harness = Harness(build())
    return _harness
