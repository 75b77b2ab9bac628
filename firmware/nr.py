# natrouter at the REPL:   import nr; nr.help()
# Thin printing over manage/api.py (plain data in and out, which a status page calls too):
# every function here prints and returns nothing, except where a value is the point.
from manage import api

HELP = """natrouter at the REPL
  nr.status()                            uptime, addresses, counters, flows in use
  nr.flows(proto=None, host=None, limit=20)   e.g. nr.flows("tcp", "192.168.4.2")
  nr.forwards()                          the port forwards
  nr.config()                            the configuration (being edited)
  nr.leases()                            DHCP on the LAN: offered, bound, declined
  nr.clients()                           LAN hosts: address, MAC, name, lease, flows
changes (validated first: a bad value changes nothing and says why)
  nr.set("ports.first", 20000)           a dotted key and its value
  nr.change({"lan.addr": "10.0.0.1", "dhcp.first": "10.0.0.100", "dhcp.last": "10.0.0.199"})
  nr.forward("tcp", 8080, "192.168.4.2", 80)   add a port forward
  nr.unforward("tcp", 8080)              remove one (its connections go with it)
  nr.forget("192.168.4.2")               remove a LAN host's connections
firewall (in force at once; flows the new rules refuse end now)
  nr.rules()                             the rules in order, with their hits
  nr.add_rule({"proto": "tcp", "lan": "192.168.4.23", "port": 80, "action": "reject"}, at=None)
  nr.remove_rule(0)   nr.move_rule(3, 0)   nr.set("firewall.default", "drop")
  nr.block("192.168.4.23")   nr.unblock("192.168.4.23")   no internet for a LAN host
packet capture (the router's view: as received and as sent; pcap)
  nr.capture(side="both", host=None, proto=None, port=None)   start (ring: "capture" in config)
  nr.capture_stop()   nr.capture_status()
  from the host: tools/capture.py --port PORT -w out.pcap, or nc <LAN address> 19000 | wireshark -k -i -
  nr.apply()                             restart forwarding with changed addresses,
                                         MTU or table sizes (they wait for it)
  nr.save()                              keep the configuration across reboots
  nr.reset()                             back to the defaults (the old file kept beside)
  nr.password("...")                     the page's admin password (http://<LAN address>/),
                                         kept hashed; saved at once
data for scripts: from manage import api  (the same, returning dicts and lists)"""


def help():
    print(HELP)


def status():
    s = api.status()
    print("natrouter %s, up %s" % ("running" if s["running"] else "STOPPED", _duration(s["uptime_s"])))
    lan, wan = s["lan"], s["wan"]
    print("  LAN %s/%s mtu %d   WAN %s/%s via %s mtu %d" % (
        lan["addr"], lan["mask"], lan["mtu"], wan["addr"], wan["mask"], wan["gateway"],
        wan["mtu"]))
    print("  flows " + "  ".join("%s %d/%d" % (p, n, cap) for p, (n, cap) in sorted(s["flows"].items())))
    c = s["counters"]
    print("  packets: in %d out %d (received LAN %d WAN %d)" % (
        c["translated_in"], c["translated_out"], c["rx_lan"], c["rx_wan"]))
    dropped = ["%s %d" % (k[8:], v) for k, v in sorted(c.items()) if k.startswith("dropped_") and v]
    print("  dropped: " + (", ".join(dropped) or "none"))
    other = ["%s %d" % (k, v) for k, v in sorted(c.items())
             if v and not k.startswith(("dropped_", "translated_", "rx_"))]
    if other:
        print("  " + ", ".join(other))
    if "dhcp" in s:
        d = s["dhcp"]
        print("  dhcp: %d bound, %d offered, %d declined (table %d); %d acks, %d offers" % (
            d["bound"], d["offered"], d["declined"], d["table"], d["acks"], d["offers"]))
    m = s["memory"]
    line = "  memory: heap %s free, %s used" % (m["heap_free"], m["heap_used"])
    if "idf_free" in m:
        line += "; ESP-IDF %d free, largest block %d, lowest %d (reserve %d)" % (
            m["idf_free"], m["idf_largest"], m["idf_min_free"], m["idf_reserve"])
    print(line)
    if s["pending"]:
        print("  changed, waiting for nr.apply(): " + ", ".join(s["pending"]))
    if s["last_error"]:
        print("  last error: " + s["last_error"])


def flows(proto=None, host=None, limit=20):
    rows = api.flows(proto, host, limit)
    if not rows:
        print("no flows")
        return
    width = max(len(r["inside"]) for r in rows)
    print("%-4s %-*s  %-21s  %-21s  %s" % ("", width, "inside", "remote", "leaves as", "idle"))
    for r in rows:
        print("%-4s %-*s  %-21s  %-21s  %s" % (r["proto"], width, r["inside"], r["remote"],
                                                r["public"], _duration(r["idle_s"])))


def forwards():
    rows = api.forwards()
    if not rows:
        print("no port forwards")
    for f in rows:
        print("%s %d -> %s:%d" % (f["proto"], f["port"], f["to"], f["to_port"]))


def config():
    import json
    print(json.dumps(api.configuration()))


def leases():
    rows = api.leases()
    if not rows:
        print("no leases")
        return
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(", ".join("%d %s" % (n, state) for state, n in sorted(counts.items())))
    for r in rows:
        left = "" if r["static"] and r["state"] == "reserved" else " %s left" % _duration(
            r["remaining"])
        print("%-17s %-15s %s%s%s" % (r["mac"], r["addr"], r["state"], left,
                                      " (static)" if r["static"] else ""))


def clients():
    rows = api.clients()
    if not rows:
        print("no clients")
    for r in rows:
        lease = r["lease"] or "-"
        if r["remaining"] is not None and r["lease"] in ("offered", "bound"):
            lease += " %s left" % _duration(r["remaining"])
        print("%-15s %-17s %-20s %-16s %d flows" % (r["addr"] or "?", r["mac"] or "?",
                                                    r["hostname"] or "-", lease, r["flows"]))


def password(text):
    api.set_password(text)
    print("the page's password is set (saved)")


def set(key, value):
    _said(api.set(key, value))


def change(changes):
    _said(api.change(changes))


def forward(proto, port, to, to_port=None):
    _said(api.add_forward(proto, port, to, to_port))


def unforward(proto, port):
    _said(api.remove_forward(proto, port))


def forget(host):
    gone = api.remove_connections(host)
    print("removed %d tcp, %d udp, %d icmp" % (gone["tcp"], gone["udp"], gone["icmp"]))


def rules():
    fw = api.rules()
    for i, r in enumerate(fw["rules"]):
        port = r["port"]
        port = "%d-%d" % tuple(port) if isinstance(port, list) else port
        print("%2d %-6s %-3s %-4s lan %-18s remote %-18s port %-11s %6d hits" % (
            i, r["action"], r["dir"], r["proto"], r["lan"], r["remote"], port, r["hits"]))
    for b in fw["blocked"]:
        print("   blocked %-15s (no internet)  %6d hits" % (b["host"], b["hits"]))
    print("   default %-6s %6d hits" % (fw["default"], fw["default_hits"]))


def add_rule(rule, at=None):
    _said(api.add_rule(rule, at))


def remove_rule(index):
    _said(api.remove_rule(index))


def move_rule(index, to):
    _said(api.move_rule(index, to))


def block(host):
    _said(api.block(host))


def unblock(host):
    _said(api.unblock(host))


def capture(side="both", host=None, proto=None, port=None):
    from manage import capture_api  # loaded when first asked: its heap only then
    _captured(capture_api.capture_start(side, host, proto, port))


def capture_stop():
    from manage import capture_api
    _captured(capture_api.capture_stop())


def capture_status():
    from manage import capture_api
    _captured(capture_api.capture_status())


def _captured(s):
    print("capture %s: %d packets, %d lost (ring full), %d of %d bytes held, snap %d" % (
        "on" if s["on"] else "off", s["packets"], s["lost"], s["held"], s["size"], s["snap"]))


def apply():
    print("restarted" if api.apply()["restarted"] else "nothing to apply")


def save():
    r = api.save()
    print("saved to %s%s" % (r["saved"], " (not yet in force: nr.apply())" if r["pending"] else ""))


def reset():
    r = api.reset()
    print("%s holds the defaults%s; restarted with them" % (
        r["saved"], " (the old configuration kept as %s)" % r["kept"] if r["kept"] else ""))


def _said(result):
    if result["pending"]:
        print("changed %s; nr.apply() puts it in force, nr.save() keeps it"
              % ", ".join(result["pending"]))
    else:
        print("in force: %s; nr.save() keeps it" % (", ".join(result["applied"]) or "no change"))


def _duration(s):
    if s < 120:
        return "%ds" % s
    if s < 7200:
        return "%dm" % (s // 60)
    if s < 172800:
        return "%dh" % (s // 3600)
    return "%dd" % (s // 86400)
