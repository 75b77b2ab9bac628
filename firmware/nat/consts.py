try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

ICMP = const(1)
TCP = const(6)
UDP = const(17)

OK = const(0)
UNTRANSLATED = const(1)
TTL_EXCEEDED = const(2)
OVERLAP = const(3)
CANNOT_NAT = const(4)
MALFORMED = const(5)

_NAMES = ("OK", "UNTRANSLATED", "TTL_EXCEEDED", "OVERLAP", "CANNOT_NAT", "MALFORMED")

NAT = const(0)
REDIRECT = const(1)


def status_name(code):
    if isinstance(code, int) and 0 <= code < len(_NAMES):
        return _NAMES[code]
    raise ValueError("not a nat status code: %r" % (code,))

# ---- internal layout, shared by the pure-Python twin (flows.py) and the viper core (_viper.py)

# Packet._f: what parse() learnt, one 16-bit word each.
F_OK = const(0)        # 1 after a successful parse
F_LEN = const(1)       # IPv4 total length
F_L4 = const(2)        # transport header offset (IHL * 4)
F_PROTO = const(3)
F_TTL = const(4)
F_KIND = const(5)      # K_* below
F_SPORT = const(6)     # TCP/UDP source port, ICMP query id
F_DPORT = const(7)     # TCP/UDP destination port, ICMP query id
F_TYPE = const(8)      # ICMP type
F_CODE = const(9)      # ICMP code
F_WORDS = const(10)

# What a parsed packet is, for translation.
K_OTHER = const(0)     # other protocol, non-first fragment, other ICMP: never translated
K_TCP = const(1)
K_UDP = const(2)
K_QUERY = const(3)     # ICMP echo, timestamp, information, address mask
K_ERROR = const(4)     # ICMP unreachable, source quench, redirect, time exceeded, parameter problem

# A protocol's flow table is one array('H'), a header then the slots, and beside it
# another array('H') of bucket heads (chain entries).
H_MASK = const(0)      # buckets - 1 (a power of two)
H_CAP = const(1)       # slots
H_MRU = const(2)       # most recently used slot, or NONE
H_LRU = const(3)       # least recently used slot, or NONE
H_FREE = const(4)      # head of the free-slot list (linked through S_NEWER)
H_USED = const(5)      # slots in use
H_NOW_HI = const(6)    # the table's clock, seconds, as two halves (32-bit ints would allocate)
H_NOW_LO = const(7)
H_SEED = const(8)      # per-table hash seed
HDR = const(10)        # (word 9 reserved)

# A slot holds one flow, both directions. Direction d's key is the 6 words at d * 6:
# (src_hi, src_lo, dst_hi, dst_lo, sport, dport) as seen on the wire. A packet that
# matches direction d leaves as the other direction's key reversed.
S_KEY1 = const(6)
S_NEXT = const(12)     # bucket chain successor for direction 0, +1 for direction 1
S_NEWER = const(14)    # LRU neighbours (and the free list through S_NEWER)
S_OLDER = const(15)
S_TIME_HI = const(16)  # last use, seconds
S_TIME_LO = const(17)
S_FLAGS = const(18)    # FL_* bits; room for the TCP state of the flow lifecycle work
S_SPARE = const(19)    # reserved: filtering / fairness bookkeeping
SLOT = const(20)       # 40 bytes, plus 4 bytes of bucket heads per flow: 44 B/flow

FL_USED = const(1)
FL_REDIRECT = const(2)

NONE = const(0xFFFF)   # no slot / no entry; a chain entry is slot * 2 + direction
MAX_FLOWS = const(32767)
