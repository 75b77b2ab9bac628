"""Send one UDP datagram TEXT from LPORT to HOST:PORT, COUNT times a tenth of a second
apart (bounded).

    udp_send.py LPORT HOST PORT TEXT [COUNT]"""
import socket
import sys
import time

lport, host, port, text = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", lport))
for _ in range(min(count, 100)):
    s.sendto(text.encode(), (host, port))
    time.sleep(0.1)
