# What the LAN's DHCP clients call themselves: the host name option (12, RFC 2132 3.14)
# of the messages they send the router's DHCP server, by MAC, for the page's list of
# clients. The slow path notes each DHCP message it hands the server (forward/slowpath.py,
# _to_router); never on the per-packet path. Bounded: at most MAX names, the one heard
# from longest ago goes first.
from .dhcp_msg import COOKIE, FIXED
from .dhcp_config import mac_str

MAX = 64
_HOST_NAME = 12
_NAME_MAX = 63   # a DNS label's length (RFC 1035 2.3.4)

_names = {}      # MAC (6 bytes) -> [name, when heard (a count)]
_heard = [0]


def note(buf, start, end):
    """buf[start:end]: a DHCP message a LAN client sent. Keeps its host name, if any."""
    n = end - start
    if n < FIXED or buf[start] != 1 or bytes(buf[start + 236:start + 240]) != COOKIE:
        return
    i = start + FIXED
    while i + 1 < end and buf[i] != 255:  # RFC 2132 2: pad 0, end 255, else code, length
        if buf[i] == 0:
            i += 1
            continue
        size = buf[i + 1]
        if buf[i] == _HOST_NAME and i + 2 + size <= end:
            _keep(bytes(buf[start + 28:start + 34]), _printable(buf, i + 2, size))
            return
        i += 2 + size


def _printable(buf, at, size):
    return "".join(chr(c) for c in buf[at:at + min(size, _NAME_MAX)] if 32 < c < 127)


def _keep(mac, name):
    if not name:
        return
    _heard[0] += 1
    if mac not in _names and len(_names) >= MAX:
        oldest = None
        for k, v in _names.items():
            if oldest is None or v[1] < _names[oldest][1]:
                oldest = k
        del _names[oldest]
    _names[mac] = [name, _heard[0]]


def names():
    """{"aa:bb:cc:dd:ee:ff": host name} of the clients heard from."""
    return {mac_str(k): v[0] for k, v in _names.items()}


def forget():
    _names.clear()
