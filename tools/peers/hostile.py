"""Hostile and malformed frames at a router's link, sent with scapy at layer 2 from
inside a namespace (the virtual board's leak tests). None of them may be forwarded.

    hostile.py SIDE IFACE ROUTER_MAC JSON

SIDE wan: what a hostile WAN sends to the router's WAN address and beyond; SIDE lan: what
a sloppy LAN host sends towards the WAN. JSON: {"count": frames per kind, "wan": the
router's WAN address, "wan_net": its subnet's network and broadcast, "lan": the router's
LAN address, "lan_net": ..., "inside": a LAN host, "remote": a WAN host with a live flow,
"live_udp": [inside port, translated port], "live_id": the translated id of a live ping,
"forward": a forwarded TCP port}. Prints one JSON object: frames sent per kind. Bounded:
count frames of each kind, then exits."""
import json
import random
import sys

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_LSRR, IPOption_SSRR
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw
from scapy.sendrecv import sendp


def kinds_wan(p):
    wan, remote = p["wan"], p["remote"]
    inside_port, xport = p["live_udp"]
    reply = IP(src=remote, dst=wan) / UDP(sport=53, dport=xport)
    sent = IP(src=wan, dst=remote, ttl=3) / UDP(sport=xport, dport=53)  # what we sent
    yield "garbage", lambda r: bytes(r.getrandbits(8) for _ in range(r.randrange(20, 200)))
    yield "bad_ip_checksum", lambda r: _corrupt(raw(reply / b"x"), 10)
    yield "bad_udp_length", lambda r: raw(IP(src=remote, dst=wan)
                                          / UDP(sport=53, dport=xport, len=r.choice((0, 7, 999)))
                                          / b"payload")
    yield "truncated", lambda r: raw(reply / (b"x" * 100))[:-20]  # too long to be padded
    yield "source_route", lambda r: raw(IP(src=remote, dst=wan, options=[
        r.choice((IPOption_LSRR, IPOption_SSRR))(routers=[p["inside"]])])
        / UDP(sport=53, dport=xport) / b"x")
    yield "later_fragment", lambda r: raw(IP(src=remote, dst=wan, proto=17,
                                             frag=r.randrange(1, 100)) / b"fragment")
    yield "error_to_elsewhere", lambda r: raw(
        IP(src=remote, dst=r.choice((p["inside"], p["wan_net"][1], "10.1.2.3")))
        / ICMP(type=3, code=3) / raw(sent)[:28])
    yield "error_quoting_garbage", lambda r: raw(
        IP(src=remote, dst=wan) / ICMP(type=r.choice((3, 11, 12)), code=0)
        / bytes(r.getrandbits(8) for _ in range(r.randrange(0, 40))))
    yield "martian_source", lambda r: raw(
        IP(src=r.choice(("127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.9",
                         "169.254.1.1", wan) + tuple(p["wan_net"])), dst=wan)
        / TCP(sport=4000, dport=p["forward"], flags="S"))
    yield "lan_source", lambda r: raw(IP(src=p["inside"], dst=wan)
                                      / TCP(sport=4000, dport=p["forward"], flags="S"))
    yield "port_zero", lambda r: raw(IP(src=remote, dst=wan) / r.choice((UDP, TCP))(
        sport=r.choice((0, 53)), dport=0))
    yield "request_with_live_id", lambda r: raw(IP(src=remote, dst=wan)
                                                / ICMP(type=r.choice((8, 13)), id=p["live_id"]))
    yield "to_inside_host", lambda r: raw(IP(src=remote, dst=p["inside"])
                                          / UDP(sport=53, dport=inside_port))


def kinds_lan(p):
    inside, remote = p["inside"], p["remote"]
    got = IP(src=remote, dst=inside, ttl=60) / UDP(sport=53, dport=p["live_udp"][0])
    yield "garbage", lambda r: bytes(r.getrandbits(8) for _ in range(r.randrange(20, 200)))
    yield "bad_ip_checksum", lambda r: _corrupt(raw(IP(src=inside, dst=remote)
                                                    / UDP(sport=1000, dport=53)), 11)
    yield "bad_udp_length", lambda r: raw(IP(src=inside, dst=remote)
                                          / UDP(sport=1000, dport=53, len=r.choice((1, 500)))
                                          / b"abc")
    yield "martian_source", lambda r: raw(IP(src=r.choice((p["lan"],) + tuple(p["lan_net"])),
                                             dst=remote) / UDP(sport=1000, dport=53))
    yield "off_subnet_source", lambda r: raw(IP(src="10.%d.0.1" % r.randrange(256), dst=remote)
                                             / UDP(sport=1000, dport=53))
    yield "source_route", lambda r: raw(IP(src=inside, dst=remote, options=[
        IPOption_LSRR(routers=["198.51.100.9"])]) / UDP(sport=1000, dport=53))
    yield "port_zero", lambda r: raw(IP(src=inside, dst=remote) / r.choice((UDP, TCP))(
        sport=0, dport=r.choice((0, 53))))
    yield "error_to_elsewhere", lambda r: raw(IP(src=inside, dst="203.0.113.%d" % r.randrange(50, 99))
                                              / ICMP(type=3, code=3) / raw(got)[:28])
    yield "reply_without_flow", lambda r: raw(IP(src=inside, dst=remote)
                                              / ICMP(type=0, id=r.getrandbits(16)))
    yield "to_lan_broadcast", lambda r: raw(IP(src=inside, dst="255.255.255.255")
                                            / UDP(sport=1000, dport=9))


def _corrupt(b, at):
    b = bytearray(b)
    b[at] ^= 0x5A
    return bytes(b)


def main(side, iface, router_mac, params):
    p = json.loads(params)
    r = random.Random(7)
    kinds = kinds_wan(p) if side == "wan" else kinds_lan(p)
    sent = {}
    frames = []
    for name, build in kinds:
        for _ in range(p["count"]):
            frames.append(Ether(dst=router_mac, type=0x0800) / Raw(build(r)))
        sent[name] = p["count"]
    with open("/sys/class/net/%s/address" % iface) as f:
        own = f.read().strip()  # a bridge drops frames from 00:00:00:00:00:00
    for frame in frames:
        frame.src = own
    r.shuffle(frames)
    sendp(frames, iface=iface, verbose=False)
    print(json.dumps(sent), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
