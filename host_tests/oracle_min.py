"""Minimal scapy-built packets for the engine's internal tests."""
from scapy.all import IP, UDP, raw

import nat


def udp(src, dst, sport, dport, payload=b"x"):
    return bytearray(raw(IP(src=nat.ip_str(src), dst=nat.ip_str(dst)) / UDP(sport=sport, dport=dport) / payload))
