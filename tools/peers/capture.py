"""Capture IPv4 frames on an interface (both ways) for a bounded time, inside a namespace.

    capture.py IFNAME SECONDS

Prints 'ready', then one line per frame: 'src dst proto sport dport' (ports 0 for ICMP
and other protocols)."""
import select
import socket
import struct
import sys
import time
ifname, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
print("ready", flush=True)
end = time.monotonic() + seconds
while True:
    left = end - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        break
    f = s.recv(65535)
    if f[12:14] != b"\x08\x00":
        continue
    ip = f[14:]
    hl = (ip[0] & 15) * 4
    sport = dport = 0
    if ip[9] in (6, 17):
        sport, dport = struct.unpack("!HH", ip[hl:hl + 4])
    print(socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[9], sport, dport, flush=True)
