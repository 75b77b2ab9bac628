"""The page and its JSON API (firmware/web) on CPython, against a running router on
MemoryLinks (test_manage.py's Board): microdot's test client in the browser's place. The
password's hashing and the configuration's web, admin and mqtt sections
(manage/webconfig.py); sessions, tokens and the login's limit (web/auth.py); the server's
checks of a request's head (web/server.py); the traffic ring (forward/traffic.py); the
DHCP host names (services/hostnames.py). End to end on the virtual boards:
test_web_e2e.py, test_web_browser.py."""
import asyncio
import json
import re
from array import array
from urllib.parse import urlencode

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.packet import raw

pytest.importorskip("microdot")

from manage import api, config, webconfig  # noqa: E402
from manage.runner import runner  # noqa: E402
from microdot.test_client import TestClient  # noqa: E402
from services import hostnames  # noqa: E402
from test_manage import HOST1, Board, exchange  # noqa: E402
from web import auth, pages, server  # noqa: E402
from web.app import Web  # noqa: E402
from forward.counters import C_TRANSLATED_IN, C_TRANSLATED_OUT, NAMES  # noqa: E402
from forward.traffic import Traffic  # noqa: E402

PASSWORD = "hunter2hunter2"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def board(tmp_path):
    b = Board(tmp_path)
    config.save(b.CONFIG_PATH, config.defaults())
    runner.start(b)
    api._edited = None
    hostnames.forget()
    yield b
    runner.stop()  # through the owner: its thread ends before the next test's
    api._edited = None


class Browser:
    """microdot's test client with the session's cookie and token, synchronous."""

    def __init__(self, web):
        self.client = TestClient(web.app)
        self.csrf = None

    def get(self, path, **kw):
        r = asyncio.run(self.client.get(path, **kw))
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', r.text or "")
        if m:
            self.csrf = m.group(1)
        return r

    def post(self, path, fields=None, token=True, headers=None):
        fields = dict(fields or {})
        if token:
            fields.setdefault("csrf", self.csrf)
        return asyncio.run(self.client.post(path, headers=dict(FORM, **(headers or {})),
                                            body=urlencode(fields)))

    def api(self, path, body=None, token=None, headers=None):
        h = dict(headers or {})
        if token:
            h["X-CSRF-Token"] = token
        if body is None:
            return asyncio.run(self.client.get(path, headers=h))
        h["Content-Type"] = "application/json"
        data = body if isinstance(body, str) else json.dumps(body)
        return asyncio.run(self.client.post(path, headers=h, body=data))


def set_up(board):
    b = Browser(Web())
    b.get("/setup")
    assert b.post("/setup", {"password": PASSWORD, "again": PASSWORD}).status_code == 303
    return b


# ---- the password and the configuration

def test_the_password_is_kept_salted_and_hashed():
    a, b = webconfig.hash_password(PASSWORD), webconfig.hash_password(PASSWORD)
    assert a != b and PASSWORD not in a and a.startswith("sha256$%d$" % webconfig.ITERATIONS)
    assert webconfig.check_password(PASSWORD, a) and webconfig.check_password(PASSWORD, b)
    assert not webconfig.check_password(PASSWORD + "x", a)
    assert not webconfig.check_password(PASSWORD, "") and not webconfig.check_password(None, a)
    for bad in ("short", "x" * 65, 12345678):
        with pytest.raises(ValueError, match=r"admin\.password"):
            webconfig.hash_password(bad)


@pytest.mark.parametrize("raw_cfg,named", [
    ({"admin": {"password": "in clear text"}}, "admin.password"),
    ({"web": {"port": 0}}, "web.port"),
    ({"web": {"enabled": "yes"}}, "web.enabled"),
    ({"mqtt": {"enabled": True}}, "mqtt.host: must be the broker's address"),
    ({"mqtt": {"host": "broker.example"}}, "mqtt.host"),
    ({"mqtt": {"topic": "a/#"}}, "mqtt.topic"),
    ({"mqtt": {"interval_s": 1}}, "mqtt.interval_s"),
    ({"mqtt": {"qos": 1}}, "mqtt.qos: unknown key"),
])
def test_bad_sections_take_their_defaults_and_say_so(raw_cfg, named):
    cfg, problems = config.validate(raw_cfg)
    assert any(p.startswith(named) for p in problems), problems
    assert cfg["admin"]["password"] == "" and cfg["mqtt"]["enabled"] is False
    with pytest.raises(ValueError, match=re.escape(named)):
        config.validate(raw_cfg, strict=True)


def test_sections_round_trip_through_the_file():
    raw_cfg = {"web": {"enabled": False, "port": 8080},
               "admin": {"password": webconfig.hash_password(PASSWORD)},
               "mqtt": {"enabled": True, "host": "203.0.113.10", "port": 1884, "user": "u",
                        "password": "p", "topic": "home/router", "interval_s": 10,
                        "discovery": ""}}
    cfg, problems = config.validate(raw_cfg)
    assert problems == []
    out = config.to_file(cfg)
    assert {k: out[k] for k in raw_cfg} == raw_cfg


# ---- sessions and the login's limit

def test_sessions_are_bounded_and_a_visitors_goes_first():
    now = [0]
    s = auth.Sessions(size=3, clock=lambda: now[0])
    admin = s.new(True)
    visitors = [s.new(False) for _ in range(2)]
    now[0] += 10
    s.new(False)
    assert len(s) == 3 and s.get(admin.id) is admin and s.get(visitors[0].id) is None
    now[0] += auth.IDLE_MS + 1
    assert s.get(admin.id) is None  # idle too long
    assert s.get(None) is None and s.get("x" * 32) is None
    assert admin.csrf != admin.id and len(admin.csrf) == 32


def test_logins_are_rate_limited_per_address_and_overall():
    now = [0]
    lim = auth.Limiter(clock=lambda: now[0])
    for _ in range(auth.ATTEMPTS):
        assert lim.wait_s("a") == 0
        lim.failed("a")
    assert lim.wait_s("a") == auth.WINDOW_MS // 1000 + 1 and lim.wait_s("b") == 0
    now[0] += auth.WINDOW_MS
    assert lim.wait_s("a") == 0
    for i in range(auth.ALL_ATTEMPTS):
        lim.failed("host%d" % i)
    assert lim.wait_s("someone else") > 0
    assert len(lim._failed) <= auth.ADDRESSES


# ---- the server's checks, before microdot sees a request

@pytest.mark.parametrize("head,status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),
    (b"POST /api/change HTTP/1.1\r\nContent-Length: 20\r\n\r\n", None),
    (b"GET /flows?host=192.168.4.2&proto=tcp HTTP/1.0\r\n\r\n", None),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"BREW / HTTP/1.1\r\n\r\n", 405),
    (b"get / HTTP/1.1\r\n\r\n", 400),
    (b"GET nohost HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET /%zz HTTP/1.1\r\n\r\n", 400),
    (b"GET /%ff HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX\x01: y\r\n\r\n", 400),
    (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(40)) + b"\r\n", 431),
])
def test_request_heads_are_checked(head, status):
    got = server.check(head)
    assert (got[0] if got else None) == status, got


# ---- the page, logged in or not

def test_a_fresh_board_serves_only_set_a_password(board):
    b = Browser(Web())
    for path in ("/", "/clients", "/config", "/login"):
        r = b.get(path)
        assert r.status_code == 303 and r.headers["Location"] == "/setup", path
    assert b.api("/api/status").status_code == 403
    r = b.get("/setup")
    assert r.status_code == 200 and "Set a password" in r.text
    cookie = r.headers["Set-Cookie"][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert b.post("/setup", {"password": PASSWORD, "again": PASSWORD}, token=False).status_code == 403
    assert b.post("/setup", {"password": "short", "again": "short"}).status_code == 400
    assert b.post("/setup", {"password": PASSWORD, "again": "other"}).status_code == 400
    assert not api.password_set()
    assert b.post("/setup", {"password": PASSWORD, "again": PASSWORD}).status_code == 303
    stored = json.loads(open(board.CONFIG_PATH).read())["admin"]["password"]
    assert webconfig.check_password(PASSWORD, stored) and PASSWORD not in open(board.CONFIG_PATH).read()
    assert b.get("/").status_code == 200
    assert b.get("/setup").status_code == 303   # once set, only a logged-in change


def test_login_logout_and_the_limit(board):
    set_up(board)
    b = Browser(Web())
    assert b.get("/").headers["Location"] == "/login"
    b.get("/login")
    assert b.post("/login", {"password": "nope"}).status_code == 401
    assert b.post("/login", {"password": PASSWORD}).status_code == 303
    assert b.get("/config").status_code == 200
    assert b.post("/logout").status_code == 303
    assert b.get("/config").status_code == 303
    b.get("/login")
    for _ in range(auth.ATTEMPTS):
        b.post("/login", {"password": "nope"})
    r = b.post("/login", {"password": PASSWORD})
    assert r.status_code == 429 and "Too many attempts" in r.text


def test_no_change_without_the_token_or_from_another_site(board):
    b = set_up(board)
    b.get("/forwards")
    fields = {"proto": "tcp", "port": "9000", "to": HOST1}
    assert b.post("/forwards/add", fields, token=False).status_code == 403
    assert b.post("/forwards/add", dict(fields, csrf="0" * 32)).status_code == 403
    assert b.post("/forwards/add", fields,
                  headers={"Origin": "http://evil.example"}).status_code == 403
    assert b.post("/forwards/add", fields,
                  headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert api.forwards() == []
    same_site = {"Origin": "http://192.168.4.1", "Host": "192.168.4.1"}
    assert b.post("/forwards/add", fields, headers=same_site).status_code == 200
    assert api.forwards() == [{"proto": "tcp", "port": 9000, "to": HOST1, "to_port": 9000}]


def test_forwards_show_each_problem_beside_its_field(board):
    b = set_up(board)
    b.get("/forwards")
    r = b.post("/forwards/add", {"proto": "tcp", "port": "8080", "to": "10.0.0.1"})
    assert r.status_code == 400
    assert re.search(r'name="to" value="10.0.0.1"[^>]*><span class="err">10.0.0.1 is not a host',
                     r.text), r.text
    r = b.post("/forwards/add", {"proto": "tcp", "port": "x", "to": HOST1})
    assert re.search(r'name="port" value="x"[^>]*><span class="err">a port number', r.text)
    assert b.post("/forwards/add", {"proto": "udp", "port": "53", "to": HOST1,
                                    "to_port": "5353"}).status_code == 200
    r = b.post("/forwards/add", {"proto": "udp", "port": "53", "to": HOST1})
    assert "already forwarded" in r.text and r.status_code == 400
    assert b.post("/forwards/remove", {"proto": "udp", "port": "53"}).status_code == 200
    assert api.forwards() == []


def test_configuration_change_pending_apply_save(board):
    b = set_up(board)
    r = b.get("/config")
    assert "admin.password" in r.text and "&quot;(set)&quot;" in r.text   # no hash shown
    assert "sha256$" not in r.text
    r = b.post("/config/set", {"key": "ports.first", "value": "2000"})
    assert r.status_code == 200 and "ports.first is in force" in r.text
    r = b.post("/config/set", {"key": "lan.addr", "value": "192.168.4.254"})
    assert "waits for apply" in r.text and api.pending() == ["lan"]
    r = b.post("/config/set", {"key": "wan.adr", "value": "1.2.3.4"})
    assert r.status_code == 400 and "unknown key" in r.text
    r = b.post("/config/set", {"key": "mtu", "value": "99"})
    assert r.status_code == 400 and "mtu: 99 must be" in r.text
    assert b.post("/config/set", {"key": "admin.password", "value": '"x"'}).status_code == 400
    assert b.post("/config/apply").status_code == 200
    assert runner.router.cfg["lan"]["addr"] == "192.168.4.254" and api.pending() == []
    b.post("/config/save")
    assert json.loads(open(board.CONFIG_PATH).read())["ports"]["first"] == 2000


def test_json_api(board):
    set_up(board)
    b = Browser(Web())
    assert b.api("/api/status").status_code == 401
    r = b.api("/api/login", {"password": "nope"})
    assert r.status_code == 401
    r = b.api("/api/login", {"password": PASSWORD})
    token = r.json["csrf"]
    assert r.status_code == 200 and len(token) == 32
    assert b.api("/api/status").json["lan"]["addr"] == "192.168.4.1"
    assert b.api("/api/config").json["config"]["admin"]["password"] == "(set)"
    assert b.api("/api/nothing").status_code == 404
    fw = {"proto": "tcp", "port": 9000, "to": HOST1}
    assert b.api("/api/forwards", fw).status_code == 403
    assert b.api("/api/forwards", fw, token=token).json == {"applied": ["forwards"],
                                                              "pending": []}
    assert b.api("/api/forwards", "{not json", token=token).status_code == 400
    r = b.api("/api/forwards", dict(fw, port=9001, to="1.2.3.4"), token=token)
    assert r.status_code == 400 and "forwards[1].to" in r.json["error"]
    assert b.api("/api/change", {"changes": {"mtu": 1400}}, token=token).json["pending"] == ["mtu"]
    assert b.api("/api/apply", {}, token=token).json["restarted"] is True
    assert b.api("/api/flows?limit=abc").status_code == 400


def test_clients_have_the_name_their_dhcp_client_sent(board):
    b = set_up(board)
    mac = "02:00:00:00:00:07"
    discover = (IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) /
                BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")) + bytes(10), xid=7) /
                DHCP(options=[("message-type", "discover"), ("hostname", b"<b>laptop</b>"),
                              "end"]))
    exchange(board.lan, discover)
    assert hostnames.names() == {mac: "<b>laptop</b>"}
    rows = api.clients()
    assert [(r["mac"], r["hostname"], r["lease"]) for r in rows] == [(mac, "<b>laptop</b>",
                                                                      "offered")]
    page = b.get("/clients").text
    assert "&lt;b&gt;laptop&lt;/b&gt;" in page and "<b>laptop" not in page


def test_hostnames_are_bounded():
    hostnames.forget()
    for i in range(hostnames.MAX + 10):
        msg = bytearray(raw(BOOTP(chaddr=bytes([2, 0, 0, 0, i >> 8, i & 255]) + bytes(10)) /
                            DHCP(options=[("message-type", "request"),
                                          ("hostname", b"host%d\x00\n" % i), "end"])))
        hostnames.note(msg, 0, len(msg))
    names = hostnames.names()
    assert len(names) == hostnames.MAX and "host%d" % (hostnames.MAX + 9) in names.values()
    assert "host0" not in names.values()


# ---- the traffic ring, and the pages from plain data

def test_traffic_ring_gives_rates_and_wraps():
    class Wan:
        n = 0

        def byte_counts(self):
            self.n += 1000
            return self.n, (1 << 32) + 10 * self.n   # past 32 bits: deltas still right

    t, c, wan = Traffic(samples=5), array("I", bytes(4 * len(NAMES))), Wan()
    for s in range(8):
        c[C_TRANSLATED_IN] += 3
        c[C_TRANSLATED_OUT] += s
        t.sample(c, wan)
    r = t.rates()
    assert r["seconds"] == 4 and r["packets_in"] == [3] * 4 and r["packets_out"] == [4, 5, 6, 7]
    assert r["bytes_in"] == [1000] * 4 and r["bytes_out"] == [10000] * 4
    assert Traffic().rates()["bytes_in"] is None


def test_status_page_from_plain_data_escapes_and_plots(board):
    s, rates = api.overview()
    s["last_error"] = "<script>alert(1)</script>"
    rates = {"seconds": 3, "packets_in": [1, 5, 2], "packets_out": [0, 0, 9],
             "bytes_in": None, "bytes_out": None}
    html = pages.status(s, rates, "t" * 32)
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert html.count("<polyline") == 2 and "do not count bytes" in html
    assert html.count('name="csrf"') == 1    # the logout form
