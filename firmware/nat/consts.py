from compat import const

ICMP = const(1)
TCP = const(6)
UDP = const(17)

OK = const(0)
UNTRANSLATED = const(1)
TTL_EXCEEDED = const(2)
OVERLAP = const(3)
CANNOT_NAT = const(4)
MALFORMED = const(5)
FULL = const(6)

_NAMES = ("OK", "UNTRANSLATED", "TTL_EXCEEDED", "OVERLAP", "CANNOT_NAT", "MALFORMED", "FULL")

NAT = const(0)
REDIRECT = const(1)


# Protocol numbers and the names the configuration and the REPL use for them.
PROTOCOLS = ((TCP, "tcp"), (UDP, "udp"), (ICMP, "icmp"))


def proto_name(number):
    for n, name in PROTOCOLS:
        if n == number:
            return name
    return str(number)


def proto_number(name, allowed=("tcp", "udp", "icmp")):
    """The number of a protocol by name; ValueError naming the allowed ones."""
    if name in allowed:
        for n, known in PROTOCOLS:
            if known == name:
                return n
    raise ValueError("proto must be %s, not %r" % (" or ".join('"%s"' % a for a in allowed), name))


def status_name(code):
    if isinstance(code, int) and 0 <= code < len(_NAMES):
        return _NAMES[code]
    raise ValueError("not a nat status code: %r" % (code,))

# ---- the layout the cores share (nat/_python.py, nat/_viper.py) and the router reads.
# Hot-path modules keep private const() copies of what they use (MicroPython inlines
# only a module's own consts); host_tests/test_engine_layout.py checks every copy.

# ICMP types as bit sets (bit t set: type t is in the set; all types here are < 32).
QUERY_TYPES = const(0x7E101)    # echo 0/8, timestamp 13/14, information 15/16, mask 17/18
REQUEST_TYPES = const(0x2A100)  # the requests among them: 8, 13, 15, 17
ERROR_TYPES = const(0x1838)     # unreachable 3, source quench 4, redirect 5, time
                                # exceeded 11, parameter problem 12 (RFC 5508 section 4)

# IPv4 header (RFC 791) and transport header offsets, in bytes.
IP_VER_IHL = const(0)
IP_LEN = const(2)
IP_FRAG = const(6)     # flags and fragment offset
IP_TTL = const(8)
IP_PROTO = const(9)
IP_CSUM = const(10)
IP_SRC = const(12)
IP_DST = const(16)
IP_MIN = const(20)     # header without options
L4_SPORT = const(0)    # TCP and UDP, from the transport header
L4_DPORT = const(2)
TCP_OFF = const(12)    # data offset
TCP_FLAGS = const(13)
TCP_CSUM = const(16)
TCP_MIN = const(20)
TCP_FIN = const(1)     # flag bits, in the byte at TCP_FLAGS
TCP_SYN = const(2)
TCP_RST = const(4)
UDP_LEN = const(4)
UDP_CSUM = const(6)
UDP_MIN = const(8)
ICMP_CODE = const(1)   # (the type is at 0)
ICMP_CSUM = const(2)
ICMP_ID = const(4)     # queries
ICMP_MIN = const(8)

# Packet fields (Packet.fields, an array('H')): what parse() learnt, one word each.
F_OK = const(0)        # 1 after a successful parse
F_LEN = const(1)       # IPv4 total length
F_L4 = const(2)        # transport header offset (IHL * 4)
F_PROTO = const(3)
F_TTL = const(4)
F_KIND = const(5)      # K_* below
F_SPORT = const(6)     # TCP/UDP source port, ICMP query id
F_DPORT = const(7)     # TCP/UDP destination port, ICMP query id
F_TYPE = const(8)      # ICMP type, or NO_ICMP
F_CODE = const(9)      # ICMP code, or NO_ICMP
F_FRAG = const(10)     # the flags and fragment offset word (header bytes 6-7) as sent
F_OPT = const(11)      # OPT_* bits: the IP options the packet carries
F_CAP = const(12)      # the bound buffer's length (Packet.bind): parse() reads no further
F_WRITABLE = const(13)  # 1 when the bound buffer may be rewritten in place (Packet.bind)
F_WORDS = const(14)

NO_ICMP = const(0xFFFF)   # F_TYPE/F_CODE of a packet that is not ICMP, or a later fragment
FRAG_DF = const(0x4000)   # in F_FRAG: don't fragment
FRAG_MF = const(0x2000)   # in F_FRAG: more fragments
FRAG_OFFSET = const(0x1FFF)
FRAG_ANY = const(0x3FFF)  # MF or an offset: any fragment of a datagram
OPT_SOURCE_ROUTE = const(1)   # loose or strict source route (RFC 791 options 131, 137)

# What a parsed packet is, for translation.
K_OTHER = const(0)     # other protocol, non-first fragment, other ICMP: never translated
K_TCP = const(1)
K_UDP = const(2)
K_QUERY = const(3)     # ICMP echo, timestamp, information, address mask
K_ERROR = const(4)     # ICMP unreachable, source quench, redirect, time exceeded, parameter problem

# A protocol's flow table is one array('H'), a header then the slots, and beside it
# another array('H') of chain heads: the exact chains (B = H_MASK + 1 heads, the only ones
# the per-packet path reads), then the inside-endpoint chains and the outside-endpoint
# chains (E = H_EMASK + 1 heads each).
H_MASK = const(0)      # exact buckets - 1 (a power of two)
H_CAP = const(1)       # slots
H_FREE = const(2)      # head of the free-slot list (linked through S_NEXT)
H_USED = const(3)      # slots in use
H_NOW = const(4)       # the table's clock, whole seconds mod 2**16 (tick())
H_SEED = const(5)      # per-table hash seed
H_HAND = const(6)      # the clock hand: where the next expiry or eviction scan starts
H_T_EST = const(7)     # timeouts, seconds: TCP established
H_T_TRANS = const(8)   # ... TCP opening, closing, reset (transitory)
H_T_IDLE = const(9)    # ... UDP and ICMP query flows
H_EMASK = const(10)    # endpoint buckets - 1
HDR = const(12)        # (word 11 reserved)

# A slot holds one flow, both directions. Direction d's key is the 6 words at d * 6:
# (src_hi, src_lo, dst_hi, dst_lo, sport, dport) as seen on the wire. A packet that
# matches direction d leaves as the other direction's key reversed. Direction 0 is the
# one that opened the flow.
KEY_SRC_HI = const(0)  # a key's words, from the key's start
KEY_SRC_LO = const(1)
KEY_DST_HI = const(2)
KEY_DST_LO = const(3)
KEY_SPORT = const(4)
KEY_DPORT = const(5)
KEY_WORDS = const(6)
S_KEY1 = const(6)      # direction 1's key (direction 0's is at 0)
S_NEXT = const(12)     # exact chain successor for direction 0, +1 for direction 1; the
                       # free list runs through S_NEXT
S_NEXT_IN = const(14)  # inside-endpoint chain: flows of one inside ip:port (mapping, RFC 4787)
S_NEXT_OUT = const(15) # outside-endpoint chain: flows leaving from one outside ip:port
S_TIME = const(16)     # last use, seconds mod 2**16 (H_NOW when it was used)
S_STATE = const(17)    # FL_* and ST_* bits
SLOT = const(18)       # 36 bytes; with the chain heads 42-46 bytes a flow

FL_USED = const(1)
FL_REDIRECT = const(2)  # made by add(mode=REDIRECT): the inside end is direction 1's source
ST_ANSWERED = const(4)  # a packet went in direction 1: the flow is answered (else embryonic)
ST_FIN0 = const(8)      # TCP: a FIN seen in direction 0 (ST_FIN0 << d for direction d)
ST_FIN1 = const(16)
ST_RST = const(32)      # TCP: a RST, either way
ST_ALL = const(0x3C)    # every ST_ bit: what a reopening SYN clears

NONE = const(0xFFFF)   # no slot / no entry; an exact chain entry is slot * 2 + direction
MAX_FLOWS = const(32767)
