# natrouter's translation engine: a fixed-size flow table and in-place IPv4 rewriting.
# Public contract: shared/spec/nat-api.md. Pure Python for CPython and MicroPython,
# with an optional viper core (nat/_viper.py) where the runtime has native emitters.
from .consts import (ICMP, TCP, UDP, OK, UNTRANSLATED, TTL_EXCEEDED, OVERLAP,
                     CANNOT_NAT, MALFORMED, NAT, REDIRECT, status_name)
from .addr import ip, ip_str
from .packet import Packet
from .table import Table, Ports
