# The router's management, plain data in and out: the REPL (nr.py) calls these, and a
# status page will (from manage import api). Everything that touches the running
# router's state runs on the router's own thread (Router.call), so the forwarding loop
# and the REPL never see each other half-way. Slow path: allocates freely.
#
# Changes are validated whole before anything changes (config.validate, strict): a bad
# key, type, address, port or an overlapping forward raises ValueError with one sentence
# naming it. What can change while forwarding (port forwards, the port range, source
# routing, DHCP and DNS) takes effect at once; addresses, MTU and table sizes wait for
# apply(), which restarts forwarding with them (flows are lost). save() keeps the
# configuration on the board's flash; until then a reboot forgets the changes.
import nat
from . import config, memory
from .runner import runner

# The configuration being edited, in the file's form (config.to_file); None: the
# running router's.
_edited = None
_RESTART_KEYS = ("lan", "wan", "mtu", "table")


def _router():
    r = runner.router
    if r is None:
        raise OSError("the router is not running (runner.start(board))")
    return r


def _current():
    return _edited if _edited is not None else config.to_file(_router().cfg)


# ---- looking

def status():
    """Uptime, addresses, counters, table occupancy, DHCP and links, as one dict."""
    r = _router()
    return _off_thread(r.call(_status, r))


def _off_thread(out):
    """What status() adds on the caller's thread, not the router's: the board's per-link
    counters (on the lwIP host board a round trip to another process, which the router's
    loop must not wait for) and the keys waiting for apply."""
    out["pending"] = pending()
    links = getattr(runner.board, "counters", None)
    if links is not None:
        out["links"] = links()
    return out


def _status(r):
    cfg = r.cfg
    out = {
        "running": r.is_running(),
        "uptime_s": r.uptime(),
        "lan": {"addr": cfg["lan"]["addr"], "mask": cfg["lan"]["mask"], "mtu": r.lan.mtu},
        "wan": {"addr": cfg["wan"]["addr"], "mask": cfg["wan"]["mask"],
                "gateway": cfg["wan"]["gateway"], "mtu": r.wan.mtu},
        "counters": {},
        "flows": {},
        "last_error": r.last_error,
    }
    counters = r.counters()
    for proto, name in nat.PROTOCOLS:
        out["flows"][name] = (r.table.count(proto), r.table.capacity(proto))
        del counters["flows_" + name], counters["capacity_" + name]
    out["counters"] = counters
    if r.dhcp is not None:
        leases = r.dhcp.leases()
        out["dhcp"] = dict(r.dhcp.counters(), leases=len(leases), table=r.dhcp.pool.cap)
        for state in ("offered", "bound", "declined"):
            out["dhcp"][state] = len([x for x in leases if x["state"] == state])
    out["memory"] = memory.report(runner.board)
    return out


def flows(proto=None, host=None, limit=20):
    """Up to `limit` flows, most recently used first: dicts of proto, inside (ip:port of
    the LAN side), remote (the outside end as the inside host sees it), public (how it
    leaves the router), final (where it goes), idle_s. proto: "tcp", "udp", "icmp" or
    None; host: only flows with this address at either end."""
    number = None if proto is None else nat.proto_number(proto)
    want = nat.ip(host) if host is not None else None
    if not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer, not %r" % (limit,))
    r = _router()
    return r.call(_flows, r, number, want, limit)


def _flows(r, proto, host, limit):
    rows = []
    for (p, src, sport, dst, dport, xl_host, xl_port, final, final_port,
         idle) in r.table.flows():
        if proto is not None and p != proto:
            continue
        if host is not None and host not in (src, dst, final):
            continue
        rows.append({"proto": nat.proto_name(p), "inside": "%s:%d" % (nat.ip_str(src), sport),
                     "remote": "%s:%d" % (nat.ip_str(dst), dport),
                     "public": "%s:%d" % (nat.ip_str(xl_host), xl_port),
                     "final": "%s:%d" % (nat.ip_str(final), final_port), "idle_s": idle})
        if len(rows) == limit:
            break
    return rows


def forwards():
    """The port forwards in force: [{"proto", "port", "to", "to_port"}]."""
    return config.to_file(_router().cfg)["forwards"]


def configuration():
    """The configuration being edited (the running one when nothing is pending)."""
    return _copy(_current())


def pending():
    """The keys changed but waiting for apply(), or []."""
    if _edited is None:
        return []
    running = config.to_file(_router().cfg)
    return [k for k in _edited if running[k] != _edited[k]]


def traffic():
    """Packets and bytes per second forwarded in (WAN -> LAN) and out over the last
    minutes, oldest first, from the ring the router fills once a second:
    {"seconds", "packets_in", "packets_out", "bytes_in", "bytes_out"} (the bytes None
    where the board's WAN link does not count them)."""
    r = _router()
    return r.call(r.rates)


def overview():
    """status() and traffic() from one visit to the router's thread (the status page)."""
    r = _router()
    s, rates = r.call(lambda: (_status(r), r.rates()))
    return _off_thread(s), rates


def clients():
    """Every LAN host the router knows of, from the DHCP leases, the board's neighbours
    (its ARP cache, the access point's stations: board.lan_hosts(), optional) and the
    host names clients send (DHCP option 12): [{"addr", "mac", "hostname", "lease"
    (state or None), "remaining" (s), "static", "flows"}], by address."""
    r = _router()
    rows, flows = r.call(_leases_and_flows, r)
    from services import hostnames
    names = hostnames.names()
    known = getattr(runner.board, "lan_hosts", None)
    for addr, mac in known() if known is not None else ():
        row = _client(rows, addr, mac)
        if row["addr"] is None:
            row["addr"] = addr
    for row in rows:
        row["hostname"] = names.get(row["mac"]) if row["mac"] else None
        row["flows"] = flows.get(row["addr"], 0)
    return sorted(rows, key=lambda x: nat.ip(x["addr"]) if x["addr"] else 1 << 32)


def _leases_and_flows(r):
    """On the router's thread: the lease table as client rows, and the flows in use by
    LAN address (the inside end, or the host a port forward leads to)."""
    rows = []
    for x in (r.dhcp.leases() if r.dhcp is not None else ()):
        if x["state"] in ("offered", "bound") or x["static"]:
            rows.append({"addr": x["addr"], "mac": x["mac"], "lease": x["state"],
                         "remaining": x["remaining"], "static": x["static"]})
    lan, mask = r.cfg["lan"]["addr_int"], r.cfg["lan"]["mask_int"]
    counts = {}
    for flow in r.table.flows():
        for a in (flow[1], flow[7]):   # the inside end; where a port forward leads
            if a & mask == lan & mask:
                counts[a] = counts.get(a, 0) + 1
                break
    return rows, {nat.ip_str(a): n for a, n in counts.items()}


def _client(rows, addr, mac):
    """The row of this MAC (or, without one, this address), made if there is none."""
    for row in rows:
        if (mac is not None and row["mac"] == mac) or (mac is None and row["addr"] == addr):
            return row
    row = {"addr": addr, "mac": mac, "lease": None, "remaining": None, "static": False}
    rows.append(row)
    return row


def leases():
    """The DHCP server's table as a person wants to see it: offered, bound and declined
    addresses, then the static leases: [{"mac", "addr", "state", "remaining" (s),
    "static"}], or []."""
    r = _router()
    return r.call(lambda: r.dhcp.leases() if r.dhcp is not None else [])


# ---- changing

def set(key, value):
    """Set one value: key is dotted ("wan.addr", "ports.first", "dhcp.static", "mtu").
    Returns {"applied": [keys in force now], "pending": [keys waiting for apply()]}."""
    return change({key: value})


def change(changes):
    """Several values at once, validated together ({"lan.addr": ..., "dhcp.first": ...}):
    what must agree (the LAN and its DHCP pool) changes in one step."""
    if not isinstance(changes, dict) or not changes:
        raise ValueError("changes must be a dict of \"dotted.key\": value")
    edited = _copy(_current())
    for key, value in changes.items():
        _put(edited, key, value)
    return _take(edited)


def add_forward(proto, port, to, to_port=None):
    """Forward WAN proto ("tcp"/"udp") port to the LAN host `to` (port to_port, else the
    same). An overlapping forward is refused."""
    edited = _copy(_current())
    fw = {"proto": proto, "port": port, "to": to, "to_port": port if to_port is None else to_port}
    edited["forwards"].append(fw)
    return _take(edited)


def remove_forward(proto, port):
    """Stop forwarding WAN proto port; its connections go with it."""
    edited = _copy(_current())
    kept = [f for f in edited["forwards"] if (f["proto"], f["port"]) != (proto, port)]
    if len(kept) == len(edited["forwards"]):
        raise ValueError("no %s forward of port %r" % (proto, port))
    edited["forwards"] = kept
    return _take(edited)


def remove_connections(host):
    """Forget every flow of a LAN host: those it opened and the port-forward flows that
    lead to it. Returns {"tcp": n, "udp": n, "icmp": n}."""
    ip = nat.ip(host)
    r = _router()
    return r.call(_forget, r, ip)


def _forget(r, ip):
    ports = r.table.remove_connections(ip)
    return {"tcp": len(ports.tcp) + r.table.remove_redirects(nat.TCP, final=ip),
            "udp": len(ports.udp) + r.table.remove_redirects(nat.UDP, final=ip),
            "icmp": len(ports.icmp)}


# ---- the firewall (filter/): rules in force at once, no apply(); the flows the new
# rules would not have let open end at once (SlowPath.reconfigure)

def rules():
    """The firewall in force: {"default", "default_hits", "rules": [each rule's keys and
    "hits"], "blocked": [{"host", "hits"}]}. A hit: a packet that would have opened a
    flow and met the rule (a TCP SYN sent again is another)."""
    r = _router()
    sec, hits = r.call(lambda: (r.cfg["firewall"], r.slow.firewall.hits()))
    return {"default": sec["default"], "default_hits": hits["default"],
            "rules": [dict(rule, hits=n) for rule, n in zip(sec["rules"], hits["rules"])],
            "blocked": [{"host": h, "hits": n} for h, n in zip(sec["blocked"], hits["blocked"])]}


def add_rule(rule, at=None):
    """Add a rule ({"dir", "proto", "lan", "remote", "port", "action"}: README) at
    position `at` (None: last). Rules are tried in order; the first match decides."""
    return _firewall(lambda fw: fw["rules"].insert(_position(at, fw, 1), rule))


def remove_rule(index):
    """Remove the rule at `index` (0 first)."""
    return _firewall(lambda fw: fw["rules"].pop(_position(index, fw)))


def move_rule(index, to):
    """Move the rule at `index` to position `to`; its hit count goes with it."""
    return _firewall(lambda fw: fw["rules"].insert(_position(to, fw), fw["rules"].pop(
        _position(index, fw))))


def block(host):
    """No internet for the LAN host: every flow it opens, and every port forward to it,
    is rejected, and its flows end now."""
    return _firewall(lambda fw: fw["blocked"].append(host))


def unblock(host):
    return _firewall(lambda fw: fw["blocked"].remove(host) if host in fw["blocked"] else
                     _no("%r is not blocked" % (host,)))


def _firewall(edit):
    edited = _copy(_current())
    edit(edited["firewall"])
    return _take(edited)


def _position(i, fw, extra=0):
    """i checked as a rule's index (extra=1: also the place after the last)."""
    n = len(fw["rules"]) + extra
    if i is None and extra:
        return n - 1
    if type(i) is not int or not 0 <= i < n:
        raise ValueError("firewall.rules: index %r must be 0..%d" % (i, n - 1))
    return i


def _no(message):
    raise ValueError(message)


def apply():
    """Restart forwarding with the edited configuration (addresses, MTU, table sizes):
    the links reopen, the flow table starts empty."""
    global _edited
    if _edited is None:
        return {"restarted": False, "pending": []}
    cfg = config.validate(_edited, strict=True)[0]
    r = _router()
    memory.check_tables(cfg, r.cfg, runner.board, r.table)  # refused here, not half-way
    runner.restart(cfg)
    _edited = None
    return {"restarted": True, "pending": []}


def save(path=None):
    """Write the edited configuration to the board's flash (atomically), and the DHCP
    leases if they changed since they were last written. Returns the path."""
    path = path or runner.config_path
    config.save(path, _current())
    r = _router()
    if r.dhcp is not None:
        r.call(r.dhcp.flush)
    return {"saved": path, "pending": pending()}


def set_password(text):
    """Set the admin password of the page on the LAN (kept salted and hashed, never in
    clear: manage/webconfig.py): in force at once and written to the board's flash at
    once, alone (other changes still wait for save()). ValueError when it is too short
    or too long."""
    from . import store, webconfig
    stored = {"password": webconfig.hash_password(text)}
    r = _router()
    running = config.to_file(r.cfg)
    running["admin"] = stored
    cfg = config.validate(running, strict=True)[0]
    r.call(r.reconfigure, cfg)
    runner.reconfigured(cfg)
    if _edited is not None:
        _edited["admin"] = dict(stored)
    path = runner.config_path
    raw = store.load_json(path)[0]
    try:
        if not isinstance(raw, dict):
            raise ValueError("no configuration file yet")
        raw["admin"] = stored
        config.save(path, raw)
    except ValueError:  # none yet, or one load() repairs: the running one, whole
        config.save(path, running)
    return {"saved": path}


def password_set():
    """Whether the page has an admin password yet (a fresh board serves only the page
    that sets one)."""
    return _router().cfg["admin"]["password"] != ""


def reset():
    """Back to the defaults: natrouter.json rewritten with them (the configuration it
    held kept beside it, config.reset), changes not yet applied dropped, and the router
    restarted with the defaults. Returns {"saved": path, "kept": the copy or None}."""
    global _edited
    path = runner.config_path
    kept = config.reset(path)
    _edited = None
    runner.restart(config.load(path)[0])
    return {"saved": path, "kept": kept}


# ---- helpers

def _take(edited):
    """Validate the whole edited configuration, then put it in force if nothing in it
    needs a restart; else it waits for apply()."""
    global _edited
    cfg = config.validate(edited, strict=True)[0]
    r = _router()
    new, running = config.to_file(cfg), config.to_file(r.cfg)
    changed = [k for k in new if new[k] != running[k]]
    if any(k in _RESTART_KEYS for k in changed):
        _edited = new
        return {"applied": [], "pending": changed}
    r.call(_reconfigure, r, cfg, "dhcp" in changed or "dns" in changed)
    runner.reconfigured(cfg)  # the board follows: natlink claims a new forward's port
    _edited = None
    return {"applied": changed, "pending": []}


def _reconfigure(r, cfg, new_dhcp):
    """On the router's thread: a new DHCP server reads the leases the old one wrote."""
    dhcp = r.dhcp
    if new_dhcp:
        if dhcp is not None:
            dhcp.flush()
        dhcp = runner.make_dhcp(cfg)
    r.reconfigure(cfg, dhcp)


def _put(cfg, key, value):
    if not isinstance(key, str) or not key:
        raise ValueError("a key is a dotted string like \"wan.addr\", not %r" % (key,))
    node = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            try:
                part = int(part)
                node[part]
            except (ValueError, IndexError):
                raise ValueError("%s: no item %r" % (".".join(parts[:i]), part))
        elif not isinstance(node, dict) or (part not in node and not last):
            raise ValueError("%s: unknown key" % ".".join(parts[:i + 1]))
        # (a new last key, such as an optional "wan.mtu": validation decides)
        if last:
            node[part] = value
        else:
            node = node[part]


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
