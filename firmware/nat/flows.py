# The flow table's index, on one protocol's arrays (layout: consts.py):
# - the exact chains, which find a flow by either direction's key (the per-packet path);
# - the inside-endpoint chains: every flow of one inside ip:port, so a new flow from it
#   gets the outside port it already has (endpoint-independent mapping, RFC 4787 REQ-1);
# - the outside-endpoint chains: every flow leaving from one outside ip:port, so a packet
#   from a new remote finds whose port it is (filtering, RFC 4787 REQ-8; hairpinning);
# - the free list, and the clock hand that expiry and eviction scans start from.
# find() runs per packet (the pure-Python core calls it); the rest when flows come and go.
# Everything works on 16-bit words, small ints on any MicroPython.
from .consts import const  # micropython.const, or a stand-in on CPython

# ---- layout: written by tools/layout.py from the modules it names; do not edit
# nat/consts.py
_H_MASK = const(0)
_H_CAP = const(1)
_H_FREE = const(2)
_H_USED = const(3)
_H_NOW = const(4)
_H_SEED = const(5)
_H_HAND = const(6)
_H_T_EST = const(7)
_H_T_TRANS = const(8)
_H_T_IDLE = const(9)
_H_EMASK = const(10)
_HDR = const(12)
_KEY_SRC_HI = const(0)
_KEY_SRC_LO = const(1)
_KEY_DST_HI = const(2)
_KEY_DST_LO = const(3)
_KEY_SPORT = const(4)
_KEY_DPORT = const(5)
_KEY_WORDS = const(6)
_S_KEY1 = const(6)
_S_NEXT = const(12)
_S_NEXT_IN = const(14)
_S_NEXT_OUT = const(15)
_S_TIME = const(16)
_S_STATE = const(17)
_SLOT = const(18)
_FL_USED = const(1)
_FL_REDIRECT = const(2)
_ST_ANSWERED = const(4)
_ST_FIN0 = const(8)
_ST_FIN1 = const(16)
_ST_RST = const(32)
_NONE = const(0xFFFF)
# ---- end of layout


def bucket(mem, a, b, c, d, e, g):
    # Multipliers carry low bits upwards, the shifts bring high bits down; every
    # intermediate stays below 2**24 so this is exact on 32-bit MicroPython and viper.
    x = (b ^ mem[_H_SEED]) * 37 + d * 101 + e * 13 + g * 7 + a + c * 3
    return (x ^ (x >> 9) ^ (x >> 17)) & mem[_H_MASK]


def find(mem, heads, a, b, c, d, e, g):
    """The exact chain entry (slot * 2 + direction) keyed (a, b, c, d, e, g), or NONE."""
    ent = heads[bucket(mem, a, b, c, d, e, g)]
    while ent != _NONE:
        k = _HDR + (ent >> 1) * _SLOT + (ent & 1) * _KEY_WORDS
        if (mem[k + _KEY_SPORT] == e and mem[k + _KEY_DPORT] == g and mem[k + _KEY_SRC_LO] == b
                and mem[k + _KEY_DST_LO] == d and mem[k + _KEY_SRC_HI] == a
                and mem[k + _KEY_DST_HI] == c):
            return ent
        ent = mem[_HDR + (ent >> 1) * _SLOT + _S_NEXT + (ent & 1)]
    return _NONE


def timeout(mem, state):
    """How long a flow in `state` may stay idle, seconds. TCP (the table with an
    established timeout): answered and neither reset nor closed both ways, the
    established one (RFC 5382 REQ-5); else the transitory one (opening, closing, after a
    RST: RFC 7857 2.1, 2.2). UDP and ICMP: the idle one (RFC 4787 REQ-5, RFC 5508 REQ-2)."""
    if not mem[_H_T_EST]:
        return mem[_H_T_IDLE]
    if (state & _ST_ANSWERED and not state & _ST_RST
            and (state & (_ST_FIN0 | _ST_FIN1)) != (_ST_FIN0 | _ST_FIN1)):
        return mem[_H_T_EST]
    return mem[_H_T_TRANS]


def idle(mem, s):
    """Seconds since slot s was last used (mod 2**16: the expiry scan visits every flow
    long before that wraps)."""
    return (mem[_H_NOW] - mem[_HDR + s * _SLOT + _S_TIME]) & 0xFFFF


def expired(mem, s):
    return idle(mem, s) > timeout(mem, mem[_HDR + s * _SLOT + _S_STATE])


# ---- the endpoints of a flow

def inside(mem, s):
    """Where slot s's inside endpoint (ip_hi, ip_lo, port) starts: the opener's source,
    or for a REDIRECT flow (a port forward, a filtered-in or hairpinned flow) the final
    destination's reply source."""
    base = _HDR + s * _SLOT
    return base if not mem[base + _S_STATE] & _FL_REDIRECT else base + _S_KEY1


def outside(mem, s):
    """Where slot s's outside endpoint (xl_host_hi, xl_host_lo, xl_port) starts, as
    (hi, lo, port) = key words (DST_HI, DST_LO, DPORT) from there."""
    base = _HDR + s * _SLOT
    return base + _S_KEY1 if not mem[base + _S_STATE] & _FL_REDIRECT else base


def endpoint_bucket(mem, hi, lo, port, out):
    x = (lo ^ mem[_H_SEED]) * 37 + hi * 11 + port * 101 + out
    return (mem[_H_MASK] + 1) + out * (mem[_H_EMASK] + 1) + (
        (x ^ (x >> 9) ^ (x >> 15)) & mem[_H_EMASK])


def _endpoint(mem, s, out):
    """(head index, hi, lo, port) of slot s's inside (out=0) or outside (out=1) endpoint."""
    if out:
        k = outside(mem, s)
        hi, lo, port = mem[k + _KEY_DST_HI], mem[k + _KEY_DST_LO], mem[k + _KEY_DPORT]
    else:
        k = inside(mem, s)
        hi, lo, port = mem[k + _KEY_SRC_HI], mem[k + _KEY_SRC_LO], mem[k + _KEY_SPORT]
    return endpoint_bucket(mem, hi, lo, port, out), hi, lo, port


def first_at(mem, heads, hi, lo, port, out, after=_NONE):
    """The first slot (after slot `after`, when given) of the chain whose inside (out=0)
    or outside (out=1) endpoint is hi.lo:port, or NONE. A plain walk: nothing allocated,
    so an unsolicited packet's lookup makes no garbage."""
    link = _S_NEXT_OUT if out else _S_NEXT_IN
    s = heads[endpoint_bucket(mem, hi, lo, port, out)] if after == _NONE else \
        mem[_HDR + after * _SLOT + link]
    for _ in range(mem[_H_CAP]):  # bounded: the REPL may read while the router writes
        if s == _NONE:
            return _NONE
        if out:
            k = outside(mem, s)
            if (mem[k + _KEY_DST_HI] == hi and mem[k + _KEY_DST_LO] == lo
                    and mem[k + _KEY_DPORT] == port):
                return s
        else:
            k = inside(mem, s)
            if (mem[k + _KEY_SRC_HI] == hi and mem[k + _KEY_SRC_LO] == lo
                    and mem[k + _KEY_SPORT] == port):
                return s
        s = mem[_HDR + s * _SLOT + link]
    return _NONE


# ---- flows coming and going (slow path)

def clear(mem, heads):
    """Forget every flow: empty chains, every slot on the free list."""
    for i in range(len(heads)):
        heads[i] = _NONE
    cap = mem[_H_CAP]
    mem[_H_USED] = 0
    mem[_H_HAND] = 0
    for s in range(cap):
        base = _HDR + s * _SLOT
        for i in range(_SLOT):
            mem[base + i] = 0
        mem[base + _S_NEXT] = s + 1 if s + 1 < cap else _NONE
    mem[_H_FREE] = 0


def _key_bucket(mem, ent):
    k = _HDR + (ent >> 1) * _SLOT + (ent & 1) * _KEY_WORDS
    return bucket(mem, mem[k + _KEY_SRC_HI], mem[k + _KEY_SRC_LO], mem[k + _KEY_DST_HI],
                  mem[k + _KEY_DST_LO], mem[k + _KEY_SPORT], mem[k + _KEY_DPORT])


def _link(mem, heads, head, s, at):
    mem[_HDR + s * _SLOT + at] = heads[head]
    heads[head] = s


def _unlink(mem, heads, head, s, at):
    """Take s out of the chain at heads[head] linked through word `at` (slot units)."""
    cur = heads[head]
    if cur == s:
        heads[head] = mem[_HDR + s * _SLOT + at]
        return
    while cur != _NONE:
        link = _HDR + cur * _SLOT + at
        if mem[link] == s:
            mem[link] = mem[_HDR + s * _SLOT + at]
            return
        cur = mem[link]


def chain(mem, heads, s):
    """Index a filled slot: both exact keys and both endpoints."""
    for d in (0, 1):
        ent = s * 2 + d
        b = _key_bucket(mem, ent)
        mem[_HDR + s * _SLOT + _S_NEXT + d] = heads[b]
        heads[b] = ent
    _link(mem, heads, _endpoint(mem, s, 0)[0], s, _S_NEXT_IN)
    _link(mem, heads, _endpoint(mem, s, 1)[0], s, _S_NEXT_OUT)


def _unchain_exact(mem, heads, ent):
    b = _key_bucket(mem, ent)
    cur = heads[b]
    link_of = _HDR + (ent >> 1) * _SLOT + _S_NEXT + (ent & 1)
    if cur == ent:
        heads[b] = mem[link_of]
        return
    while cur != _NONE:
        link = _HDR + (cur >> 1) * _SLOT + _S_NEXT + (cur & 1)
        if mem[link] == ent:
            mem[link] = mem[link_of]
            return
        cur = mem[link]


def release(mem, heads, s):
    """Forget the flow in slot s and put the slot on the free list."""
    _unchain_exact(mem, heads, s * 2)
    _unchain_exact(mem, heads, s * 2 + 1)
    _unlink(mem, heads, _endpoint(mem, s, 0)[0], s, _S_NEXT_IN)
    _unlink(mem, heads, _endpoint(mem, s, 1)[0], s, _S_NEXT_OUT)
    base = _HDR + s * _SLOT
    mem[base + _S_STATE] = 0
    mem[base + _S_NEXT] = mem[_H_FREE]
    mem[_H_FREE] = s
    mem[_H_USED] -= 1


def take_free(mem):
    """A slot off the free list (used from now on), or NONE when none is free."""
    s = mem[_H_FREE]
    if s != _NONE:
        base = _HDR + s * _SLOT
        mem[_H_FREE] = mem[base + _S_NEXT]
        mem[base + _S_STATE] = _FL_USED
        mem[_H_USED] += 1
    return s


def sweep(mem, count):
    """The next `count` slots from the clock hand (which moves on), in use or not."""
    cap = mem[_H_CAP]
    s = mem[_H_HAND]
    for _ in range(count if count < cap else cap):
        yield s
        s = s + 1 if s + 1 < cap else 0
        mem[_H_HAND] = s


def slots_in_use(mem):
    """Every used slot, in slot order. Bounded by the capacity (the REPL may list flows
    while the router's thread changes them)."""
    for s in range(mem[_H_CAP]):
        if mem[_HDR + s * _SLOT + _S_STATE] & _FL_USED:
            yield s
