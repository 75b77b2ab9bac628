"""The firmware on an emulated ESP32 (boards/ESP32_QEMU in Espressif's QEMU, tools/qemu.py),
end to end: MicroPython's ESP32 port with natlink and the firmware frozen in, ESP-IDF's
lwIP, the WAN on QEMU's OpenCores NIC with a DHCP lease from dnsmasq, the LAN on PPP
over UART2 to a Linux host. Needs an ESP32 SDK (ESP32_SDK, or ../shared/esp32-sdk:
README, The emulated ESP32), root and `ip netns`; skipped with the reason otherwise."""
import hashlib
import os

import pytest

import qemu
from netns import background, capture, unique_prefix
from topology import LAN1, LAN_GW, SRV, WAN

_why = qemu.unavailable()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")


@pytest.fixture(scope="module")
def board():
    topo = qemu.QemuTopology(unique_prefix("q"), log=lambda *a: None)
    try:
        topo.up()
        yield topo
    except BaseException:
        print("--- emulated board console ---\n%s" % (topo.console.text() if topo.console else ""))
        raise
    finally:
        topo.down()


def test_it_boots_with_the_firmware_frozen_in_and_says_so(board):
    console = board.console.text()
    for line in ("natrouter: config: natrouter.json: cannot read",
                 "natrouter: waiting for a DHCP lease on the WAN (Ethernet (DP83848",
                 "natrouter: ESP32 in QEMU: LAN PPP on UART2, WAN Ethernet (DP83848, PHY "
                 "address 1) %s/255.255.255.0 via 198.51.100.1" % WAN,
                 "natrouter: LAN %s/255.255.255.0, WAN %s/255.255.255.0" % (LAN_GW, WAN)):
        assert line in console, console
    # frozen, not copied: only main.py is on the board's filesystem
    assert board.eval_on_board("import os; print(sorted(os.listdir()))") == ["boot.py", "main.py"]
    where = board.exec_on_board("import nat.core, forward.router as r; print(r.__file__, nat.core.NAME)")
    assert where.split() == ["forward/router.py", "viper"], where  # (no such file: frozen)


def test_the_repl_answers_over_mpremote(board):
    out = board.exec_on_board("import nr; nr.status()")
    assert "natrouter running" in out and "WAN %s/255.255.255.0 via" % WAN in out, out


def test_the_lan_host_pings_the_server_and_downloads_through_nat(board):
    assert board.ping(board.lan1, SRV, count=3, wait=3)
    www = board.workdir / "www"
    www.mkdir(exist_ok=True)
    data = os.urandom(300 << 10)
    (www / "blob").write_bytes(data)
    with board.http_server(www, 8000):
        size, digest = board.fetch(board.lan1, "http://%s:8000/blob" % SRV)
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    links = board.eval_on_board("import board; print(board.counters())")
    assert links["lan"]["claimed"] > 100 and links["wan"]["claimed"] > 200, links
    # (a full 8-slot ring drops the newest and counts it: TCP resends; nothing refused)
    assert links["lan"]["tx_errors"] == links["wan"]["tx_errors"] == 0, links


def test_a_port_forward_made_at_the_repl_reaches_the_lan_host(board):
    out = board.exec_on_board("import nr; nr.forward('tcp', 8080, '%s', 80)" % LAN1)
    assert "in force: forwards" in out, out
    with background(board.serve(board.lan1, "tcp", 80, "lan1")):
        reply = board.talk(board.srv, "tcp", WAN, 8080, ["hi"], timeout=5)
    assert reply == ["lan1 hi from %s:%s" % (SRV, reply[0].split(":")[-1])], reply


def test_an_unsolicited_wan_packet_does_not_reach_the_lan_host(board):
    before = board.eval_on_board("import nr; from manage import api; print(api.status()['counters'])")
    with capture(board, board.lan1, "tun0", 4) as seen:
        board.talk(board.srv, "udp", WAN, 9999, ["anyone?"], timeout=1)
        board.talk(board.srv, "tcp", WAN, 9998, ["hello?"], timeout=1)
    assert [f for f in seen if f[0] == SRV] == [], seen
    after = board.eval_on_board("from manage import api; print(api.status()['counters'])")
    assert after["dropped_unsolicited"] - before["dropped_unsolicited"] >= 2, (before, after)


def test_a_change_and_apply_restart_forwarding(board):
    out = board.exec_on_board("import nr; nr.set('table.tcp', 100); nr.apply()")
    assert "restarted" in out, out
    status = board.eval_on_board("from manage import api; print(api.status())")
    assert status["flows"]["tcp"][1] == 100 and status["running"], status
    assert board.ping(board.lan1, SRV, count=3, wait=3)


def test_apply_under_traffic_rebuilds_the_router_and_keeps_the_heap(board):
    """tools/qemu_soak.py, short: a UDP stream crosses while apply() rebuilds the router
    every 15 s at the TCP table's default and one size smaller; every apply() takes,
    every ping crosses, the heap in use (collected) ends where it began (nothing kept per
    restart; the flow table's arrays reused), and MicroPython's heap grew at most into
    what ESP-IDF's had over its reserve (natlink_heap.c)."""
    import qemu_soak
    rows, failures = qemu_soak.soak(board, 4, 50, log=lambda *a: None, period=15)
    assert failures == [], failures
    start, end = rows[0][1], rows[-1][1]
    assert end["heap_used"] <= start["heap_used"] + 4096, rows
    grown = end["heap_free"] + end["heap_used"] - start["heap_free"] - start["heap_used"]
    assert grown <= max(0, start["idf_free"] - start["idf_reserve"]) + 1024, rows
