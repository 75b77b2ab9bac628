"""The engine's internals: the layout copies agree, the index and LRU stay consistent."""
import random
import re
from pathlib import Path

import nat
from nat import consts
from nat.consts import (HDR, SLOT, S_NEXT, S_NEXT_IN, S_NEXT_OUT, S_STATE, H_FREE, H_USED,
                        H_CAP, H_MASK, H_EMASK, FL_USED, NONE)
from nat.flows import endpoint_bucket, find, inside, outside

NAT_DIR = Path(nat.__file__).parent


FIRMWARE = NAT_DIR.parent
# Modules that keep private const() copies of the layout (MicroPython inlines only a
# module's own consts): every copy must agree with nat/consts.py.
LAYOUT_USERS = sorted(NAT_DIR.glob("*.py")) + sorted(FIRMWARE.glob("*.py"))


def const_copies(path):
    return re.findall(r"^_([A-Z0-9_]+) = const\((\w+)\)", path.read_text(), re.M)


def public_consts():
    """Every public layout name: the engine's (nat/consts.py), the router's counters
    and the screen's policy words and verdicts; no name may mean two things."""
    import counters
    import screen
    names = {}
    for module in (consts, counters, screen):
        for name in dir(module):
            value = getattr(module, name)
            if name.isupper() and isinstance(value, int):
                assert names.get(name, value) == value, name
                names[name] = value
    return names


def test_const_copies_agree_with_consts():
    public = public_consts()
    checked = 0
    for path in LAYOUT_USERS:
        for name, value in const_copies(path):
            if name in public:
                assert public[name] == int(value, 0), (path.name, name)
                checked += 1
    assert checked > 200  # the cores, the screen and the router do keep copies


def test_counter_indices_follow_the_names():
    import counters
    indices = {name: getattr(counters, name) for name in dir(counters) if name.startswith("C_")}
    assert sorted(indices.values()) == list(range(len(counters.NAMES)))
    assert indices["C_MARTIAN"] == counters.NAMES.index("dropped_martian")
    assert indices["C_OUT"] == counters.NAMES.index("translated_out")


def test_cores_name_every_slot_and_header_offset():
    # No raw indices into the flow table or the packet fields in the cores: a layout
    # change must show in consts.py and nowhere else.
    for name in ("_python.py", "_viper.py", "icmperr.py", "flows.py"):
        text = (NAT_DIR / name).read_text()
        raw = re.findall(r"\b(?:m|mem|w|f|hd|heads)\[\s*\d+\s*\]|\[[a-z_]+ \+ \d+\](?<!\+ 1\])", text)
        assert raw == [], (name, raw)


def check_invariants(mem, heads):
    """Every used slot is findable by both keys and sits once in its inside-endpoint and
    its outside-endpoint chain; the rest are on the free list; the counts agree."""
    cap = mem[H_CAP]
    used = [s for s in range(cap) if mem[HDR + s * SLOT + S_STATE] & FL_USED]
    free = []
    s = mem[H_FREE]
    while s != NONE:
        free.append(s)
        s = mem[HDR + s * SLOT + S_NEXT]
    assert sorted(used + free) == list(range(cap)) and mem[H_USED] == len(used)
    buckets = mem[H_MASK] + 1
    chained = 0
    for b in range(buckets):
        e = heads[b]
        while e != NONE:
            chained += 1
            e = mem[HDR + (e >> 1) * SLOT + S_NEXT + (e & 1)]
    assert chained == 2 * len(used)
    for s in used:
        for d in (0, 1):
            k = HDR + s * SLOT + d * 6
            assert find(mem, heads, *mem[k:k + 6]) == s * 2 + d
    ends = mem[H_EMASK] + 1
    for out, link, where in ((0, S_NEXT_IN, inside), (1, S_NEXT_OUT, outside)):
        seen = []
        for b in range(ends):
            e = heads[buckets + out * ends + b]
            while e != NONE:
                seen.append(e)
                k = where(mem, e)
                at = (k + 2, k + 3, k + 5) if out else (k, k + 1, k + 4)
                assert endpoint_bucket(mem, *[mem[i] for i in at], out) == buckets + out * ends + b
                e = mem[HDR + e * SLOT + link]
        assert sorted(seen) == sorted(used)


def udp_packet(src, dst, sport, dport):
    from oracle_min import udp
    return udp(src, dst, sport, dport)


def test_random_add_remove_keeps_index_consistent():
    rng = random.Random(7)
    t = nat.Table(tcp=1, udp=37, icmp=1)
    p = nat.Packet()
    mem, heads = t.mems[2], t.heads[2]
    wan = nat.ip("198.51.100.2")
    hosts = [nat.ip("192.168.4.%d" % i) for i in range(2, 12)]
    for step in range(600):
        if rng.random() < 0.1:
            t.remove_connections(rng.choice(hosts))
        else:
            buf = udp_packet(rng.choice(hosts), nat.ip("203.0.113.10"), rng.randrange(1, 200), 53)
            assert p.parse(buf) == nat.OK
            port = rng.randrange(1024, 1100)
            t.add(p, wan, lambda: port)
        check_invariants(mem, heads)
    assert mem[H_USED] == t.count(nat.UDP) <= 37
