"""Open a UDP mapping and wait on it: send HELLO from LPORT to HOST:PORT, print SENT,
wait for a line on stdin (meanwhile the test moves time on), then print the first
datagram that arrives within TIMEOUT seconds as GOT <text> from <ip>:<port>, or NOTHING.

    udp_wait.py LPORT HOST PORT TIMEOUT"""
import socket
import sys

lport, host, port, timeout = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", lport))
s.sendto(b"hello", (host, port))
print("SENT", flush=True)
sys.stdin.readline()
s.settimeout(timeout)
try:
    data, peer = s.recvfrom(65536)
    text = data.decode(errors="replace")
    print("GOT %s from %s:%d" % (text if len(text) < 100 else "%d bytes %s..%s" % (
        len(text), text[:10], text[-10:]), peer[0], peer[1]), flush=True)
except socket.timeout:
    print("NOTHING", flush=True)
