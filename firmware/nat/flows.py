# The flow table's index, on one protocol's arrays (layout: consts.py): the hash chains
# that find a flow by either direction's key, the LRU list, and the free list.
# find() and touch() run per packet (the pure-Python core calls them); the rest runs
# when flows come and go. Everything works on 16-bit words, small ints on any
# MicroPython.
from .consts import const  # micropython.const, or a stand-in on CPython

_H_MASK = const(0)
_H_CAP = const(1)
_H_MRU = const(2)
_H_LRU = const(3)
_H_FREE = const(4)
_H_USED = const(5)
_H_NOW_HI = const(6)
_H_NOW_LO = const(7)
_H_SEED = const(8)
_HDR = const(10)
_KEY_SRC_HI = const(0)
_KEY_SRC_LO = const(1)
_KEY_DST_HI = const(2)
_KEY_DST_LO = const(3)
_KEY_SPORT = const(4)
_KEY_DPORT = const(5)
_KEY_WORDS = const(6)
_S_NEXT = const(12)
_S_NEWER = const(14)
_S_OLDER = const(15)
_S_TIME_HI = const(16)
_S_TIME_LO = const(17)
_S_FLAGS = const(18)
_SLOT = const(20)
_NONE = const(0xFFFF)


def bucket(mem, a, b, c, d, e, g):
    # Multipliers carry low bits upwards, the shifts bring high bits down; every
    # intermediate stays below 2**24 so this is exact on 32-bit MicroPython and viper.
    x = (b ^ mem[_H_SEED]) * 37 + d * 101 + e * 13 + g * 7 + a + c * 3
    return (x ^ (x >> 9) ^ (x >> 17)) & mem[_H_MASK]


def key_at(ent):
    """Where chain entry ent's key starts in mem (ent = slot * 2 + direction)."""
    return _HDR + (ent >> 1) * _SLOT + (ent & 1) * _KEY_WORDS


def next_at(ent):
    """Where chain entry ent's bucket-chain successor is kept."""
    return _HDR + (ent >> 1) * _SLOT + _S_NEXT + (ent & 1)


def find(mem, heads, a, b, c, d, e, g):
    """The chain entry (slot * 2 + direction) keyed (a, b, c, d, e, g), or NONE."""
    ent = heads[bucket(mem, a, b, c, d, e, g)]
    while ent != _NONE:
        k = _HDR + (ent >> 1) * _SLOT + (ent & 1) * _KEY_WORDS
        if (mem[k + _KEY_SPORT] == e and mem[k + _KEY_DPORT] == g and mem[k + _KEY_SRC_LO] == b
                and mem[k + _KEY_DST_LO] == d and mem[k + _KEY_SRC_HI] == a
                and mem[k + _KEY_DST_HI] == c):
            return ent
        ent = mem[_HDR + (ent >> 1) * _SLOT + _S_NEXT + (ent & 1)]
    return _NONE


def touch(mem, s):
    """Make slot s the most recently used, stamped with the table's clock."""
    slot = _HDR + s * _SLOT
    mru = mem[_H_MRU]
    if mru != s:
        newer = mem[slot + _S_NEWER]
        older = mem[slot + _S_OLDER]
        mem[_HDR + newer * _SLOT + _S_OLDER] = older
        if older == _NONE:
            mem[_H_LRU] = newer
        else:
            mem[_HDR + older * _SLOT + _S_NEWER] = newer
        mem[slot + _S_NEWER] = _NONE
        mem[slot + _S_OLDER] = mru
        mem[_HDR + mru * _SLOT + _S_NEWER] = s
        mem[_H_MRU] = s
    mem[slot + _S_TIME_HI] = mem[_H_NOW_HI]
    mem[slot + _S_TIME_LO] = mem[_H_NOW_LO]


# ---- flows coming and going (slow path)

def clear(mem, heads):
    """Forget every flow: empty chains, every slot on the free list."""
    for i in range(len(heads)):
        heads[i] = _NONE
    cap = mem[_H_CAP]
    mem[_H_MRU] = mem[_H_LRU] = _NONE
    mem[_H_USED] = 0
    for s in range(cap):  # the free list is linked through S_NEWER
        base = _HDR + s * _SLOT
        for i in range(_SLOT):
            mem[base + i] = 0
        mem[base + _S_NEWER] = s + 1 if s + 1 < cap else _NONE
    mem[_H_FREE] = 0


def _bucket_of(mem, ent):
    k = key_at(ent)
    return bucket(mem, mem[k + _KEY_SRC_HI], mem[k + _KEY_SRC_LO], mem[k + _KEY_DST_HI],
                  mem[k + _KEY_DST_LO], mem[k + _KEY_SPORT], mem[k + _KEY_DPORT])


def chain(mem, heads, ent):
    b = _bucket_of(mem, ent)
    mem[next_at(ent)] = heads[b]
    heads[b] = ent


def unchain(mem, heads, ent):
    b = _bucket_of(mem, ent)
    cur = heads[b]
    if cur == ent:
        heads[b] = mem[next_at(ent)]
        return
    while cur != _NONE:
        link = next_at(cur)
        if mem[link] == ent:
            mem[link] = mem[next_at(ent)]
            return
        cur = mem[link]


def _lru_unlink(mem, s):
    base = _HDR + s * _SLOT
    newer = mem[base + _S_NEWER]
    older = mem[base + _S_OLDER]
    if newer == _NONE:
        mem[_H_MRU] = older
    else:
        mem[_HDR + newer * _SLOT + _S_OLDER] = older
    if older == _NONE:
        mem[_H_LRU] = newer
    else:
        mem[_HDR + older * _SLOT + _S_NEWER] = newer


def release(mem, heads, s):
    """Forget the flow in slot s and put the slot on the free list."""
    unchain(mem, heads, s * 2)
    unchain(mem, heads, s * 2 + 1)
    _lru_unlink(mem, s)
    base = _HDR + s * _SLOT
    mem[base + _S_FLAGS] = 0
    mem[base + _S_NEWER] = mem[_H_FREE]
    mem[_H_FREE] = s
    mem[_H_USED] -= 1


def acquire(mem, heads):
    """A free slot, made the most recently used; the least recently used flow is
    reused when none is free."""
    if mem[_H_FREE] == _NONE:
        release(mem, heads, mem[_H_LRU])
    s = mem[_H_FREE]
    base = _HDR + s * _SLOT
    mem[_H_FREE] = mem[base + _S_NEWER]
    mem[_H_USED] += 1
    mru = mem[_H_MRU]
    mem[base + _S_NEWER] = _NONE
    mem[base + _S_OLDER] = mru
    if mru == _NONE:
        mem[_H_LRU] = s
    else:
        mem[_HDR + mru * _SLOT + _S_NEWER] = s
    mem[_H_MRU] = s
    return s


def slots_in_use(mem):
    """The used slots, most recently used first. Bounded by the capacity: the REPL may
    list flows while the router's thread reorders them."""
    s = mem[_H_MRU]
    for _ in range(mem[_H_CAP]):
        if s == _NONE:
            return
        older = mem[_HDR + s * _SLOT + _S_OLDER]  # read first: the caller may release s
        yield s
        s = older
