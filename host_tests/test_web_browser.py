"""The page in a real browser, as its owner would use it, on both virtual boards: Debian's
headless Chromium under chromedriver (selenium), in the LAN namespace lan1, which takes
its address from the router's DHCP server with a host name (busybox udhcpc), as a laptop
would. Screenshots of the status, clients and forwards pages go to build/screenshots/.
Needs root, `ip netns`, chromium and chromium-driver (make setup); skipped otherwise.

Set the password on a fresh board, see the status and the traffic plot, find lan1 with its
name in the clients, add a port forward and reach it from the server namespace, see the
error beside the field of a bad one, save, restart the board, log in again and find the
forward still there and working."""
import shutil
import time
from pathlib import Path

import pytest

import topology
from linepeer import LinePeer
from netns import background, topology as built_topology
from test_vboard_dhcp import lan1_readdressed
from test_vboard_manage import lease_of, udhcpc
from topology import LAN_GW, SRV, WAN

PASSWORD = "a good long password"
SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
URL = "http://%s" % LAN_GW


def browser_missing():
    for exe in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(exe).exists():
            return "%s is not installed (make setup: chromium, chromium-driver)" % exe
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make setup)"
    if shutil.which("busybox") is None:
        return "busybox (udhcpc) is not installed (make setup)"
    return None


@pytest.fixture(scope="module", params=topology.BOARD_NAMES)
def btopo(request):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    with built_topology("b", board=request.param) as topo:
        yield topo


def test_a_person_sets_up_the_router_from_a_browser(btopo):
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = btopo.board
    with lan1_readdressed(btopo):
        lease = lease_of(udhcpc(btopo, btopo.lan1, "-x", "hostname:lan1"))
        assert lease is not None, "lan1 got no lease"
        with LinePeer(btopo, btopo.lan1, "browser.py", SHOTS) as b:
            walk_through(btopo, b, name, lease["ip"])


def walk_through(topo, b, name, lan1_ip):
    # A fresh board serves nothing but "set a password".
    page = b("get", url=URL + "/")
    assert page["url"].endswith("/setup") and "no admin password yet" in page["text"], page
    page = b("fill", fields={"password": PASSWORD, "again": "something else"})
    assert "The two passwords differ" in page["text"], page
    page = b("fill", fields={"password": PASSWORD, "again": PASSWORD})
    assert page["url"] == URL + "/" and "Status" in page["title"], page
    assert "forwarding" in page["text"] and "192.168.4.1/255.255.255.0" in page["text"]

    # Traffic for the plot, then the status page with it.
    assert topo.ping(topo.lan2, SRV, count=10)
    time.sleep(2)
    page = b("get", url=URL + "/")
    assert len(b("find", css="#traffic svg polyline")["texts"]) >= 2, page
    assert "Dropped" in page["text"] and "Last error" in page["text"]
    b("shot", name=name + "-status")

    # lan1 in the clients, with the name its DHCP client sent.
    page = b("get", url=URL + "/clients")
    rows = b("find", css="#clients tr")["texts"]
    assert any("lan1" in r and lan1_ip in r and "bound" in r for r in rows), rows
    b("shot", name=name + "-clients")

    # A port forward to lan1, reached from the server namespace.
    b("get", url=URL + "/forwards")
    page = b("fill", form="#add", fields={"port": "9095", "to": lan1_ip, "to_port": "7075"})
    assert "tcp port 9095 now leads to %s:7075" % lan1_ip in page["text"], page
    reach(topo, "first")
    # A bad one: the error beside its field, nothing added.
    page = b("fill", form="#add", fields={"port": "9096", "to": "10.1.2.3", "to_port": "80"})
    errors = b("find", css="#add label .err")["texts"]
    assert any("10.1.2.3 is not a host on the LAN" in e for e in errors), (errors, page)
    assert b("attr", css="#add input[name=to]", name="value")["values"] == ["10.1.2.3"]
    b("shot", name=name + "-forwards")
    page = b("fill", form="#add", fields={"port": "http", "to": lan1_ip, "to_port": ""})
    assert "a port number 1..65535" in " ".join(b("find", css="#add label .err")["texts"])
    assert "9096" not in b("get", url=URL + "/forwards")["text"]

    # Kept across a restart of the board.
    page = b("get", url=URL + "/config")
    page = b("click", css="form[action='/config/save'] button")
    assert "Saved to" in page["text"], page
    restart(topo)
    page = b("get", url=URL + "/forwards")
    assert page["url"].endswith("/login"), page   # the sessions were in the board's RAM
    page = b("fill", fields={"password": "wrong password"})
    assert "Wrong password" in page["text"]
    page = b("fill", fields={"password": PASSWORD})
    assert page["url"] == URL + "/", page
    page = b("get", url=URL + "/forwards")
    assert "9095" in page["text"] and "%s:7075" % lan1_ip in page["text"], page
    reach(topo, "again")


def restart(topo):
    """Stop and start the board; wait (20 s at most) until its page listens again."""
    said = topo.console.text().count("natrouter: web: http://")
    topo.stop_board()
    topo.start_board()
    deadline = time.monotonic() + 20
    while topo.console.text().count("natrouter: web: http://") <= said:
        assert time.monotonic() < deadline, topo.console.text()[-2000:]
        time.sleep(0.2)


def reach(topo, word):
    with background(topo.serve(topo.lan1, "tcp", 7075, "lan1")):
        reply = topo.talk(topo.srv, "tcp", WAN, 9095, [word])
    assert reply and reply[0].startswith("lan1 %s from %s:" % (word, SRV)), reply
