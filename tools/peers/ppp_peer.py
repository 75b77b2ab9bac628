"""The LAN host's end of the emulated board's PPP link, in user space: pppd cannot run
where the kernel has no PPP (CONFIG_PPP unset), so this program speaks PPP (RFC 1661,
async HDLC framing RFC 1662, IPCP RFC 1332) on the board's serial pty and hands the IP
packets to a TUN interface, where the namespace's real Linux stack (ping, curl) uses
them.

    ppp_peer.py PTY LOCAL REMOTE [--seconds N]

LOCAL is this host's address on tun0, REMOTE the board's (IPCP tells the board to take
it). Prints "UP" once IPCP is open both ways; runs until killed or N seconds pass."""
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
import tty

FLAG, ESC = 0x7E, 0x7D
LCP, IPCP, IP = 0xC021, 0x8021, 0x0021
CONF_REQ, CONF_ACK, CONF_NAK, CONF_REJ, TERM_REQ, TERM_ACK = 1, 2, 3, 4, 5, 6
CODE_REJ, PROTO_REJ, ECHO_REQ, ECHO_REP = 7, 8, 9, 10
IPCP_ADDR = 3
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


def fcs16(data):
    """RFC 1662 appendix C.2: the frame check sequence (sent complemented, LSB first)."""
    fcs = 0xFFFF
    for b in data:
        fcs ^= b
        for _ in range(8):
            fcs = (fcs >> 1) ^ 0x8408 if fcs & 1 else fcs >> 1
    return fcs


def frame(protocol, payload):
    """One async-HDLC frame: address, control, protocol, payload, FCS, every byte below
    0x20 and the flag and escape bytes escaped (always allowed, whatever ACCM says)."""
    body = bytes((0xFF, 0x03)) + struct.pack(">H", protocol) + payload
    body += struct.pack("<H", fcs16(body) ^ 0xFFFF)
    out = bytearray((FLAG,))
    for b in body:
        if b < 0x20 or b in (FLAG, ESC):
            out += bytes((ESC, b ^ 0x20))
        else:
            out.append(b)
    out.append(FLAG)
    return bytes(out)


class Deframer:
    """Bytes from the serial line in, whole checked frames (protocol, payload) out; the
    peer may compress the address/control field and the protocol (ACFC, PFC)."""

    def __init__(self):
        self.buf = bytearray()
        self.escaped = False

    def feed(self, data):
        out = []
        for b in data:
            if b == FLAG:
                if len(self.buf) >= 4 and fcs16(self.buf) == 0xF0B8:  # the good-FCS residue
                    got = self.parse(bytes(self.buf[:-2]))
                    if got is not None:
                        out.append(got)
                self.buf.clear()
                self.escaped = False
            elif b == ESC:
                self.escaped = True
            else:
                self.buf.append(b ^ 0x20 if self.escaped else b)
                self.escaped = False
        return out

    @staticmethod
    def parse(body):
        if body[:2] == b"\xff\x03":
            body = body[2:]
        if not body:
            return None
        if body[0] & 1:  # a one-byte protocol (PFC)
            return body[0], body[1:]
        return (body[0] << 8 | body[1]), body[2:]


def options(data):
    """[(type, value)] of a Configure packet's options."""
    out, i = [], 0
    while i + 2 <= len(data) and data[i + 1] >= 2:
        out.append((data[i], data[i + 2:i + data[i + 1]]))
        i += data[i + 1]
    return out


def packet(code, ident, data=b""):
    return struct.pack(">BBH", code, ident, 4 + len(data)) + data


def option(kind, value):
    return bytes((kind, 2 + len(value))) + value


class Peer:
    def __init__(self, serial_fd, tun_fd, local, remote):
        self.serial, self.tun = serial_fd, tun_fd
        self.local = bytes(int(x) for x in local.split("."))
        self.remote = bytes(int(x) for x in remote.split("."))
        self.deframer = Deframer()
        self.ident = 0
        self.acked = {LCP: False, IPCP: False}  # our requests, acked by the board
        self.acking = {LCP: False, IPCP: False}  # the board's, acked by us
        self.said_up = False

    def send(self, protocol, payload):
        os.write(self.serial, frame(protocol, payload))

    def request(self, protocol):
        self.ident = (self.ident + 1) & 0xFF
        data = b"" if protocol == LCP else option(IPCP_ADDR, self.local)
        self.send(protocol, packet(CONF_REQ, self.ident, data))

    def control(self, protocol, payload):
        if len(payload) < 4:
            return
        code, ident = payload[0], payload[1]
        data = payload[4:struct.unpack(">H", payload[2:4])[0]]
        if code == CONF_REQ:
            self.configure(protocol, ident, data)
        elif code == CONF_ACK:
            self.acked[protocol] = True
            if protocol == LCP:
                self.request(IPCP)
        elif code in (CONF_NAK, CONF_REJ):
            self.request(protocol)  # we ask for nothing it could refuse: ask again
        elif code == TERM_REQ:
            self.send(protocol, packet(TERM_ACK, ident))
            self.acked = {LCP: False, IPCP: False}
            self.acking = {LCP: False, IPCP: False}
        elif code == ECHO_REQ and protocol == LCP:
            self.send(LCP, packet(ECHO_REP, ident, b"\0\0\0\0" + data[4:]))

    def configure(self, protocol, ident, data):
        opts = options(data)
        if protocol == LCP:
            # Whatever the board asks (MRU, ACCM, magic number, PFC, ACFC) suits us: we
            # read compressed frames and escape every control byte anyway.
            self.send(LCP, packet(CONF_ACK, ident, data))
            self.acking[LCP] = True
            if not self.acked[LCP]:
                self.request(LCP)
            return
        # IPCP: the board takes the address it is told; every other option (VJ, DNS) is
        # refused (RFC 1661 5.4: a Configure-Reject lists them).
        others = b"".join(option(k, v) for k, v in opts if k != IPCP_ADDR)
        if others:
            self.send(IPCP, packet(CONF_REJ, ident, others))
        elif dict(opts).get(IPCP_ADDR) != self.remote:
            self.send(IPCP, packet(CONF_NAK, ident, option(IPCP_ADDR, self.remote)))
        else:
            self.send(IPCP, packet(CONF_ACK, ident, data))
            self.acking[IPCP] = True

    def up(self):
        return self.acked[IPCP] and self.acking[IPCP]

    def serial_in(self, data):
        for protocol, payload in self.deframer.feed(data):
            if protocol in (LCP, IPCP):
                self.control(protocol, payload)
            elif protocol == IP and self.up():
                os.write(self.tun, payload)
            elif protocol != IP and self.acking[LCP]:
                self.ident = (self.ident + 1) & 0xFF  # RFC 1661 5.7
                self.send(LCP, packet(PROTO_REJ, self.ident, struct.pack(">H", protocol)
                                      + payload[:1400]))
        if self.up() and not self.said_up:
            print("UP", flush=True)
            self.said_up = True


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main(argv):
    pty, local, remote = argv[:3]
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else None
    serial = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(serial)
    attrs = termios.tcgetattr(serial)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(serial, termios.TCSANOW, attrs)
    tun = open_tun("tun0")
    for cmd in (["ip", "addr", "add", local, "peer", remote, "dev", "tun0"],
                ["ip", "link", "set", "tun0", "up", "mtu", "1500"],
                ["ip", "route", "replace", "default", "via", remote, "dev", "tun0"]):
        subprocess.run(cmd, check=True)
    peer = Peer(serial, tun, local, remote)
    peer.request(LCP)
    deadline = None if seconds is None else time.monotonic() + seconds
    last_request = time.monotonic()
    while deadline is None or time.monotonic() < deadline:
        ready = select.select([serial, tun], [], [], 0.5)[0]
        if serial in ready:
            peer.serial_in(os.read(serial, 4096))
        if tun in ready:
            pkt = os.read(tun, 65536)
            if peer.up():
                os.write(serial, frame(IP, pkt))
        if not peer.acked[LCP] and time.monotonic() - last_request > 1:
            peer.request(LCP)  # the board may boot after us: ask until it answers
            last_request = time.monotonic()


if __name__ == "__main__":
    main(sys.argv[1:])
