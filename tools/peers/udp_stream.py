"""Send COUNT datagrams of SIZE bytes from LPORT to HOST:PORT, RATE a second: one flow,
for measuring what a known flow's packet costs (tools/qemu_profile.py). Bounded: at most
100000 datagrams and 600 seconds.

    udp_stream.py LPORT HOST PORT COUNT RATE [SIZE]"""
import socket
import sys
import time

lport, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
count, rate = min(int(sys.argv[4]), 100000), float(sys.argv[5])
size = int(sys.argv[6]) if len(sys.argv) > 6 else 18
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", lport))
payload = bytes(size)
t0 = time.monotonic()
for i in range(count):
    due = t0 + i / rate
    if due - t0 > 600:
        break
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    s.sendto(payload, (host, port))
print(i + 1, flush=True)
