"""The engine's internals: the layout copies are current, the index stays consistent."""
import random
import re
from pathlib import Path

import pytest

import layout
import nat
from nat.consts import (HDR, SLOT, S_NEXT, S_NEXT_IN, S_NEXT_OUT, S_STATE, H_FREE, H_USED,
                        H_CAP, H_MASK, H_EMASK, FL_USED, NONE)
from nat.flows import endpoint_bucket, find, inside, outside

NAT_DIR = Path(nat.__file__).parent
FIRMWARE = NAT_DIR.parent


def test_layout_copies_are_current():
    # tools/layout.py writes every fast module's private copies from the modules that
    # define them; a copy written by hand, or left stale, fails here.
    assert [str(p) for p, _ in layout.stale()] == []


def test_a_stale_or_hand_written_copy_is_caught():
    defs = layout.definitions()
    path = FIRMWARE / "forward" / "_datapath_viper.py"
    text = path.read_text()
    assert layout.expected(path, text, defs) == text
    stale = text.replace("_F_LEN = const(1)", "_F_LEN = const(2)")
    assert stale != text and layout.expected(path, stale, defs) == text
    hand = text.replace(layout.END, layout.END + "\n_F_KIND = const(5)")
    with pytest.raises(layout.LayoutError, match="F_KIND"):
        layout.expected(path, hand, defs)
    # a use of another public name gets its copy in the block
    more = text.replace("    s = int(side)", "    s = int(side) + _H_MASK")
    assert "_H_MASK = const(0)" in layout.expected(path, more, defs)


def test_counter_indices_follow_the_names():
    from forward import counters
    indices = {name: getattr(counters, name) for name in dir(counters) if name.startswith("C_")}
    assert indices == {"C_" + n.upper(): i for i, n in enumerate(counters.NAMES)}
    # the datapath counts translated_out + side and rx_lan + side
    assert indices["C_TRANSLATED_IN"] == indices["C_TRANSLATED_OUT"] + 1
    assert indices["C_RX_WAN"] == indices["C_RX_LAN"] + 1


def test_cores_name_every_slot_and_header_offset():
    # No raw indices into the flow table, the packet fields or the policy in the cores:
    # a layout change must show in consts.py (or datapath.py) and nowhere else.
    for path in (NAT_DIR / "_python.py", NAT_DIR / "_viper.py", NAT_DIR / "icmperr.py",
                 NAT_DIR / "flows.py", FIRMWARE / "forward" / "datapath.py",
                 FIRMWARE / "forward" / "_datapath_viper.py"):
        text = path.read_text()
        raw = re.findall(r"\b(?:m|mem|w|f|hd|heads|pw|pol|cc|c)\[\s*\d+\s*\]|\[[a-z_]+ \+ \d+\](?<!\+ 1\])",
                         text)
        assert raw == [], (path.name, raw)


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
