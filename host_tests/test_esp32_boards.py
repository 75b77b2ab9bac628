"""The ESP32 boards without an ESP32: boards/WT32_ETH01, OLIMEX_ESP32_POE, ESP32_GENERIC
(board.py each) and their shared boards/esp32_common/esp32board.py.

- On the MicroPython unix port against small fakes of `network`, `machine` and `natlink`
  (host_tests/upy/fakes/), the firmware's own boot path (import main): what each board
  asks of the hardware (pins, PHY, access point, ESP-IDF's DHCP server stopped, natlink's
  claims), traffic through the router end to end (the router's DHCP OFFER too), WAN
  leases that come late or move, changes made from the REPL, the boards' configuration
  rules (host_tests/upy/esp32_cases.py; run by esp32_run.py). What a board left alone
  must recover from: test_esp32_recovery.py.
- With a MicroPython checkout (MICROPY_DIR) and Debian's lwIP: the natlink binding
  (boards/natlink/modnatlink.c) built into the unix port with in-memory lwIP netifs
  (host_tests/natlink_unix/), its API checked against the fake's, and the same cases run
  on it: frames into lwIP, through natlink and the router, out of lwIP. Skipped, with
  the reason, without them (CI has neither).
- On the 32-bit WASI build: the router's heap at each board's default table sizes.
- The boards' build files: manifests (what is frozen), the hostname, the C port's
  interface, the lwIP versions natlink names.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hostenv

from esp32_run import (BOARDS, COMMON, ETHERNET, FAKES, LAN_HOST, LEASE, NATLINK, REMOTE,
                       calls, run_case)
from runtimes import ROOT, run_wasi, unix_binary

HEAP_TARGET = 64 * 1024     # the router (its flow table, buffers, counters)
# Everything the firmware makes for a board on top of its modules (router, DHCP server,
# supervisor, watchdog, links), the garbage made on the way included (WASI's figures:
# no collection may run there): the ESP32's MicroPython heap with Wi-Fi up and no PSRAM
# holds more than this; what stays after a collection is less.
HEAP_BUDGET = 128 * 1024

# What each board names: network.LAN's keywords (pins as the fake machine.Pin prints
# them; ref_clk_mode is machine.Pin.IN = 1 or machine.Pin.OUT = 3) and its table sizes.
HARDWARE = {
    "WT32_ETH01": {"mdc": "Pin(23)", "mdio": "Pin(18)", "phy_addr": 1, "phy_type": 1,
                   "power": "Pin(16)", "ref_clk": "Pin(0)", "ref_clk_mode": 1},
    "OLIMEX_ESP32_POE": {"mdc": "Pin(23)", "mdio": "Pin(18)", "phy_addr": 0, "phy_type": 1,
                         "power": "Pin(12)", "ref_clk": "Pin(17)", "ref_clk_mode": 3},
    "ESP32_GENERIC": None,
}
TABLES = {"WT32_ETH01": {"tcp": 192, "udp": 96, "icmp": 32},
          "OLIMEX_ESP32_POE": {"tcp": 192, "udp": 96, "icmp": 32},
          "ESP32_GENERIC": {"tcp": 224, "udp": 112, "icmp": 32}}
CLAIMS = {"tcp": [[0, 49151]], "udp": [[0, 67], [69, 49151]], "icmp": [[0, 65535]],
          "dhcp": True}
BUTTONS = {"WT32_ETH01": None, "OLIMEX_ESP32_POE": 34, "ESP32_GENERIC": 0}  # factory reset
IDF_DHCPS_STOPPED = ["dhcps", "ap", {"enabled": False, "dns": "0.0.0.0", "first": "0.0.0.0",
                                     "last": "0.0.0.0", "lease_s": 3600}]


# ---- the boot path, against the fakes

@pytest.mark.parametrize("board", BOARDS)
def test_boot_asks_the_hardware_for_what_the_board_names(board, tmp_path):
    res = run_case(board, "boot_calls", tmp_path)
    assert res["running"] and res["links"] == ["lan", 1500, "wan", 1500]
    # The access point is the LAN on every board: MicroPython's own AP config keys.
    assert calls(res, "ap", "config") == [["ap", "config", [], {
        "ssid": "natrouter", "key": "natrouter", "security": 3, "channel": 6,
        "max_clients": 4}]]
    assert calls(res, "ap", "ipconfig") == [["ap", "ipconfig", [], {
        "addr4": ["192.168.4.1", "255.255.255.0"], "gw4": "192.168.4.1"}]]
    # The router serves DHCP on the access point: ESP-IDF's server stopped, natlink
    # claiming the LAN's DHCP requests, the router's own server made.
    assert [e for e in res["natlink"] if e[0] == "dhcps"] == [IDF_DHCPS_STOPPED]
    assert res["dhcp_server"] == ["192.168.4.100", "192.168.4.199"]
    start = [e[1] for e in res["natlink"] if e[0] == "start"]
    assert len(start) == 1 and res["natlink"][0] == ["stop"]  # stop (a restart) first
    start = start[0]
    assert start["lan"] == "ap" and start["dhcp"] is True
    assert {k: start[k] for k in CLAIMS} == CLAIMS
    assert start["lan_mtu"] == start["wan_mtu"] == 1500
    assert res["cfg"]["table"] == TABLES[board] and res["cfg"]["wan"]["mode"] == "dhcp"
    assert res["cfg"]["ports"] == {"first": 1024, "last": 49151}
    if board in ETHERNET:
        assert res["built_with"] == HARDWARE[board]
        assert calls(res, "eth", "active") == [["eth", "active", [True], {}]]
        assert start["wan"] == "eth" and start["wan_addr"] == LEASE[0]
        assert res["cfg"]["wan"]["addr"] == LEASE[0]
        assert not calls(res, "sta")
        pins = {p for p, _ in res["pins"]}
        assert pins == {int(v[4:-1]) for v in HARDWARE[board].values()
                        if isinstance(v, str) and v.startswith("Pin(")} | (
            {BUTTONS[board]} if BUTTONS[board] is not None else set())
    else:
        assert res["built_with"] is None and res["pins"] == [[0, 1]]   # BOOT, read once
        assert calls(res, "sta", "config") == [["sta", "config", [], {"pm": 0, "reconnects": 2}]]
        assert not calls(res, "sta", "connect")          # no network named yet
        assert start["wan"] == "sta" and start["wan_addr"] == "0.0.0.0"
        assert any("wifi.sta_ssid is empty" in ln for ln in res["_console"])
    assert any("the access point's key is the default one" in ln for ln in res["_console"])
    assert any(ln.startswith("natrouter: LAN 192.168.4.1/") for ln in res["_console"])


def out_and_back(res):
    assert res["out"] == [LEASE[0], 40000, REMOTE, 80, 6, True]           # masqueraded
    assert res["back"] == [REMOTE, 80, LAN_HOST, 40000, 6, True]          # and back in
    assert res["forwarded"] == ["198.18.0.9", 5555, LAN_HOST, 80, 6, True]  # port forward
    assert res["udp"] == [LEASE[0], 5353, "9.9.9.9", 53, 17, True]
    assert res["dhcp"] == [2, "255.255.255.255", "192.168.4.100"]   # the router's OFFER
    c = res["counters"]
    assert (c["translated_out"], c["translated_in"], c["forwards_hit"], c["errors"]) == (2, 2, 1, 0)


@pytest.mark.parametrize("board", BOARDS)
def test_router_forwards_through_the_fake_rings(board, tmp_path):
    res = run_case(board, "forward", tmp_path)
    out_and_back(res)
    links = res["links"]
    assert links["lan"]["received"] == 3 and links["wan"]["received"] == 2   # + DHCP
    assert links["wan"]["lease"] == LEASE and links["wan"]["up"] is True


@pytest.mark.parametrize("board", ("WT32_ETH01", "ESP32_GENERIC"))
def test_natlink_waits_for_esp_idf_to_add_the_netifs(board, tmp_path):
    res = run_case(board, "netif_late", tmp_path)
    assert res["late"][:5] == ["stop", "dhcps", "not started", "not started", "not started"]
    assert res["late"][5] == "start" and res["running"]
    assert res["never"] == "natlink: the interface is not started yet (activate it, then retry)"
    assert res["waited_ms"] >= 200   # asked again until NETIF_WAIT_MS, then gave up


@pytest.mark.parametrize("board", BOARDS)
def test_a_lease_that_comes_late_or_moves_restarts_the_router(board, tmp_path):
    res = run_case(board, "lease_later", tmp_path)
    assert res["first"] == ["198.51.100.2", "0.0.0.0"]   # placeholders, nothing claimed
    assert res["quiet"] == "nothing" and res["came"] == "restarted"
    assert res["second"] == [LEASE[0], LEASE[2], LEASE[0], 2]
    assert res["same"] == "nothing" and res["moved"] == "restarted"
    assert res["third"] == ["100.64.0.9", "255.192.0.0"]
    # A lease inside the LAN's subnet is refused, said once, and changes nothing.
    assert res["overlap"] == ["nothing", "nothing"] and res["kept"] == "100.64.0.9"
    refused = [ln for ln in res["_console"] if "refused" in ln]
    assert len(refused) == 1 and "overlap" in refused[0]


@pytest.mark.parametrize("board", BOARDS)
def test_static_wan(board, tmp_path):
    res = run_case(board, "static_wan", tmp_path)
    wan = "eth" if board in ETHERNET else "sta"
    assert calls(res, wan, "ipconfig") == [[wan, "ipconfig", [], {
        "addr4": ["198.51.100.20", "255.255.255.0"], "gw4": "198.51.100.1"}]]
    assert calls(res, "network", "ipconfig") == [["network", "ipconfig", [], {"dns": "192.0.2.53"}]]
    assert res["dns"] == "192.0.2.53" and res["wan"] == "198.51.100.20"
    start = next(e[1] for e in res["natlink"] if e[0] == "start")
    assert start["wan_addr"] == "198.51.100.20"


@pytest.mark.parametrize("board", BOARDS)
def test_changes_from_the_repl_reach_the_hardware(board, tmp_path):
    res = run_case(board, "live_changes", tmp_path)
    assert res["boot"] == "nothing"
    # A port forward: natlink claims its port from the next packet, no restart.
    assert res["forward"] == {"applied": ["forwards"], "pending": []}
    claim = [e[1] for e in res["natlink"] if e[0] == "claim"]
    assert claim[0]["tcp"] == [[0, 1023], [2222, 2222], [20000, 29999]] and claim[0]["dhcp"]
    # DNS servers and the lease time: the router's DHCP server, rebuilt at once.
    assert sorted(res["set_dns"]["applied"]) == ["dhcp", "dns"]
    assert res["dhcp"] == [True, True]
    # The access point's key: the supervisor restarts the router around the radio change
    # (natlink must not wrap a netif ESP-IDF removes and adds back), once.
    assert res["set_key"] == {"applied": ["wifi"], "pending": []}
    assert res["applied"] == "restarted" and res["again"] == "nothing"
    assert calls(res, "ap", key="calls") == [["ap", "config", [], {"ssid": "natrouter", "key": "a new key 42",
                                                      "security": 3, "channel": 6,
                                                      "max_clients": 4}]]
    assert [e[0] for e in res["natlink"] if e[0] in ("stop", "start")] == ["stop", "start"]
    ports, watchdog, mtu, key = res["refused"]
    assert ports.startswith("ports.last: 60000 reaches into 49152..65535")
    assert watchdog.startswith("recovery.watchdog_s: 5 must be 0 (off) or an integer 10..3600")
    assert mtu.startswith("mtu: 9000 is more than natlink carries")
    assert key.startswith("wifi.ap_key: must be")
    assert res["pending"] == {"applied": [], "pending": ["table"]}
    assert res["apply"] == {"restarted": True, "pending": []}
    reconfigured, natlink_calls, old_link, capacity, new_router = res["restart"]
    # The restart reopens natlink; the unchanged access point is left alone (its clients
    # and their leases stay), the old links are stale.
    assert natlink_calls == ["stop", "start"]
    assert not [c for c in reconfigured if c[0] == "ap"]
    assert old_link.endswith("stale>") and capacity == 100 and new_router


def test_wifi_only_board_joins_the_network_named_from_the_repl(tmp_path):
    res = run_case("ESP32_GENERIC", "station", tmp_path)
    assert not [c for c in res["calls"] if c[1] == "connect"]
    assert res["wan"] == "198.51.100.2" and res["applied"] == "applied"
    assert res["joined"] == [["sta", "connect", ["upstream", "secret99"], {}]]
    assert res["leased"] == "restarted" and res["wan_after"] == LEASE[0]
    assert res["channel"] == 11   # the access point follows the station's channel


def test_ethernet_board_ignores_the_station_settings(tmp_path):
    res = run_case("WT32_ETH01", "station", tmp_path)
    assert res["joined"] == [] and res["leased"] == "nothing"


@pytest.mark.parametrize("board", BOARDS)
def test_board_rules_at_boot(board, tmp_path):
    res = run_case(board, "checks", tmp_path)
    problems = [p.split(": ", 1)[1] for p in res["problems"]]
    want = [
        "ports.last: 65535 reaches into 49152..65535, where lwIP picks the ports of the "
        "board's own connections; set it to 49151 at most; using 20000..49151",
        "forwards (tcp 50000 -> 192.168.4.2:50000): port 50000 is lwIP's on this board",
        "forwards (udp 68 -> 192.168.4.2:68): UDP port 68 is the board's DHCP client",
        "forwards (tcp 1600 -> 192.168.4.2:1600): natlink claims at most 8 port ranges",
        "forwards (tcp 1700 -> 192.168.4.2:1700): natlink claims at most 8 port ranges",
        "mtu: 9000 is more than natlink carries on this board (1500); using 1500",
    ]
    for w in want:
        assert any(p.startswith(w) for p in problems), (w, problems)
    assert len(problems) == len(want), problems
    cfg = res["cfg"]
    assert cfg["ports"] == {"first": 20000, "last": 49151} and cfg["mtu"] == 1500
    assert [(f["proto"], f["port"]) for f in cfg["forwards"]] == [("tcp", 8080)] + [
        ("tcp", p) for p in range(1100, 1600, 100)]
    # The router's own DHCP server serves the access point: a pool of any size the LAN
    # allows (ESP-IDF's took at most 100 addresses), static leases, several DNS servers.
    assert (cfg["dhcp"]["first"], cfg["dhcp"]["last"]) == ("192.168.4.2", "192.168.4.250")
    assert cfg["dhcp"]["static"] == [{"mac": "02:00:00:00:00:09", "addr": "192.168.4.9"}]
    assert cfg["dns"] == ["192.0.2.53", "9.9.9.9"]
    assert res["claims"]["tcp"] == [[0, 1023]] + [[p, p] for p in range(1100, 1600, 100)] + [
        [8080, 8080], [20000, 49151]]
    assert res["claims"]["udp"] == [[0, 67], [69, 1023], [20000, 49151]]


# ---- the boards' rules on CPython: the same module, called directly

@pytest.fixture
def esp32board(monkeypatch):
    """esp32board imported on CPython against the fakes, the config module's board rules
    put back afterwards (they are module state)."""
    from manage import config
    monkeypatch.setattr(config, "_board", {"defaults": {}, "check": None})
    for p in (str(COMMON), str(NATLINK), str(FAKES)):
        monkeypatch.syspath_prepend(p)
    saved = {k: sys.modules.pop(k, None)
             for k in ("esp32board", "esp32heap", "esp32", "network", "machine", "natlink")}
    import esp32board as mod
    yield mod
    for k, v in saved.items():
        sys.modules.pop(k, None)
        if v is not None:
            sys.modules[k] = v


@pytest.mark.parametrize("ranges,want", [
    ([(5, 9), (1, 3), (4, 4)], [(1, 9)]),
    ([(0, 10), (2, 3)], [(0, 10)]),
    ([(10, 20), (0, 5), (22, 30)], [(0, 5), (10, 20), (22, 30)]),
    ([], []),
])
def test_merge(esp32board, ranges, want):
    assert esp32board.merge(ranges) == want


def test_board_rules_apply_in_strict_mode_too(esp32board):
    from manage import config
    esp32board.setup("test", wan=esp32board.Ethernet(23, 18, 0), lan=esp32board.AccessPoint(),
                     table={"tcp": 7, "udp": 8, "icmp": 9})
    cfg, problems = config.validate({})
    assert problems == [] and cfg["table"]["tcp"] == 7 and cfg["ports"]["last"] == 49151
    raw = config.to_file(cfg)
    raw["forwards"] = [{"proto": "tcp", "port": 50000, "to": "192.168.4.9", "to_port": 80}]
    with pytest.raises(ValueError, match=r"^forwards \(tcp 50000 -> 192.168.4.9:80\): port 50000"):
        config.validate(raw, strict=True)
    raw["forwards"] = [{"proto": "tcp", "port": 49151, "to": "192.168.4.9", "to_port": 80}]
    assert config.validate(raw, strict=True)[0]["forwards"][0]["port"] == 49151
    # Pools ESP-IDF's server refused (more than 100 addresses, a single one) are the
    # router's server's to serve.
    for first, last in (("192.168.4.2", "192.168.4.250"), ("192.168.4.7", "192.168.4.7")):
        raw["dhcp"]["first"], raw["dhcp"]["last"] = first, last
        assert config.validate(raw, strict=True)[0]["dhcp"]["last"] == last


def test_tables_past_the_boards_heap_are_refused_with_the_reason(esp32board):
    from manage import config
    from nat.table import table_bytes
    import esp32heap
    esp32board.setup("test", wan=esp32board.Ethernet(23, 18, 0), lan=esp32board.AccessPoint(),
                     table={"tcp": 192, "udp": 96, "icmp": 32})
    raw = config.to_file(config.validate({})[0])
    raw["table"] = {"tcp": 1024, "udp": 1024, "icmp": 256}
    assert table_bytes(1024, 1024, 256) > esp32heap.TABLE_BYTES_MAX
    with pytest.raises(ValueError, match=r"^table: tcp 1024, udp 1024, icmp 256 flows take "
                                         r"\d+ bytes; this board's heap holds at most"):
        config.validate(raw, strict=True)
    cfg, problems = config.validate(raw)   # at boot: the board's defaults instead
    assert cfg["table"] == {"tcp": 192, "udp": 96, "icmp": 32} and len(problems) == 1
    raw["table"] = {"tcp": 384, "udp": 192, "icmp": 64}  # the budget's own size fits
    assert table_bytes(384, 192, 64) <= esp32heap.TABLE_BYTES_MAX
    assert config.validate(raw, strict=True)[0]["table"]["tcp"] == 384


def test_memory_reports_esp_idfs_heap_and_the_room_left_to_python(esp32board):
    import esp32
    m = esp32board.memory()
    assert m == {"idf_free": 4 + 1388 + 2364 + 47408, "idf_largest": 47104,
                 "idf_min_free": 4 + 128 + 828 + 45872, "idf_reserve": 48 * 1024}
    # natlink_heap.c: the largest block, while the rest keeps the reserve
    assert esp32board.heap_room() == 2012   # 51,164 free: 2,012 over the reserve
    esp32.HEAP[3] = (113840, 90000, 80000, 45872)
    try:
        assert esp32board.heap_room() == 4 + 1388 + 2364 + 90000 - 48 * 1024
        esp32.HEAP[3] = (113840, 200000, 30000, 45872)
        assert esp32board.heap_room() == 30000
    finally:
        esp32.HEAP[3] = (113840, 47408, 47104, 45872)


def test_the_idf_reserve_is_natlinks():
    c = (NATLINK / "esp32" / "natlink_heap.c").read_text()
    kb = int(re.search(r"#define NATLINK_IDF_RESERVE \((\d+) \* 1024\)", c).group(1))
    py = (COMMON / "esp32heap.py").read_text()
    assert 'IDF_RESERVE = getattr(natlink, "IDF_RESERVE", %d * 1024)' % kb in py
    mod = (NATLINK / "modnatlink.c").read_text()
    assert "#define NATLINK_IDF_RESERVE (%d * 1024)" % kb in mod


# ---- the natlink binding, built into the unix port (needs a MicroPython checkout)

def _natlink_build_inputs():
    return ([NATLINK / n for n in ("natlink.c", "natlink.h", "modnatlink.c", "natlink_mp.h")]
            + sorted((ROOT / "host_tests" / "natlink_unix" / "natlink").iterdir()))


@pytest.fixture(scope="session")
def natlink_micropython():
    """The unix port with the natlink binding and _lwipsim, built from MICROPY_DIR, with
    a GIL like the ESP32 port's."""
    mp = os.environ.get("MICROPY_DIR")
    if not mp or not (Path(mp) / "ports" / "unix" / "Makefile").exists():
        pytest.skip("no MicroPython checkout: set MICROPY_DIR to a clone of "
                    "github.com/micropython/micropython (v1.28.0) to build the natlink "
                    "binding into the unix port")
    if not Path("/usr/include/lwip/lwipopts.h").exists():
        pytest.skip("liblwip-dev is not installed (make setup, as root)")
    build = ROOT / "build" / "natlink_unix"
    exe = build / "micropython"
    newest = max(p.stat().st_mtime for p in _natlink_build_inputs())
    if not exe.exists() or exe.stat().st_mtime < newest:
        proc = subprocess.run(
            ["make", "-C", str(Path(mp) / "ports" / "unix"), "-j%d" % (os.cpu_count() or 2),
             "VARIANT=standard", "MICROPY_PY_BTREE=0", "MICROPY_PY_SSL=0", "MICROPY_PY_FFI=0",
             "MICROPY_PY_THREAD_GIL=1",   # as on the ESP32: threads take turns on a GIL
             "FROZEN_MANIFEST=", "BUILD=%s" % build,
             "USER_C_MODULES=%s" % (ROOT / "host_tests" / "natlink_unix")],
            capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, "building the binding failed:\n" + (
            proc.stdout[-3000:] + proc.stderr[-6000:])
        exe.touch()
    return str(exe)


def public_names(exe, expr, path=""):
    """The public names in dir(expr) (after import natlink) on a MicroPython binary."""
    code = ("import natlink\nprint(repr(sorted(n for n in dir(%s) if not n.startswith('_') "
            "and not n.startswith('fake_'))))" % expr)
    out = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MICROPYPATH=path)).stdout
    return eval(out.strip().splitlines()[-1])


def test_fake_natlink_offers_what_the_binding_offers(natlink_micropython):
    real = public_names(natlink_micropython, "natlink")
    fake = [n for n in public_names(unix_binary(), "natlink", str(FAKES)) if n != "time"]
    assert real == fake
    assert public_names(natlink_micropython, "natlink.Link") == ["recv_into", "send"]
    assert [n for n in public_names(unix_binary(), "natlink.Link", str(FAKES))
            if n not in ("name", "mtu")] == ["recv_into", "send"]
    assert real == ["LAN", "Link", "MAX_RANGES", "MTU", "RX_SLOTS", "TX_SLOTS", "WAN",
                    "claim", "counters", "dhcps", "pending", "rehook", "running",
                    "set_wan_addr", "start", "stop", "tx_free", "wait"]


@pytest.mark.parametrize("board", BOARDS)
def test_binding_over_lwip(board, natlink_micropython, tmp_path):
    res = run_case(board, "binding", tmp_path, exe=natlink_micropython)
    assert res["wrapped"] == [True, True]                  # the netifs' input is natlink's
    assert res["idle_wait"] is False and res["woken"] is True and res["pending"] == 1
    # recv_into, send, an empty recv_into and wait(0) under heap_lock: no allocation.
    assert res["locked"] == ["ok", 40, 0]
    assert res["sent"] == [LAN_HOST, 40001, REMOTE, 80, 6, True]   # out through lwIP
    assert res["refusals"] == ["OSError", "ValueError", "ValueError", "TypeError"]
    assert res["counters"] == sorted(["claimed", "passed", "rx_drops", "received", "sent",
                                      "tx_full", "tx_errors", "kick_fails"])
    assert res["stopped"][:2] == [True, False] and res["stopped"][2].endswith("stale>")
    assert res["stopped"][3] == 0 and res["after_stop"] == 0
    assert res["rehook"] == 0 and res["claim_stopped"] == "OSError"
    assert res["restarted"] == [True, True]
    assert res["dhcps"] == [0, False, "0.0.0.0", "0.0.0.0", "0.0.0.0", 3600]  # ESP-IDF's stopped


def test_the_repl_stays_live_while_the_router_waits(natlink_micropython, tmp_path):
    # natlink.wait() sleeps with the GIL released: another thread (the REPL) runs on.
    res = run_case("WT32_ETH01", "gil", tmp_path, exe=natlink_micropython)
    assert res["timed_out"] is False and res["waited_ms"] >= 400
    # With the GIL held, this thread could not run at all: at most the few turns the GIL
    # gives between the flag and the call (hundreds of thousands come in 500 ms here).
    assert res["ran_meanwhile"] > 100, res


@pytest.mark.parametrize("board", BOARDS)
def test_router_forwards_through_natlink_and_lwip(board, natlink_micropython, tmp_path):
    res = run_case(board, "forward", tmp_path, exe=natlink_micropython)
    out_and_back(res)
    links = res["links"]
    # lwIP kept what it answers itself (ARP): passed; natlink claimed the rest, the DHCP
    # DISCOVER broadcast included, and sent the router's OFFER out as a broadcast.
    assert links["lan"]["claimed"] == 3 and links["wan"]["claimed"] == 2
    assert links["wan"]["tx_errors"] == links["lan"]["tx_errors"] == 0
    assert links["wan"]["sent"] == 2 and links["lan"]["sent"] == 3


@pytest.mark.parametrize("board", ("WT32_ETH01", "ESP32_GENERIC"))
def test_lease_restarts_over_lwip(board, natlink_micropython, tmp_path):
    res = run_case(board, "lease_later", tmp_path, exe=natlink_micropython)
    assert res["came"] == "restarted" and res["moved"] == "restarted"
    assert res["third"] == ["100.64.0.9", "255.192.0.0"]
    assert res["overlap"] == ["nothing", "nothing"]


# ---- the heap, on the 32-bit build

@pytest.mark.parametrize("board", BOARDS)
def test_router_heap_fits_at_the_board_defaults(board):
    code = ("sys.path.insert(0, '/input/host_tests/upy/fakes')\n"
            "sys.path.insert(0, '/input/boards/natlink')\n"
            "sys.path.insert(0, '/input/boards/esp32_common')\n"
            "sys.path.insert(0, '/input/boards/%s')\n"
            "import esp32_cases\nesp32_cases.heap()\n" % board)
    out = run_wasi(code)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    print("\n%s: table %s (%d flows): router %d B, DHCP server (pool %s..%s) %d B, supervisor "
          "and watchdog %d B, setup %d B, total %d B; modules %d B (compiled from source "
          "here, frozen on the board)" % (
              board, res["table"], res["flows"], res["router"], res["pool"][0], res["pool"][1],
              res["dhcp"], res["watch"], res["setup"], res["total"], res["imports"]))
    assert res["table"] == TABLES[board] and res["dhcp_server"]
    assert res["capacity"] == [TABLES[board]["tcp"], TABLES[board]["udp"], TABLES[board]["icmp"]]
    assert res["router"] < HEAP_TARGET and res["total"] < HEAP_BUDGET
    assert res["router"] > res["flows"] * 40   # the table is in it: the measure is real
    assert res["dhcp"] > 0 and res["watch"] >= 0


# ---- the boards' build files

class _Manifest:
    """The manifest API of MicroPython's tools/manifestfile.py, enough to list what a
    board's manifest.py freezes (include, module, package, freeze, require)."""

    def __init__(self, port_dir, board_dir):
        self.vars = {"PORT_DIR": str(port_dir), "BOARD_DIR": str(board_dir), "MPY_DIR": "/mpy"}
        self.files = []
        self.includes = []

    def path(self, p):
        for k, v in self.vars.items():
            p = p.replace("$(%s)" % k, v)
        return os.path.abspath(p)

    def include(self, p, **kw):
        p = self.path(p)
        if os.path.isdir(p):
            p = os.path.join(p, "manifest.py")
        self.includes.append(p)
        if not os.path.exists(p):
            return  # the port's own manifest: not in this repository
        here = os.getcwd()
        os.chdir(os.path.dirname(p))
        try:
            exec(Path(p).read_text(), self.api())
        finally:
            os.chdir(here)

    def module(self, name, base_path=".", opt=None):
        full = os.path.join(self.path(base_path), name)
        assert os.path.isfile(full), full
        self.files.append((name, full))

    def package(self, name, files=None, base_path=".", opt=None):
        base = self.path(base_path)
        for dirpath, _, names in os.walk(os.path.join(base, name)):
            for n in sorted(names):
                if n.endswith(".py"):
                    full = os.path.join(dirpath, n)
                    self.files.append((os.path.relpath(full, base), full))

    def api(self):
        return {"include": self.include, "module": self.module, "package": self.package,
                "freeze": None, "require": None, "metadata": lambda **kw: None, "options": None}


@pytest.mark.parametrize("board", BOARDS)
def test_manifest_freezes_the_firmware_but_main(board, tmp_path):
    board_dir = ROOT / "boards" / board
    m = _Manifest(tmp_path / "ports" / "esp32", board_dir)
    m.include(str(board_dir / "manifest.py"))
    assert m.includes[1] == str(tmp_path / "ports" / "esp32" / "boards" / "manifest.py")
    frozen = sorted(name for name, _ in m.files)
    want = sorted(list(hostenv.firmware_files()) + ["natlinkrules.py", "board.py"] + [
        p.name for p in COMMON.glob("*.py") if p.name != "manifest.py"])
    assert "main.py" not in want and "forward/router.py" in want
    assert frozen == want
    assert dict(m.files)["board.py"] == str(board_dir / "board.py")
    assert Path(dict(m.files)["natlinkrules.py"]).resolve() == NATLINK / "natlinkrules.py"


@pytest.mark.parametrize("board", BOARDS)
def test_board_build_files(board):
    d = ROOT / "boards" / board
    cmake = (d / "mpconfigboard.cmake").read_text()
    assert "set(IDF_TARGET esp32)" in cmake
    defaults = re.search(r"set\(SDKCONFIG_DEFAULTS(.*?)\)", cmake, re.S).group(1).split()
    assert defaults == ["boards/sdkconfig.base",
                        "${MICROPY_BOARD_DIR}/../esp32_common/sdkconfig.memory",
                        "${MICROPY_BOARD_DIR}/sdkconfig.board"]
    assert "set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)" in cmake
    header = (d / "mpconfigboard.h").read_text()
    assert "#define MICROPY_PY_BLUETOOTH (0)" in header and "MICROPY_HW_BOARD_NAME" in header
    sdk = (d / "sdkconfig.board").read_text()
    assert "CONFIG_BT_ENABLED=n" in sdk and "CONFIG_LWIP_DHCPS_MAX_STATION_NUM=10" in sdk
    # The hostname: MicroPython's default, which it sets on each interface itself (an
    # ESP-IDF CONFIG_LWIP_LOCAL_HOSTNAME never reaches the network).
    assert '#define MICROPY_PY_NETWORK_HOSTNAME_DEFAULT "natrouter"' in header
    assert not re.search(r"^CONFIG_LWIP_LOCAL_HOSTNAME", sdk, re.M)
    meta = json.loads((d / "board.json").read_text())
    assert meta["mcu"] == "esp32" and meta["deploy_options"]["flash_offset"] == "0x1000"
    board_py = (d / "board.py").read_text()
    # data over esp32board: a name, the interfaces, table sizes; the interface from it
    assert board_py.count("setup(") == 1 and "table={" in board_py
    assert "open_links, reconfigure,  # noqa: F401\n                        start, wait" in board_py
    assert "def " not in board_py and "LAN_DHCP, boot, counters" in board_py


def test_wifi_buffers_fit_in_the_reserve_python_leaves():
    """The boards' Wi-Fi takes ESP-IDF's "Memory saving" rank, and the ESP-IDF heap kept
    from MicroPython's (esp32heap.IDF_RESERVE) holds every dynamic Wi-Fi buffer of it
    at once (1.6 KB each, ESP-IDF's Wi-Fi guide) with room for lwIP's pbufs beside."""
    text = (COMMON / "sdkconfig.memory").read_text()
    opts = dict(line.split("=", 1) for line in text.splitlines()
                if line.startswith("CONFIG_"))
    assert opts["CONFIG_ESP_WIFI_STATIC_RX_BUFFER_NUM"] == "6"
    dynamic = (int(opts["CONFIG_ESP_WIFI_DYNAMIC_RX_BUFFER_NUM"])
               + int(opts["CONFIG_ESP_WIFI_DYNAMIC_TX_BUFFER_NUM"]))
    reserve = int(re.search(r"IDF_RESERVE = getattr\(natlink, \"IDF_RESERVE\", (\d+) \* 1024",
                            (COMMON / "esp32heap.py").read_text()).group(1)) * 1024
    assert dynamic * 1600 + 8 * 1024 <= reserve


def test_c_ports_implement_the_binding_interface():
    """Every function natlink_mp.h declares is defined by the ESP32 port and by the unix
    test build (the ESP32 file cannot be compiled here: no ESP-IDF)."""
    header = (NATLINK / "natlink_mp.h").read_text()
    wanted = set(re.findall(r"^\S.*?\b(natlink_mp_\w+)\(", header, re.M))
    assert len(wanted) == 5
    esp32 = (NATLINK / "esp32" / "natlink_port_freertos.c").read_text()
    unix = "".join(p.read_text() for p in (ROOT / "host_tests" / "natlink_unix" / "natlink")
                   .glob("*.c"))
    for src in (esp32, unix):
        defined = set(re.findall(r"^(?:struct netif \*|void |int )(natlink_mp_\w+)\(", src, re.M))
        assert defined == wanted
    cmake = (NATLINK / "micropython.cmake").read_text()
    for f in ("natlink.c", "modnatlink.c", "esp32/natlink_port_freertos.c"):
        assert "${CMAKE_CURRENT_LIST_DIR}/%s" % f in cmake
    assert "target_link_libraries(usermod INTERFACE usermod_natlink)" in cmake


def test_natlink_names_the_lwip_versions_it_builds_against():
    """ESP-IDF v5.5 (what the boards build with) carries esp-lwip 2.2.0-esp; v5.3 had
    2.1.3-esp. natlink's sources must not say the boards run the older one alone."""
    for name in ("natlink.h", "natlink.c", "README.md"):
        text = (NATLINK / name).read_text()
        assert "2.1.3-esp" not in text or "2.2.0-esp" in text, name
    assert "2.2.0-esp" in (NATLINK / "natlink.h").read_text()
