"""The ESP32 boards left in a cupboard, on the MicroPython unix port against the fakes of
network, machine and natlink (host_tests/upy/esp32_recovery_cases.py): the router's own
DHCP server on the access point, the bring-up defects the fakes can show (a WAN decided
by its address, an access point restarted by ESP-IDF), the watchdog fed by the
forwarding loop, the uplink lost and found (Ethernet cable, Wi-Fi networks in order with
backoff, a new lease), a reboot without a WAN address, the factory reset (a button at
power-up, nr.reset()), the station's MAC address, and this board's configuration rules.
"""
import pytest

from esp32_run import BOARDS, ETHERNET, LEASE, REMOTE, run_case

NEW_LEASE = ["100.64.0.9", "255.192.0.0", "100.64.0.1"]


def case(board, name, tmp_path, **kw):
    return run_case(board, name, tmp_path, module="esp32_recovery_cases", **kw)


# ---- the router's own DHCP server on the access point

@pytest.mark.parametrize("board", BOARDS)
def test_the_router_serves_dhcp_on_the_access_point_and_keeps_its_leases(board, tmp_path):
    res = case(board, "dhcp_served", tmp_path)
    assert res["idf_dhcps"] == [False]          # ESP-IDF's own server stopped, once
    offer_type, offer_dst, offered = res["offer"]
    assert (offer_type, offer_dst) == (2, "255.255.255.255")
    # a pool of 249 addresses: ESP-IDF's server took at most 100 (and none would have
    # been left serving, defect 2), the router's takes any the LAN allows
    n = int(offered.split(".")[3])
    assert offered.startswith("192.168.4.") and 2 <= n <= 250
    assert res["ack"] == [5, "255.255.255.255", offered]
    assert res["static"] == [5, "255.255.255.255", "192.168.4.42"]
    mask, router, dns, lease_s = res["options"]
    assert (mask, router, dns, lease_s) == (["255.255.255.0"], ["192.168.4.1"],
                                            ["192.0.2.53", "9.9.9.9"], 600)
    again = case(board, "dhcp_after_reboot", tmp_path)       # the same flash, rebooted
    assert offered in again["bound"]
    assert again["renewed"] == [5, offered, offered]         # ACKed to the client itself


# ---- defect 1: the WAN is up when it holds an address

@pytest.mark.parametrize("board", ETHERNET)
def test_a_wifi_clients_lease_does_not_cost_the_ethernet_wan_its_address(board, tmp_path):
    res = case(board, "ap_lease_keeps_the_wan", tmp_path)
    assert res["isconnected"] is False          # MicroPython v1.28's LAN.isconnected()
    assert res["first"] == "nothing"
    assert res["wan"] == [LEASE[0], LEASE[0]]   # the restart kept the lease, natlink too
    assert res["waited_ms"] < 300               # and did not wait for one
    assert res["moved"] == "restarted" and res["wan_after"] == NEW_LEASE[0]


# ---- defect 4: ESP-IDF restarts an access point whose settings change

@pytest.mark.parametrize("board", BOARDS)
def test_access_point_settings_changed_while_it_runs(board, tmp_path):
    res = case(board, "ap_settings_live", tmp_path)
    # The AP's netif came back after natlink wrapped it: nothing claimed, until the
    # supervisor wrapped it again.
    assert res["boot"] == [False, "rehooked"]
    assert res["boot_out"] == [LEASE[0], 40000, REMOTE, 80, 6, True]
    # A new key: natlink stopped while the radio changes, started again after.
    assert res["change"] == "restarted" and res["natlink"] == ["stop", "start"]
    assert res["late"] == [False, "rehooked", "nothing"]
    assert res["late_out"] == [LEASE[0], 40001, REMOTE, 80, 6, True]


# ---- the watchdog, fed by the forwarding loop

@pytest.mark.parametrize("board", ("WT32_ETH01", "ESP32_GENERIC"))
def test_a_forwarding_loop_that_stops_turning_stops_feeding_the_watchdog(board, tmp_path):
    res = case(board, "watchdog", tmp_path)
    assert res["first"] == "nothing" and res["started"] == [["start", 10000]]
    # Stuck: the feed waits on the router's thread, which never takes it; the
    # supervisor gives up (Router.call's few seconds) and the board would reboot.
    assert res["stuck"] == "stuck" and res["fed_while_stuck"] == 0
    assert res["stuck_ms"] >= 2000
    assert res["back"] == "nothing" and res["fed_after"] >= 2
    assert res["stopped"] == ["idle", 1]        # stopped on purpose: fed all the same


# ---- the uplink lost and found

@pytest.mark.parametrize("board", ETHERNET)
def test_an_ethernet_cable_out_and_back_and_a_new_lease_keep_the_lan_side(board, tmp_path):
    res = case(board, "uplink_ethernet", tmp_path)
    assert res["down"] == ["nothing", True, True]   # no address: the router runs on
    assert res["up"] == ["nothing", True]           # the same lease back: nothing to do
    assert res["moved"] == ["restarted", True, NEW_LEASE[0]]
    assert res["ap_calls"] == []                    # the access point never touched
    addr, renewed = res["renewed"]
    assert renewed == [5, addr, addr]               # its client keeps its DHCP lease
    assert res["through"] == [NEW_LEASE[0], 40000, REMOTE, 80, 6, True]


def test_a_station_tries_its_networks_in_order_with_backoff(tmp_path):
    res = case("ESP32_GENERIC", "station_rounds", tmp_path)
    # The MAC set before the station joins, and lwIP's netif took it (the station
    # restarted with it).
    assert res["mac"] == ["021122334455", "021122334455"]
    boot = [tuple(c) for c in res["boot"]]
    assert boot.index(("config", [])) < boot.index(("active", [False])) < boot.index(
        ("connect", ["home", "homekey12"]))
    # "home" is out of reach: after JOIN_MS, "backup", which gives the lease.
    assert res["joined"] == ["restarted", LEASE[0], "nothing"]
    assert res["steps"] == ["nothing", "joining", "waiting", "nothing", "joining", "joining",
                            "waiting", "nothing"]
    assert res["found"] == ["joining", "nothing"]   # the same lease: no restart
    assert res["searched"] == ["home", "home", "backup", "home"]
    assert [ln.split("trying again in ")[1].split(" ")[0] for ln in res["backoff"]] == ["5", "10"]
    assert res["same_router"] and res["ap_calls"] == []
    # A new MAC from the REPL: the station restarts with it, natlink stopped meanwhile.
    assert res["mac_change"] == ["restarted", ["stop", "start"], "021122334466"]


@pytest.mark.parametrize("board", ("OLIMEX_ESP32_POE", "ESP32_GENERIC"))
def test_a_restart_that_fails_is_asked_again_until_the_router_runs(board, tmp_path):
    res = case(board, "restart_retried", tmp_path)
    assert res["moved"] == ["failed", True]          # the old router stopped, none runs
    assert res["again"] == "failed"
    assert res["retried"] == ["restarted", True, NEW_LEASE[0], "nothing"]
    assert sum("restarting the router failed" in ln for ln in res["_console"]) == 1


@pytest.mark.parametrize("board", ("OLIMEX_ESP32_POE", "ESP32_GENERIC"))
def test_a_reboot_after_minutes_without_a_wan_address(board, tmp_path):
    res = case(board, "wan_reboot", tmp_path)
    assert res["steps"] == ["nothing", "nothing"] and res["rebooted"] == "machine.reset()"
    assert any("no WAN address for 2 minutes: rebooting" in ln for ln in res["_console"])


# ---- the factory reset

BUTTON = {"WT32_ETH01": None, "OLIMEX_ESP32_POE": 34, "ESP32_GENERIC": 0}
OLD = {"wifi": {"ap_key": "my own key 1"}, "mtu": 1400}


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("how", ["held", "released", "late"])
def test_a_button_held_at_power_up_resets_the_configuration(board, how, tmp_path):
    res = case(board, "factory_" + how, tmp_path)
    button = BUTTON[board]
    assert res["read"] == ([button] if button is not None else [])
    # held the whole time: reset; let go early: nothing; pressed a moment after boot:
    # only where the button is a strapping pin (GPIO0), which must not be held at reset
    reset = button is not None and (how == "held" or (how == "late" and button == 0))
    if reset:
        assert (res["key"], res["mtu"], res["kept"]) == ("natrouter", 1500, OLD)
        assert any("factory reset" in ln for ln in res["_console"])
    else:
        assert (res["key"], res["mtu"], res["kept"]) == ("my own key 1", 1400, None)


@pytest.mark.parametrize("board", ("WT32_ETH01", "ESP32_GENERIC"))
def test_nr_reset_at_the_repl(board, tmp_path):
    res = case(board, "factory_repl", tmp_path)
    assert (res["key"], res["mtu"], res["file"]) == ("natrouter", 1500, 1500)
    assert res["kept"] == OLD


# ---- this board's own configuration keys

@pytest.mark.parametrize("board", BOARDS)
def test_recovery_and_station_keys_are_judged_at_boot(board, tmp_path):
    res = case(board, "rules", tmp_path)
    problems = sorted(p.split(": ", 1)[1] for p in res["problems"])
    want = ["recovery.spare: unknown key; ignored",
            "recovery.wan_reboot_min: 'soon' must be 0 (off) or an integer 1..1440; using 0",
            "recovery.watchdog_s: 5 must be 0 (off) or an integer 10..3600; using 60"]
    if board == "ESP32_GENERIC":
        want += ["wifi.sta_mac: '01:00:5e:00:00:01' must be \"\" (the chip's own) or a "
                 "unicast MAC address \"02:xx:xx:xx:xx:xx\"; using the chip's own",
                 "wifi.sta_networks[1]: must be {\"ssid\": ..., \"key\": ...}; left out",
                 "wifi.sta_networks[2].key: must be empty (an open network), a passphrase of "
                 "8..63 printable ASCII characters or 64 hex digits; left out",
                 "wifi.sta_networks[3]: must be {\"ssid\": ..., \"key\": ...}; left out"]
        assert res["wifi"]["sta_networks"] == [{"ssid": "ok", "key": "okokokok"}]
        assert res["wifi"]["sta_mac"] == ""
    else:  # the Ethernet boards have no station
        want += ["wifi.sta_mac: unknown key; ignored", "wifi.sta_networks: unknown key; ignored"]
        assert "sta_mac" not in res["wifi"]
    assert problems == sorted(want)
    assert res["recovery"] == {"watchdog_s": 60, "wan_reboot_min": 0}

