# Status for machines over MQTT, optional ("mqtt" in natrouter.json: manage/webconfig.py):
# micropython-lib's umqtt.simple in a thread of its own. Once connected it says
# "<topic>/availability" online (retained; the broker says offline for it when the
# connection is lost), publishes Home Assistant discovery messages (retained, under
# "<discovery>/sensor/<node>/<sensor>/config"; none when discovery is ""), then
# "<topic>/status" (JSON: status_message()) every interval_s. It follows the running
# configuration; a broker that is away is asked again, 5 s to 60 s apart.
import json

from compat import sleep_ms, ticks_diff, ticks_ms
from manage import api
from manage.runner import runner

BACKOFF_MS = (5000, 60000)

# Home Assistant sensors: id, name, the status message's field, unit, device class
SENSORS = (
    ("uptime", "Uptime", "uptime_s", "s", "duration"),
    ("flows_tcp", "TCP flows", "flows_tcp", None, None),
    ("flows_udp", "UDP flows", "flows_udp", None, None),
    ("flows_icmp", "ICMP flows", "flows_icmp", None, None),
    ("packets_in", "Packets in", "packets_in", "p/s", None),
    ("packets_out", "Packets out", "packets_out", "p/s", None),
    ("dhcp_bound", "DHCP leases", "dhcp_bound", None, None),
    ("errors", "Errors", "errors", None, None),
)

state = {"connects": 0, "published": 0, "errors": 0, "last_error": None, "connected": False,
         "running": False}


def status_message():
    """What "<topic>/status" carries: a flat JSON object of the router's state."""
    s = api.status()
    t = api.traffic()
    c = s["counters"]
    msg = {"uptime_s": s["uptime_s"], "running": s["running"], "lan": s["lan"]["addr"],
           "wan": s["wan"]["addr"], "errors": c["errors"], "last_error": s["last_error"],
           "translated_in": c["translated_in"], "translated_out": c["translated_out"],
           "dhcp_bound": s["dhcp"]["bound"] if "dhcp" in s else 0}
    for proto, (n, cap) in s["flows"].items():
        msg["flows_" + proto] = n
        msg["capacity_" + proto] = cap
    for key in ("packets_in", "packets_out", "bytes_in", "bytes_out"):
        series = t[key]
        msg[key] = series[-1] if series else 0
    return msg


def discovery(m):
    """[(topic, payload)]: one Home Assistant config per sensor (MQTT discovery)."""
    node = m["topic"].replace("/", "_")
    device = {"identifiers": [node], "name": node, "manufacturer": "natrouter",
              "model": getattr(runner.board, "NAME", "natrouter")}
    out = []
    for sid, name, field, unit, cls in SENSORS:
        cfg = {"name": name, "unique_id": "%s_%s" % (node, sid),
               "state_topic": m["topic"] + "/status",
               "value_template": "{{ value_json.%s }}" % field,
               "availability_topic": m["topic"] + "/availability", "device": device}
        if unit:
            cfg["unit_of_measurement"] = unit
        if cls:
            cfg["device_class"] = cls
        out.append(("%s/sensor/%s/%s/config" % (m["discovery"], node, sid), json.dumps(cfg)))
    return out


def wanted():
    """The running configuration's "mqtt" section when it is on, else None."""
    r = runner.router
    if r is None or not r.cfg["mqtt"]["enabled"]:
        return None
    return dict(r.cfg["mqtt"])


def _connect(m):
    from umqtt.simple import MQTTClient
    c = MQTTClient("natrouter-" + m["topic"].replace("/", "-"), m["host"], m["port"],
                   m["user"] or None, m["password"] or None, keepalive=3 * m["interval_s"])
    avail = (m["topic"] + "/availability").encode()
    c.set_last_will(avail, b"offline", retain=True)
    c.connect()
    c.sock.settimeout(10)  # a broker that stops reading must not hold this thread forever
    c.publish(avail, b"online", retain=True)
    if m["discovery"]:
        for topic, payload in discovery(m):
            c.publish(topic.encode(), payload.encode(), retain=True)
    state["connects"] += 1
    state["connected"] = True
    return c


def _close(client):
    state["connected"] = False
    if client is not None:
        try:
            client.sock.close()
        except Exception:
            pass


def run(board):
    """The publisher's thread (service.py starts it): until MQTT goes off."""
    try:
        _publish(wanted())
    finally:
        state["running"] = False


def _publish(m):
    client, used, backoff, last = None, m, BACKOFF_MS[0], None
    while True:
        m = wanted()
        if m != used:
            _close(client)
            client, used, last = None, m, None
        if m is None:
            return
        try:
            if client is None:
                client = _connect(m)
                backoff = BACKOFF_MS[0]
            if last is None or ticks_diff(ticks_ms(), last) >= 1000 * m["interval_s"]:
                last = ticks_ms()
                client.publish((m["topic"] + "/status").encode(),
                               json.dumps(status_message()).encode())
                state["published"] += 1
            sleep_ms(1000)
        except Exception as e:  # the broker is away, refused us, or the router restarted
            state["errors"] += 1
            state["last_error"] = repr(e)
            _close(client)
            client = None
            sleep_ms(backoff)
            backoff = min(backoff * 2, BACKOFF_MS[1])
