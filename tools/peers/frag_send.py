"""Send one UDP datagram of SIZE bytes from SPORT to HOST:PORT as IPv4 fragments of at
most 1000 bytes, in reversed order (RFC 4787 REQ-14: a NAT takes them in any order).
scapy at layer 3; the payload is SIZE bytes of a repeating 'abcdefghij'.

    frag_send.py SPORT HOST PORT SIZE"""
import sys

from scapy.layers.inet import IP, UDP, fragment
from scapy.sendrecv import send

sport, host, port, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
payload = (b"abcdefghij" * (size // 10 + 1))[:size]
pieces = fragment(IP(dst=host, id=4242) / UDP(sport=sport, dport=port) / payload, fragsize=976)
send(list(reversed(pieces)), verbose=False)
print(len(pieces), flush=True)
