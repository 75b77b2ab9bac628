"""The page and its JSON API (firmware/web) end to end on both virtual boards, from real
hosts: a client in lan1 (tools/peers/web_probe.py), the WAN side from srv and isp, MQTT
to mosquitto. The browser itself: test_web_browser.py. Needs root and `ip netns`.

- the JSON API: login, every GET, a port forward added (and reached from srv), refused
  without the token, removed; broken JSON, wrong fields;
- bad input: oversized request lines and headers, too many headers, unknown methods,
  garbage, a body too large, a slow client, 50 parallel connections, wrong tokens, a
  cross-site form: each gets its HTTP error, pings through the router never stop, the
  board's heap comes back to where it was, and the server answers again;
- the WAN side: nothing answers on the page's port at either router address;
- MQTT: status and Home Assistant discovery to mosquitto (on the lwIP host board in the
  server namespace, through the WAN as on an ESP32; on the virtual board, whose WAN
  address is all the NAT's, on the LAN);
- per-page times and heap, printed (pytest -s) for the note."""
import json
import shutil
import time

import pytest

import topology
from linepeer import LinePeer
from netns import background, capture, topology as built_topology
from topology import FORWARD_TCP, LAN1, LAN_GW, SRV, WAN

PASSWORD = "correct horse battery"
PAGES = ("/", "/clients", "/flows", "/forwards", "/config", "/api/status", "/api/traffic",
         "/api/clients", "/api/config")


@pytest.fixture(scope="module", params=topology.BOARD_NAMES)
def wtopo(request):
    with built_topology("w", board=request.param) as topo:
        topo.exec_on_board("import nr; nr.password(%r)" % PASSWORD)
        yield topo


@pytest.fixture
def probe(wtopo):
    with LinePeer(wtopo, wtopo.lan1, "web_probe.py", LAN_GW, 80) as p:
        assert p("login", password=PASSWORD)["status"] == 200
        yield p


def body(r):
    return json.loads(r["body"])


def board_heap(topo):
    return topo.eval_on_board("import gc; gc.collect(); print(gc.mem_alloc())")


# ---- the JSON API

def test_json_api_end_to_end(wtopo, probe):
    s = body(probe("request", path="/api/status"))
    assert s["running"] and s["lan"]["addr"] == LAN_GW and s["wan"]["addr"] == WAN
    assert set(s["flows"]) == {"tcp", "udp", "icmp"} and "translated_out" in s["counters"]
    time.sleep(1.5)  # the ring takes a sample a second: the pings fall between two
    assert wtopo.ping(wtopo.lan2, SRV, count=3)
    time.sleep(2.5)
    t = body(probe("request", path="/api/traffic"))
    assert t["seconds"] >= 2 and len(t["packets_in"]) == t["seconds"]
    assert sum(t["packets_out"]) >= 3 and sum(t["packets_in"]) >= 3
    assert t["bytes_in"] is not None and sum(t["bytes_out"]) > 0  # these boards count bytes
    assert [f["port"] for f in body(probe("request", path="/api/forwards"))] == [FORWARD_TCP,
                                                                                 5353]
    index = body(probe("request", path="/api"))
    for path in index["get"]:
        assert probe("request", path=path)["status"] == 200, path
    cfg = body(probe("request", path="/api/config"))["config"]
    assert cfg["admin"]["password"] == "(set)" and cfg["lan"]["addr"] == LAN_GW

    forward = {"proto": "tcp", "port": 9091, "to": LAN1, "to_port": 7071}
    refused = probe("request", method="POST", path="/api/forwards", json=forward, token=False)
    assert refused["status"] == 403
    assert probe("request", method="POST", path="/api/forwards", json=forward,
                 headers={"X-CSRF-Token": "0" * 32}, token=False)["status"] == 403
    added = probe("request", method="POST", path="/api/forwards", json=forward)
    assert added["status"] == 200 and body(added)["applied"] == ["forwards"]
    with background(wtopo.serve(wtopo.lan1, "tcp", 7071, "lan1")):
        reply = wtopo.talk(wtopo.srv, "tcp", WAN, 9091, ["via the api"])
    assert reply[0].startswith("lan1 via the api from %s:" % SRV), reply
    bad = probe("request", method="POST", path="/api/forwards",
                json=dict(forward, port=9092, to="10.9.9.9"))
    assert bad["status"] == 400 and "to: 10.9.9.9 is not a host on the LAN" in body(bad)["error"]
    broken = probe("request", method="POST", path="/api/forwards", body='{"proto": "tcp", ',
                   headers={"Content-Type": "application/json"})
    assert broken["status"] == 400 and "not valid JSON" in body(broken)["error"]
    missing = probe("request", method="POST", path="/api/unforward", json={"proto": "tcp"})
    assert missing["status"] == 400
    assert probe("request", method="POST", path="/api/unforward",
                 json={"proto": "tcp", "port": 9091})["status"] == 200
    assert 9091 not in [f["port"] for f in body(probe("request", path="/api/forwards"))]
    # Logged out: nothing but the login.
    assert probe("login", password="not the password")["status"] == 401
    assert probe("request", path="/api/status", headers={"Cookie": ""})["status"] == 401


# ---- bad input

BAD = [  # (what, the request's bytes, the status line it must get)
    ("oversized request line", "GET /" + "a" * 5000 + " HTTP/1.1\r\n\r\n", "414"),
    ("oversized header", "GET / HTTP/1.1\r\nX: " + "b" * 5000 + "\r\n\r\n", "431"),
    ("too many headers", "GET / HTTP/1.1\r\n" + "".join("H%d: x\r\n" % i for i in range(40))
     + "\r\n", "431"),
    ("an unknown method", "BREW / HTTP/1.1\r\n\r\n", "405"),
    ("garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "400"),
    ("not HTTP", "hello there\r\n\r\n", "400"),
    ("a header without a colon", "GET / HTTP/1.1\r\nNoColon\r\n\r\n", "400"),
    ("a bad escape", "GET /flows?host=%zz HTTP/1.1\r\n\r\n", "400"),
    ("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", "505"),
    ("a body too large", "POST /api/change HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", "413"),
    ("a chunked body", "POST /login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "501"),
]


def test_bad_input_gets_its_error_and_the_board_holds(wtopo, probe):
    for path in PAGES:  # warm: the modules, the sessions' table, the pages' buffers
        assert probe("request", path=path)["status"] == 200
    before = board_heap(wtopo)
    errors_before = wtopo.eval_on_board("from manage import api; print(api.status()"
                                        "['counters']['errors'])")
    pinging = wtopo.popen(wtopo.lan2, "ping", "-n", "-i", "0.2", "-c", "150", "-W", "1", SRV)
    with background(pinging):
        for what, data, want in BAD:
            got = probe("raw", data=data)
            assert got["status"].startswith("HTTP/1.0 " + want), (what, got)
        slow = probe("slow", data="GET / HTTP/1.1\r\nHost: x\r\n" + "X-Pad: y\r\n" * 30,
                     every=0.5, max_s=15, timeout=30)
        assert slow["status"].startswith("HTTP/1.0 408") and slow["seconds"] < 12, slow
        many = probe("parallel", n=50, path="/api/status", timeout=30, wait_s=90)
        statuses = [s.split(" ")[1] if s.startswith("HTTP/") else s for s in many["statuses"]]
        assert set(statuses) <= {"200", "503"} and "200" in statuses, statuses
        for r in (probe("request", method="POST", path="/api/change",
                        json={"changes": {"ports.first": 2000}}, headers={"X-CSRF-Token": "x"}),
                  probe("request", method="POST", path="/forwards/add",
                        body="csrf=nope&proto=tcp&port=9000&to=%s" % LAN1,
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
                  probe("request", method="POST", path="/api/change", json={"changes": {}},
                        headers={"Origin": "http://evil.example"})):
            assert r["status"] == 403, r
        assert probe("request", method="POST", path="/api/change",
                     json={"changes": "nope"})["status"] == 400
        out, _ = pinging.communicate(timeout=60)
    # forwarding never stopped: every ping during all of it was answered
    assert " 150 received" in out or ", 0% packet loss" in out, out
    after = board_heap(wtopo)
    stats = body(probe("request", path="/api/services"))["http"]
    print("\n%s: heap %d B before, %d B after the bad input; server %s" % (
        wtopo.board, before, after, stats["counts"]))
    assert after - before < 48 * 1024, (before, after)
    assert stats["counts"]["bad"] >= len(BAD) - 1 and stats["counts"]["busy"] >= 1
    assert stats["connections"] <= 1   # this request's own
    assert probe("request", path="/")["status"] == 200   # and it answers as before
    assert wtopo.eval_on_board("from manage import api; print(api.status()"
                               "['counters']['errors'])") == errors_before
    assert body(probe("request", path="/api/forwards"))[0]["port"] == FORWARD_TCP
    console = wtopo.console.text()
    assert "Traceback" not in console and "Unhandled exception" not in console, console[-3000:]


# ---- the WAN side

def test_nothing_answers_the_page_from_the_wan(wtopo):
    """Neither router address answers the page's port from the WAN, not even a host that
    routes the LAN's subnet to the router's WAN address."""
    wtopo.run(wtopo.isp, "ip", "route", "replace", "192.168.4.0/24", "via", WAN)
    try:
        with capture(wtopo, wtopo.isp, "rtr", 12) as frames:
            tries = [(wtopo.srv, WAN), (wtopo.isp, WAN), (wtopo.isp, LAN_GW)]
            results = [wtopo.talk(ns, "tcp", host, 80, ["GET / HTTP/1.0"], timeout=2)
                       for ns, host in tries]
    finally:
        wtopo.run(wtopo.isp, "ip", "route", "del", "192.168.4.0/24", check=False)
    for (ns, host), r in zip(tries, results):
        assert r in (["TIMEOUT"], ["REFUSED"]), (ns, host, r)
    asked = [f for f in frames if f[4] == 80 and f[1] in (WAN, LAN_GW)]
    answered = [f for f in frames if f[3] == 80 and f[0] in (WAN, LAN_GW) and f[2] == 6]
    assert asked, "the capture saw none of the attempts: it proves nothing"
    # no SYN-ACK, no data: at most a refusal (lwIP's, on the lwIP host board: as on an
    # ESP32, whose page listens on the access point's netif only)
    assert all(r in (["TIMEOUT"], ["REFUSED"]) for r in results)
    if wtopo.board == "vboard":
        assert answered == [] and results == [["TIMEOUT"]] * 3, (answered, results)


# ---- MQTT

def test_mqtt_status_and_home_assistant_discovery(wtopo):
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto is not installed (make setup)")
    # On the lwIP host board the broker is on the WAN side, reached from lwIP's own ports
    # of the WAN address (as on an ESP32); the virtual board's WAN address is all the NAT's.
    ns, broker = (wtopo.srv, SRV) if wtopo.board == "lwip_host" else (wtopo.lan2, topology.LAN2)
    conf = wtopo.workdir / "mosquitto.conf"
    conf.write_text("listener 1883 %s\nallow_anonymous true\npersistence false\n" % broker)
    with background(wtopo.popen(ns, "mosquitto", "-c", conf)):
        time.sleep(0.5)
        sub = wtopo.popen(ns, "mosquitto_sub", "-h", broker, "-v", "-t", "natrouter/#",
                          "-t", "homeassistant/#", "-C", "12", "-W", "40")
        with background(sub):
            time.sleep(0.5)
            wtopo.exec_on_board("from manage import api; print(api.change({'mqtt.enabled': "
                                "True, 'mqtt.host': %r, 'mqtt.interval_s': 5}))" % broker)
            out, _ = sub.communicate(timeout=60)
    state = wtopo.eval_on_board("from manage import api; api.set('mqtt.enabled', False); "
                                "from web import mqtt; print(mqtt.state)")
    lines = [ln.split(" ", 1) for ln in out.splitlines() if " " in ln]
    topics = dict(lines)
    assert topics.get("natrouter/availability") == "online", out
    configs = [t for t in topics if t.startswith("homeassistant/sensor/natrouter/")]
    assert len(configs) == 8, out
    uptime = json.loads(topics["homeassistant/sensor/natrouter/uptime/config"])
    assert uptime["state_topic"] == "natrouter/status" and uptime["unit_of_measurement"] == "s"
    status = json.loads(topics["natrouter/status"])
    assert status["lan"] == LAN_GW and status["running"] and "flows_tcp" in status, status
    assert state["connects"] >= 1 and state["published"] >= 1, state


# ---- figures for the note

def test_page_times_and_heap(wtopo, probe):
    times = {}
    for path in PAGES:
        got = [probe("request", path=path) for _ in range(5)]
        assert all(g["status"] == 200 for g in got), path
        times[path] = (min(g["ms"] for g in got), max(g["ms"] for g in got),
                       len(got[-1]["body"]))
    stats = body(probe("request", path="/api/services"))["http"]["pages"]
    print("\n%s, the router idle: page, client ms (best, worst of 5), bytes; the server's "
          "ms (last, longest)" % wtopo.board)
    for path, (best, worst, size) in times.items():
        p = stats.get(path, {})
        print("  %-13s %6.1f %6.1f %6d B   server %s/%s ms" % (
            path, best, worst, size, p.get("last_ms"), p.get("max_ms")))
    assert set(times) <= set(stats)
