"""The LAN's DHCP server against a hostile LAN, end to end on the virtual board (defaults:
pool 192.168.4.100-199): scapy flooders (tools/peers/dhcp_flood.py) in lan2 with random
MACs, a real client (busybox udhcpc) in lan1. Each test starts the board afresh, with no
lease file. Needs root and `ip netns`; skipped otherwise.

- a flood of 3000 DISCOVERs (10 s): udhcpc gets a lease during it and right after it;
- 300 random MACs completing DORA: the pool is theirs (a new client gets no answer) until
  a binding is stale, then the new client is served;
- 30 DECLINE rounds from one MAC: two addresses held, a fresh client served;
- DORA + RELEASE churn: the lease file written at most once per SAVE_S
  (NATROUTER_DHCP_CHURN_S sets its length, 20 s by default);
- every malformed or RFC-dropped class of the host tests: no reply, counted as on CPython.
"""
import json
import os
import time
from contextlib import contextmanager

import pytest

import test_dhcp
from dhcp_cases import message
from netns import background, topology
from services import dhcp
from test_dhcp_hostile import RFC_DROPS
from test_vboard_manage import lease_of, udhcpc
from topology import CONFIG, LAN1, LAN_GW

FLOOD, FLOOD_S = 3000, 10
CHURN_S = float(os.environ.get("NATROUTER_DHCP_CHURN_S", "20"))
LEASE_S = 120                 # the shortest lease: stale after 75 s (5/8 of it)
STALE_S = LEASE_S * 5 // 8


@pytest.fixture(scope="module")
def vtopo():
    with topology("d") as topo:
        yield topo


def fresh_board(topo, dhcp_section=None):
    """The board restarted with CONFIG (and this dhcp section) and no lease file."""
    assert "Traceback" not in topo.console.text()
    topo.stop_board()
    for name in ("dhcp_leases.json", "dhcp_leases.json.tmp", "dhcp_leases.json.old"):
        (topo.flash / name).unlink(missing_ok=True)
    cfg = dict(CONFIG, dhcp=dhcp_section) if dhcp_section else CONFIG
    (topo.flash / "natrouter.json").write_text(json.dumps(cfg))
    topo.start_board()


def status(topo):
    return topo.eval_on_board("from manage import api; print(repr(api.status()['dhcp']))")


def leases(topo):
    return topo.eval_on_board("from manage import api; print(repr(api.leases()))")


@contextmanager
def lan1_readdressed(topo):
    """lan1 for a DHCP client; its static address and route back afterwards."""
    topo.run(topo.lan1, "ip", "addr", "flush", "dev", "eth0")
    try:
        yield
    finally:
        topo.run(topo.lan1, "ip", "addr", "flush", "dev", "eth0")
        topo.run(topo.lan1, "ip", "addr", "add", "%s/24" % LAN1, "dev", "eth0")
        topo.run(topo.lan1, "ip", "route", "replace", "default", "via", LAN_GW)


def flooder(topo, *args, timeout=120):
    """Run dhcp_flood.py in lan2 to its end: its JSON line."""
    out = topo.peer(topo.lan2, "dhcp_flood.py", *[str(a) for a in args], timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_discover_flood_keeps_no_client_from_a_lease(vtopo):
    fresh_board(vtopo)
    proc = vtopo.peer_bg(vtopo.lan2, "dhcp_flood.py", "discover", "eth0", FLOOD, FLOOD_S)
    with background(proc), lan1_readdressed(vtopo):
        assert proc.stdout.readline().strip() == "flooding"
        time.sleep(3)
        # During the flood: another identity (client id) than the one after it.
        during = lease_of(udhcpc(vtopo, vtopo.lan1, "-x", "0x3d:01aa000000a001"))
        out, _ = proc.communicate(timeout=FLOOD_S + 60)
        ended = time.monotonic()
        after = lease_of(udhcpc(vtopo, vtopo.lan1, "-t", "4"))  # 4 DISCOVERs, 1 s apart
        waited = time.monotonic() - ended
        listing = vtopo.exec_on_board("import nr; nr.leases()")
    flood = json.loads(out.strip().splitlines()[-1])
    s = status(vtopo)
    print("flood: %s; the board: %s; lease %.1f s after the flood's end" % (flood, s, waited))
    assert flood["sent"] == FLOOD
    assert during is not None and after is not None, (during, after, s)
    assert during["ip"] != after["ip"]
    assert s["table"] == 100 and s["no_address"] == 0 and s["errors"] == 0
    assert s["received"] >= FLOOD // 2 and s["taken_offers"] > 0
    assert s["bound"] == 2 and s["offered"] > 0
    assert "2 bound" in listing and "offered" in listing


def test_random_macs_completing_dora_hold_the_pool_until_a_binding_is_stale(vtopo):
    fresh_board(vtopo, {"lease_s": LEASE_S})
    with lan1_readdressed(vtopo):
        flood = flooder(vtopo, "dora", "eth0", 300, 30)
        flooded = time.monotonic()
        s = status(vtopo)
        # the board's count is the truth; the flooder may miss a broadcast reply or two
        assert s["bound"] == 100 and flood["distinct"] == flood["bound"] >= 90, (flood, s)
        # No room by the rules: no answer to a new client, until a binding is stale.
        assert lease_of(udhcpc(vtopo, vtopo.lan1)) is None
        assert status(vtopo)["no_address"] > s["no_address"]
        lease = None
        while lease is None and time.monotonic() < flooded + LEASE_S:  # bounded
            lease = lease_of(udhcpc(vtopo, vtopo.lan1, "-t", "2"))
        waited = time.monotonic() - flooded
    s = status(vtopo)
    print("dora flood: %s; lease %.0f s after it (stale after %d s)" % (flood, waited, STALE_S))
    assert lease is not None and s["taken_stale"] >= 1 and s["errors"] == 0, s
    assert s["bound"] == 100  # the client's binding in place of a stale one


def test_decline_rounds_from_one_mac_hold_two_addresses(vtopo):
    fresh_board(vtopo)
    res = flooder(vtopo, "decline", "eth0", 30, 60)
    assert len(res["declined"]) == 30
    rows = leases(vtopo)
    declined = [x for x in rows if x["state"] == "declined"]
    assert len(declined) == 2 and {x["mac"] for x in declined} == {res["mac"]}, rows
    assert len([x for x in rows if x["mac"] == res["mac"]]) <= 3  # + at most one offer
    assert status(vtopo)["saves"] == 0  # offers declined: nothing for the file
    with lan1_readdressed(vtopo):
        lease = lease_of(udhcpc(vtopo, vtopo.lan1))
    assert lease is not None and lease["ip"] not in [x["addr"] for x in declined]


def test_churn_writes_the_lease_file_at_most_once_per_save_interval(vtopo):
    fresh_board(vtopo)
    t0 = time.monotonic()
    res = flooder(vtopo, "churn", "eth0", CHURN_S, timeout=CHURN_S + 60)
    s = status(vtopo)
    window = time.monotonic() - t0
    # writes are SAVE_S apart (the board's whole seconds: more than SAVE_S - 1)
    bound = 1 + int(window // (dhcp.SAVE_S - 1))
    print("churn %.0f s: %s; %d writes (bound %d)" % (CHURN_S, res, s["saves"], bound))
    assert res["cycles"] >= 20 and res["bound"] >= 0.9 * res["cycles"], res
    assert 1 <= s["saves"] <= bound, (s, window)
    assert s["save_errors"] == 0 and s["releases"] == res["bound"]
    out = vtopo.exec_on_board("import nr; nr.save()")
    assert "saved to" in out
    saved = json.loads((vtopo.flash / "dhcp_leases.json").read_text())
    assert saved["leases"] == []  # every churned lease was released


def drop_classes():
    """{name: (UDP payload, bad checksum)}: the malformed messages and the RFC drops of
    the host tests, unknown types, another server's reply, a bad checksum."""
    out = {name: (msg, False) for name, msg in test_dhcp.malformed_messages().items()}
    out.update((name, (bytes(msg), False)) for name, msg, _ in RFC_DROPS)
    for t in (2, 5, 6, 9, 77):
        out["type-%d" % t] = (bytes(message(t)), False)
    out["bootreply"] = (b"\x02" + bytes(message(1))[1:], False)
    out["bad-checksum"] = (bytes(message(1)), True)
    return out


def expected_counts(classes):
    """What the same server on CPython counts for them (and it answers none)."""
    srv = dhcp.DhcpServer(None, LAN_GW, CONFIG["lan"]["mask"])
    for name, (msg, bad) in classes.items():
        assert srv.handle(msg, len(msg), bytearray(576), not bad) == 0, name
    assert srv.counters()["errors"] == 0
    return {k: v for k, v in srv.counters().items() if v}


def test_every_malformed_and_rfc_dropped_class_is_dropped_and_counted(vtopo):
    fresh_board(vtopo)
    classes = drop_classes()
    want = expected_counts(classes)
    path = vtopo.workdir / "dhcp_classes.txt"
    path.write_text("".join("%s %s%s\n" % (name, msg.hex(), " badsum" if bad else "")
                            for name, (msg, bad) in classes.items()))
    res = flooder(vtopo, "send", "eth0", path)
    got = {k: v for k, v in status(vtopo).items() if v and k not in ("table",)}
    assert res["sent"] == len(classes) == want["received"]
    assert (res["offers"], res["acks"], res["naks"], res.get("other", 0)) == (0, 0, 0, 0), res
    assert not set(res["arps"]) & {LAN_GW, "192.168.4.0", "192.168.4.255"}, res["arps"]
    assert got == want, (got, want)
    assert {"dropped_malformed", "dropped_unknown", "dropped_checksum", "dropped_address",
            "dropped_other_server"} <= set(got)


def test_the_board_logged_no_exception(vtopo):
    assert "Traceback" not in vtopo.console.text()
    s = vtopo.eval_on_board("from manage import api; print(repr(api.status()))")
    assert s["counters"]["errors"] == 0 and s["last_error"] is None
    assert s["dhcp"]["errors"] == 0
