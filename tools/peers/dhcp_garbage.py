"""Malformed DHCP messages at a DHCP server, from inside a namespace (scapy, layer 2).

    dhcp_garbage.py IFACE ROUTER_MAC COUNT

UDP 0.0.0.0:68 -> 255.255.255.255:67 carrying random bytes, BOOTP with a wrong magic
cookie, options running past the end, replies instead of requests. Bounded: COUNT frames."""
import random
import sys

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw
from scapy.sendrecv import sendp


def payloads(r):
    good = raw(BOOTP(chaddr=bytes((2, 0, 0, 0, 0, 7)), xid=9)
               / DHCP(options=[("message-type", "discover"), "end"]))
    yield lambda: bytes(r.getrandbits(8) for _ in range(r.randrange(0, 400)))
    yield lambda: good[:236] + b"\x63\x82\x53\x64" + good[240:]          # wrong cookie
    yield lambda: good[:240] + b"\x35\x09\x01"                           # option too long
    yield lambda: b"\x02" + good[1:]                                     # a reply
    yield lambda: good[:r.randrange(0, 240)]                             # cut short


def main(iface, router_mac, count):
    r = random.Random(3)
    kinds = list(payloads(r))
    with open("/sys/class/net/%s/address" % iface) as f:
        own = f.read().strip()
    frames = [Ether(src=own, dst=r.choice((router_mac, "ff:ff:ff:ff:ff:ff")))
              / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
              / Raw(kinds[i % len(kinds)]()) for i in range(int(count))]
    sendp(frames, iface=iface, verbose=False)
    print(len(frames))


if __name__ == "__main__":
    main(*sys.argv[1:4])
