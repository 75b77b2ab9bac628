# DHCP's wire format for the server in dhcp.py: reading a client's message (RFC 2131 2,
# options RFC 2132), writing a reply (RFC 2131 4.3.1 table 3), and where the reply
# goes (RFC 2131 4.1). Pure Python for CPython and MicroPython; a slow path.
from array import array

from compat import const

DISCOVER = const(1)
OFFER = const(2)
REQUEST = const(3)
DECLINE = const(4)
ACK = const(5)
NAK = const(6)
RELEASE = const(7)
INFORM = const(8)

# parse() results other than a message type
MALFORMED = const(-1)    # too short, not Ethernet, bad cookie or options, no type...
NOT_REQUEST = const(-2)  # a BOOTREPLY: another server's
UNKNOWN = const(-3)      # a message type a client does not send to a server

COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 3
FIXED = const(240)            # the BOOTP header (236 bytes) and the cookie
MIN_REPLY = const(300)        # BOOTP's minimum (RFC 1542 3.3): some relays drop less
MIN_MMS = const(576)          # what every client accepts (RFC 2131 2, RFC 2132 9.10)
BROADCAST = "255.255.255.255"

# The options the server reads, by their index in Message.at/.ln.
OPTS = (50, 53, 54, 55, 57, 61)
O50 = const(0)   # requested IP address
O53 = const(1)   # message type
O54 = const(2)   # server identifier
O55 = const(3)   # parameter request list
O57 = const(4)   # maximum DHCP message size
O61 = const(5)   # client identifier
_OMAP = bytearray(256)  # option code -> index + 1
for _i, _c in enumerate(OPTS):
    _OMAP[_c] = _i + 1
_LEN_EXACT = (4, 1, 4, 0, 2, 0)  # 0: any length from _LEN_MIN
_LEN_MIN = (4, 1, 4, 1, 2, 2)
_ZEROS = bytes(MIN_REPLY)


def tlv(code, data):
    return bytes((code, len(data))) + bytes(data)


def zero4(buf, off):
    return not (buf[off] or buf[off + 1] or buf[off + 2] or buf[off + 3])


def dotted(buf, off):
    return "%d.%d.%d.%d" % (buf[off], buf[off + 1], buf[off + 2], buf[off + 3])


class Message:
    """Reads client messages; after parse(), at[k] is where the data of option OPTS[k]
    starts in the message (-1: absent) and ln[k] its length. Made once, reused."""

    def __init__(self):
        self.at = array("h", [-1] * len(OPTS))
        self.ln = bytearray(len(OPTS))

    def parse(self, msg, n):
        """The message type of msg[0:n], or MALFORMED, NOT_REQUEST, UNKNOWN."""
        if n < FIXED or n > len(msg):
            return MALFORMED
        if msg[0] != 1:  # op: BOOTREQUEST
            return NOT_REQUEST if msg[0] == 2 else MALFORMED
        if msg[1] != 1 or msg[2] != 6 or msg[236:240] != COOKIE:
            return MALFORMED  # not Ethernet, not DHCP
        if msg[28] & 1 or (zero4(msg, 28) and not (msg[32] or msg[33])):
            return MALFORMED  # chaddr: a group (broadcast) address, or zero
        at, ln = self.at, self.ln
        for k in range(len(OPTS)):
            at[k] = -1
        i = FIXED
        while i < n:  # RFC 2132 2: pad, end, else code, length, data
            code = msg[i]
            if code == 0:
                i += 1
                continue
            if code == 255:
                break
            if i + 1 >= n or i + 2 + msg[i + 1] > n:
                return MALFORMED  # runs past the end
            k = _OMAP[code] - 1
            if k >= 0 and at[k] < 0:  # the first one counts
                at[k], ln[k] = i + 2, msg[i + 1]
            i += 2 + msg[i + 1]
        for k in range(len(OPTS)):
            if at[k] >= 0 and (ln[k] < _LEN_MIN[k] or (_LEN_EXACT[k] and ln[k] != _LEN_EXACT[k])):
                return MALFORMED
        if at[O53] < 0:
            return MALFORMED  # plain BOOTP: not served
        t = msg[at[O53]]
        if t in (DISCOVER, REQUEST, DECLINE, RELEASE, INFORM):
            return t
        return UNKNOWN

    def option(self, msg, k):
        """Option OPTS[k] whole (code, length, data) as a slice of msg, for echoing."""
        return msg[self.at[k] - 2:self.at[k] + self.ln[k]]

    def limit(self, msg, size):
        """How long a reply may be: what the client takes (option 57 counts the IP and
        UDP headers, RFC 2132 9.10; below 576 it means nothing), within size."""
        mms = MIN_MMS
        a = self.at[O57]
        if a >= 0:
            mms = max(mms, msg[a] << 8 | msg[a + 1])
        return min(size, mms - 28)


# ---- the reply, written into a memoryview of the caller's buffer (a write past its
# end raises instead of growing it)

def begin(mv, msg, mtype, yiaddr):
    """The fixed part of a reply to msg (RFC 2131 4.3.1 table 3); yiaddr: 4 bytes or
    None for 0.0.0.0. Returns where the options start."""
    mv[0:FIXED] = _ZEROS[0:FIXED]
    mv[0], mv[1], mv[2] = 2, 1, 6                  # BOOTREPLY, Ethernet
    mv[4:8] = msg[4:8]                             # xid
    flag = msg[10] & 0x80                          # broadcast, as the client set it
    if mtype == NAK and not zero4(msg, 24):
        flag = 0x80  # 4.3.2: a NAK through a relay is broadcast on the client's link
    mv[10] = flag
    if mtype == ACK:
        mv[12:16] = msg[12:16]                     # ciaddr
    if yiaddr:
        mv[16:20] = yiaddr
    mv[24:44] = msg[24:44]                         # giaddr, chaddr
    mv[236:240] = COOKIE
    return FIXED


def put(mv, pos, limit, option):
    """Append a whole option if it fits before the END byte; else leave it out."""
    end = pos + len(option)
    if end + 1 > limit:
        return pos
    mv[pos:end] = option
    return end


def put_params(mv, pos, limit, msg, m, params):
    """The parameter options ((code, option), ...): in the order of the client's option
    55 where it gave one (RFC 2131 4.3.1), then the rest."""
    done = 0
    a = m.at[O55]
    if a >= 0:
        for i in range(a, a + m.ln[O55]):
            for bit, (code, option) in enumerate(params):
                if msg[i] == code and not done & (1 << bit):
                    pos = put(mv, pos, limit, option)
                    done |= 1 << bit
    for bit, (code, option) in enumerate(params):
        if not done & (1 << bit):
            pos = put(mv, pos, limit, option)
    return pos


def finish(mv, pos, limit):
    """END, then zeros up to BOOTP's minimum size if the client takes it. The length."""
    mv[pos] = 255
    pos += 1
    if pos < MIN_REPLY <= limit:
        mv[pos:MIN_REPLY] = _ZEROS[pos:MIN_REPLY]
        pos = MIN_REPLY
    return pos


def destination(msg, mtype, yiaddr):
    """(ip, port, broadcast, mac) for a reply to msg, RFC 2131 4.1. mac is set only for a
    unicast to a client that has no address yet and so cannot answer ARP: the frame
    goes to that MAC. A transport that cannot send to a MAC it has not resolved may
    broadcast instead (255.255.255.255:68): compliant clients accept that. mac None:
    send to ip as usual (the client or relay agent answers ARP), or broadcast."""
    if not zero4(msg, 24):
        return (dotted(msg, 24), 67, False, None)   # the relay agent's server port
    if mtype == NAK:
        return (BROADCAST, 68, True, None)
    if not zero4(msg, 12):
        return (dotted(msg, 12), 68, False, None)   # RENEWING, REBINDING, INFORM
    if msg[10] & 0x80:
        return (BROADCAST, 68, True, None)          # the client asked for broadcast
    return (dotted(yiaddr, 0), 68, False, bytes(msg[28:34]))
