"""Capture IPv4 packets on an interface (Ethernet or TUN, both ways) for a bounded time, inside a namespace.

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
    f, (_, proto, _, hatype, _) = s.recvfrom(65535)
    if proto != 0x0800:
        continue
    ip = f[14:] if hatype == 1 else f  # Ethernet, or a TUN's bare IP (the PPP LAN's)
    hl = (ip[0] & 15) * 4
    sport = dport = 0
    if ip[9] in (6, 17):
        sport, dport = struct.unpack("!HH", ip[hl:hl + 4])
    print(socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[9], sport, dport, flush=True)
