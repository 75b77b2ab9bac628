"""Managing the virtual board over its serial REPL, as a user would over USB: mpremote
against the running board (status, flows, a port forward added and used, a bad value
refused, save() and a restart of the board process), and DHCP with a real client
(busybox udhcpc) in the LAN namespaces. Needs root and `ip netns`; skipped otherwise."""
import shutil

import pytest

from hostenv import PEERS
from netns import background, topology
from topology import LAN1, LAN2, LAN_GW, SRV, WAN

NEW_FORWARD = 9090


@pytest.fixture(scope="module")
def vtopo():
    with topology("m") as topo:
        yield topo


def test_status_and_flows_over_the_repl(vtopo):
    with background(vtopo.serve(vtopo.srv, "udp", 7, "srv")):
        assert vtopo.talk(vtopo.lan1, "udp", SRV, 7, ["hi"], sport=40100)[0].startswith("srv hi")
        status = vtopo.eval_on_board("from manage import api; print(repr(api.status()))")
        flows = vtopo.eval_on_board("from manage import api; print(repr(api.flows('udp', '%s')))" % LAN1)
    assert status["running"] and status["lan"]["addr"] == LAN_GW and status["wan"]["addr"] == WAN
    assert status["counters"]["translated_out"] >= 1 and status["flows"]["udp"][0] >= 1
    assert {"lan", "wan"} <= set(status["links"])
    assert any(f["inside"] == "%s:40100" % LAN1 and f["remote"] == "%s:7" % SRV for f in flows)
    # the printing front answers too
    out = vtopo.exec_on_board("import nr; nr.status(); nr.flows('udp')")
    assert "natrouter running" in out and "%s:40100" % LAN1 in out


def test_a_forward_added_over_the_repl_works_survives_save_and_a_restart(vtopo):
    with background(vtopo.serve(vtopo.lan1, "tcp", 81, "lan1")):
        assert vtopo.talk(vtopo.srv, "tcp", WAN, NEW_FORWARD, ["x"], timeout=1) == ["TIMEOUT"]
        out = vtopo.exec_on_board("import nr; nr.forward('tcp', %d, '%s', 81)" % (NEW_FORWARD, LAN1))
        assert "in force: forwards" in out
        reply = vtopo.talk(vtopo.srv, "tcp", WAN, NEW_FORWARD, ["hello"])[0]
        assert reply.startswith("lan1 hello from %s:" % SRV), reply  # the client's own address
        assert "saved to natrouter.json" in vtopo.exec_on_board("import nr; nr.save()")
        vtopo.stop_board()
        vtopo.start_board()
        assert vtopo.talk(vtopo.srv, "tcp", WAN, NEW_FORWARD, ["again"])[0].startswith("lan1 again")
    forwards = vtopo.eval_on_board("from manage import api; print(repr(api.forwards()))")
    assert {"proto": "tcp", "port": NEW_FORWARD, "to": LAN1, "to_port": 81} in forwards


@pytest.mark.parametrize("call,named", [
    ("api.set('wan.addr', '198.51.100.300')", "wan.addr"),
    ("api.add_forward('tcp', 8080, '192.168.4.3')", "already forwarded"),
    ("api.set('ports.first', 'low')", "ports.first"),
])
def test_a_bad_value_is_refused_with_its_reason_and_nothing_changes(vtopo, call, named):
    code = ("from manage import api\nbefore = api.configuration()\n"
            "try:\n    %s\n    print('ACCEPTED')\n"
            "except ValueError as e:\n    print('REFUSED', e)\n"
            "print(api.configuration() == before, api.pending())") % call
    out = vtopo.exec_on_board(code).strip().splitlines()
    assert out[0].startswith("REFUSED") and named in out[0], out
    assert out[1] == "True []", out


# ---- DHCP with a real client

def udhcpc(topo, ns, *args, timeout=20):
    """busybox udhcpc on eth0 of ns until it has a lease or gives up: its LEASE lines."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox (udhcpc) is not installed (make setup)")
    out = topo.run(ns, busybox, "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1",
                   "-s", PEERS / "dhcp_event.sh", *args, check=False, timeout=timeout).stdout
    return [line.split() for line in out.splitlines() if line.startswith("LEASE")]


def lease_of(lines):
    bound = [dict(w.split("=", 1) for w in line[2:]) for line in lines if line[1] == "bound"]
    return bound[-1] if bound else None


def test_a_real_dhcp_client_gets_an_address_a_route_and_dns_then_reaches_the_server(vtopo):
    vtopo.run(vtopo.lan2, "ip", "addr", "flush", "dev", "eth0")
    try:
        lease = lease_of(udhcpc(vtopo, vtopo.lan2))
        assert lease is not None, "no lease"
        assert lease["ip"].startswith("192.168.4.") and 100 <= int(lease["ip"].split(".")[3]) <= 199
        assert (lease["mask"], lease["router"], lease["dns"], lease["serverid"]) == (
            "24", LAN_GW, "9.9.9.9", LAN_GW)
        assert int(lease["lease"]) == 3600
        assert vtopo.ping(vtopo.lan2, SRV)  # configured by the lease alone
        leases = vtopo.eval_on_board("from manage import api; print(repr(api.leases()))")
        assert [x["addr"] for x in leases if x["state"] == "bound"] == [lease["ip"]]
        # The lease outlives the board: after a restart the same client keeps its address.
        vtopo.stop_board()
        vtopo.start_board()
        leases = vtopo.eval_on_board("from manage import api; print(repr(api.leases()))")
        assert [x["addr"] for x in leases if x["state"] == "bound"] == [lease["ip"]]
        again = lease_of(udhcpc(vtopo, vtopo.lan2))
        assert again is not None and again["ip"] == lease["ip"]
    finally:
        readdress_lan2(vtopo)


def test_an_exhausted_pool_gives_no_lease_and_garbage_harms_nothing(vtopo):
    # A pool of one address, taken by a static lease for someone else: nothing to offer.
    mac = vtopo.mac(vtopo.lan2, "eth0")
    set_pool = ("from manage import api; print(repr(api.change({'dhcp.first': '192.168.4.150', "
                "'dhcp.last': '192.168.4.150', 'dhcp.static': [{'mac': '02:00:00:00:99:99', "
                "'addr': '192.168.4.150'}]})))")
    assert vtopo.eval_on_board(set_pool) == {"applied": ["dhcp"], "pending": []}
    vtopo.run(vtopo.lan2, "ip", "addr", "flush", "dev", "eth0")
    try:
        # garbage to port 67 first: the server drops it and goes on
        vtopo.peer(vtopo.lan2, "dhcp_garbage.py", "eth0", vtopo.mac(vtopo.rtr, "lan"), 50)
        assert udhcpc(vtopo, vtopo.lan2) in ([], [["LEASE", "leasefail"]])
        status = vtopo.eval_on_board("from manage import api; print(repr(api.status()))")
        assert status["dhcp"]["no_address"] >= 1 and status["dhcp"]["dropped_malformed"] >= 40
        assert status["dhcp"]["errors"] == 0 and status["counters"]["errors"] == 0
        # room again: the same client gets the freed address at once
        vtopo.eval_on_board("from manage import api; print(repr(api.set('dhcp.static', [])))")
        lease = lease_of(udhcpc(vtopo, vtopo.lan2))
        assert lease is not None and lease["ip"] == "192.168.4.150", (lease, mac)
    finally:
        readdress_lan2(vtopo)


def readdress_lan2(topo):
    """lan2 back to its static address and route, after a DHCP test took them."""
    topo.run(topo.lan2, "ip", "addr", "flush", "dev", "eth0")
    topo.run(topo.lan2, "ip", "addr", "add", "%s/24" % LAN2, "dev", "eth0")
    topo.run(topo.lan2, "ip", "route", "replace", "default", "via", LAN_GW)


def test_the_board_logged_no_exception(vtopo):
    assert "Traceback" not in vtopo.console.text()
    status = vtopo.eval_on_board("from manage import api; print(repr(api.status()))")
    assert status["counters"]["errors"] == 0 and status["last_error"] is None
