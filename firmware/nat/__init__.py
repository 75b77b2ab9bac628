# natrouter's translation engine: a fixed-size flow table and in-place IPv4 rewriting.
# Contract: nat/README.md. Pure Python for CPython and MicroPython, with a viper core
# (nat/_viper.py) where the runtime has native emitters; nat/core.py picks one.
from .consts import (ICMP, TCP, UDP, OK, UNTRANSLATED, TTL_EXCEEDED, OVERLAP,
                     CANNOT_NAT, MALFORMED, FULL, NAT, REDIRECT, PROTOCOLS, proto_name,
                     proto_number, status_name)
from .addr import ip, ip_str
from .packet import Packet
from .table import Table, Ports
