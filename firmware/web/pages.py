# The page's HTML, from the plain data manage.api returns: no framework, no script, one
# small style sheet (STYLE, served as /style.css). Every value that comes from outside
# (host names from DHCP, addresses, the configuration) is escaped. Each function returns
# one page as a string; app.py serves them. Written piece by piece into one io.StringIO
# (no page-sized intermediate strings, no generator per row): what a page costs the heap
# is its text and small pieces (test_web_esp32.py measures it on 32 bits).
import io

from . import plot

NAV = (("/", "Status"), ("/clients", "Clients"), ("/flows", "Flows"),
       ("/forwards", "Port forwards"), ("/config", "Configuration"), ("/api", "JSON API"))

STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#1d3557;color:#fff;padding:.6em 1.2em;display:flex;flex-wrap:wrap;
align-items:center;gap:1em}header b{font-size:1.15em;margin-right:1em}header a{color:#dfe9f5;
text-decoration:none}header a.on{color:#fff;border-bottom:2px solid #f1a208}
header form{margin-left:auto}main{max-width:62em;margin:0 auto;padding:1em 1.2em}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:.8em 1em;
margin:0 0 1em}h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.05em;margin:.1em 0 .5em}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25em .5em;
border-bottom:1px solid #eef1f4;vertical-align:top}th{color:#5a6978;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#6b7885}
.bad{color:#b00020}.ok{color:#1b7f3b}.err{color:#b00020;font-size:.9em;display:block;
max-width:18em}
.bar{background:#e6ebf0;border-radius:3px;height:.6em;width:10em;display:inline-block}
.bar i{display:block;height:100%;background:#2a9d8f;border-radius:3px}
input,select,button{font:inherit;padding:.25em .4em}button{cursor:pointer}
form.row{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}
form.row label{display:flex;flex-direction:column;font-size:.9em}
svg polyline{fill:none;stroke-width:1.5}.in{stroke:#2a9d8f;color:#2a9d8f}
.out{stroke:#e76f51;color:#e76f51}svg .axis{stroke:#ccd4dc}figure{margin:.4em 0}
.legend{margin:.2em 0;font-size:.9em}.grid{display:grid;
grid-template-columns:repeat(auto-fit,minmax(17em,1fr));gap:1em}"""


def esc(v):
    s = "" if v is None else str(v)
    for c in "&<>\"'":
        if c in s:
            break
    else:
        return s  # most values: nothing to escape, no copy
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        s = s.replace(a, b)
    return s


def duration(s):
    if s is None:
        return "-"
    if s < 120:
        return "%d s" % s
    if s < 7200:
        return "%d min" % (s // 60)
    if s < 172800:
        return "%d h" % (s // 3600)
    return "%d days" % (s // 86400)


def begin(title, csrf=None, here=None, refresh=None):
    """A page's stream, its head and bar written: the navigation and a logout button when
    csrf (the session's token) is given. end(o) gives the page."""
    o = io.StringIO()
    w = o.write
    w('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
      'content="width=device-width,initial-scale=1"><title>')
    w(esc(title))
    w(' - natrouter</title><link rel="stylesheet" href="/style.css">')
    if refresh:
        w('<meta http-equiv="refresh" content="%d">' % refresh)
    w("</head><body><header><b>natrouter</b>")
    if csrf is not None:
        for href, name in NAV:
            w('<a href="%s"%s>%s</a>' % (href, ' class="on"' if href == here else "", name))
        w('<form method="post" action="/logout">')
        hidden(o, csrf)
        w("<button>Log out</button></form>")
    w("</header><main>")
    return o


def end(o):
    o.write("</main></body></html>")
    return o.getvalue()


def hidden(o, csrf):
    o.write('<input type="hidden" name="csrf" value="')
    o.write(esc(csrf))
    o.write('">')


def table(o, heads, rows, numeric=()):
    """rows: sequences of cells, HTML already (escape what comes from outside)."""
    w = o.write
    w("<table><tr>")
    for h in heads:
        w("<th>")
        w(h)
        w("</th>")
    w("</tr>")
    for row in rows:
        w("<tr>")
        for i in range(len(row)):
            w('<td class="n">' if i in numeric else "<td>")
            w(str(row[i]))
            w("</td>")
        w("</tr>")
    w("</table>")


def field_error(o, errors, name):
    e = errors.get(name) if errors else None
    if e:
        o.write('<span class="err">')
        o.write(esc(e))
        o.write("</span>")


def _titled(title, csrf, here, done):
    """begin(), then the page's title and what was just done (a change's outcome)."""
    o = begin(title, csrf, here)
    o.write("<h1>%s</h1>" % title)
    said(o, done)
    return o, o.write


def said(o, text):
    if text:
        o.write('<section><p class="ok" id="said">')
        o.write(esc(text))
        o.write("</p></section>")


# ---- logging in

def password_form(title, intro, action, csrf, error=None, repeat=False):
    o = begin(title)
    w = o.write
    w('<section><h1>%s</h1><p>%s</p><form method="post" action="%s" class="row">'
      % (title, intro, action))
    hidden(o, csrf)
    w('<label>Password<input type="password" name="password" autofocus autocomplete="%s" '
      'required></label>' % ("new-password" if repeat else "current-password"))
    if repeat:
        w('<label>Again<input type="password" name="again" required></label>')
    w("<button>%s</button></form>" % ("Set the password" if repeat else "Log in"))
    if error:
        w('<p class="bad" id="error">%s</p>' % esc(error))
    w("</section>")
    return end(o)


# ---- status

# Each counter with what it counts, in groups; anything else goes under "Other".
COUNTERS = (
    ("Forwarded", (("translated_out", "LAN to WAN, sent"), ("translated_in", "WAN to LAN, sent"),
                   ("hairpinned", "LAN to the WAN address and back to the LAN"),
                   ("fragmented", "sent in fragments (longer than the link, DF clear)"))),
    ("Received", (("rx_lan", "on the LAN link"), ("rx_wan", "on the WAN link"))),
    ("New flows", (("flows_added", "outbound and port-forward flows made"),
                   ("forwards_hit", "made by a port forward"),
                   ("filtered_in", "inbound to a mapping the NAT's filtering admits"))),
    ("The router's own answers", (
        ("echo_replies", "pings of the router's addresses answered"),
        ("ttl_exceeded_sent", "ICMP Time Exceeded sent"),
        ("frag_needed_sent", "ICMP Fragmentation Needed sent"),
        ("ttl_exceeded_rate_limited", "Time Exceeded not sent: over the rate limit"),
        ("ttl_exceeded_silent", "Time Exceeded not sent: about an error, fragment, broadcast"))),
    ("Dropped", (
        ("dropped_malformed", "failed the header checks"),
        ("dropped_to_router", "to the router's addresses, nothing to answer"),
        ("dropped_lan_local", "LAN traffic to the LAN, broadcast or multicast"),
        ("dropped_bad_source", "source on the wrong side"),
        ("dropped_martian", "impossible sources"),
        ("dropped_source_route", "source-routed"),
        ("dropped_port_zero", "to or from port 0"),
        ("dropped_icmp_error", "ICMP errors about no flow"),
        ("dropped_unsolicited", "from the WAN, no flow and no port forward"),
        ("dropped_filtered", "inbound, refused by the NAT's filtering"),
        ("dropped_cannot_nat", "a protocol the NAT does not translate"),
        ("dropped_overlap", "no free outside port"),
        ("dropped_table_full", "no room for a new flow"),
        ("dropped_too_big", "longer than the link out, DF set"))),
    ("Errors", (("errors", "exceptions the loop survived (the last below)"),)),
)


def status(s, rates, csrf):
    lan, wan = s["lan"], s["wan"]
    o = begin("Status", csrf, "/", refresh=10)
    w = o.write
    w('<h1>Status <span class="muted">%s, up %s</span></h1><div class="grid">' % (
        '<span class="ok">forwarding</span>' if s["running"] else
        '<span class="bad">stopped</span>', duration(s["uptime_s"])))
    w("<section><h2>Addresses</h2>")
    table(o, ("", "address", "MTU"), (
        ("LAN", "%s/%s" % (esc(lan["addr"]), esc(lan["mask"])), lan["mtu"]),
        ("WAN", "%s/%s via %s" % (esc(wan["addr"]), esc(wan["mask"]), esc(wan["gateway"])),
         wan["mtu"])))
    w("</section><section><h2>Flows in use</h2><table>")
    for proto in sorted(s["flows"]):
        n, cap = s["flows"][proto]
        w('<tr><td>%s</td><td><span class="bar"><i style="width:%d%%"></i></span></td>'
          '<td>%d of %d</td></tr>' % (proto, 100 * n // max(cap, 1), n, cap))
    w('</table></section></div><section id="traffic"><h2>Traffic</h2>')
    plot.svg(o, "Packets per second", "packets/s",
             (("in", rates["packets_in"], "in"), ("out", rates["packets_out"], "out")),
             rates["seconds"])
    if rates["bytes_in"] is not None:
        plot.svg(o, "Bytes per second", "bytes/s",
                 (("in", rates["bytes_in"], "in"), ("out", rates["bytes_out"], "out")),
                 rates["seconds"])
    else:
        w('<p class="muted">This board\'s links do not count bytes.</p>')
    w('</section><div class="grid">')
    _links(o, s.get("links"))
    _dhcp(o, s.get("dhcp"))
    w("</div>")
    _counters(o, s["counters"])
    if s["pending"]:
        w('<section><h2>Waiting for apply</h2><p>%s: <a href="/config">apply them</a> to put '
          'them in force.</p></section>' % esc(", ".join(s["pending"])))
    w('<section><h2>Last error</h2><p id="last-error">')
    w(esc(s["last_error"]) if s["last_error"] else '<span class="muted">none</span>')
    w("</p></section>")
    return end(o)


def _links(o, links):
    for name in sorted(links or ()):
        d = links[name]
        state = d.get("up")
        o.write("<section><h2>%s link %s</h2><table>" % (
            name.upper(), "" if state is None else '<span class="%s">%s</span>' % (
                ("ok", "up") if state else ("bad", "down"))))
        for k in sorted(d):
            v = d[k]
            if k != "up" and not isinstance(v, (dict, list, tuple)):
                o.write('<tr><td>%s</td><td class="n">%s</td></tr>' % (esc(k), esc(v)))
        o.write("</table></section>")


def _dhcp(o, d):
    if not d:
        return
    o.write("<section><h2>DHCP on the LAN</h2>")
    table(o, ("", ""), (("bound", d["bound"]), ("offered", d["offered"]),
                        ("declined", d["declined"]), ("table", d["table"]),
                        ("acknowledged", d["acks"])), (1,))
    o.write("</section>")


def _counters(o, c):
    w = o.write
    w('<h2>Counters</h2><div class="grid">')
    shown = set()
    for group, names in COUNTERS:
        w("<section><h2>%s</h2><table>" % group)
        for key, meaning in names:
            if key in c:
                shown.add(key)
                w('<tr><td>%s</td><td class="muted">%s</td><td class="n">%d</td></tr>'
                  % (meaning, key, c[key]))
        w("</table></section>")
    other = [k for k in sorted(c) if k not in shown]
    if other:
        w("<section><h2>Other</h2><table>")
        for k in other:
            w('<tr><td>%s</td><td class="n">%s</td></tr>' % (esc(k), esc(c[k])))
        w("</table></section>")
    w("</div>")


# ---- clients and flows

def clients(rows, csrf):
    o = begin("Clients", csrf, "/clients")
    w = o.write
    w('<h1>Clients <span class="muted">%d on the LAN</span></h1><section id="clients"><table>'
      '<tr><th>name</th><th>address</th><th>MAC</th><th>lease</th><th>flows</th></tr>'
      % len(rows))
    for r in rows:
        w("<tr><td>%s</td><td>%s</td><td>%s</td><td>" % (
            esc(r["hostname"] or "-"), esc(r["addr"] or "?"), esc(r["mac"] or "?")))
        if r["lease"] is None:
            w('<span class="muted">no lease (seen on the link)</span>')
        else:
            w(esc(r["lease"]) + (" (static)" if r["static"] else ""))
            if r["lease"] in ("offered", "bound") and r["remaining"] is not None:
                w(", %s left" % duration(r["remaining"]))
        w('</td><td class="n">%d</td></tr>' % r["flows"])
    w("</table></section>")
    return end(o)


def flows(rows, query, csrf):
    o = begin("Flows", csrf, "/flows")
    w = o.write
    w('<h1>Flows <span class="muted">%d shown, most recently used first</span></h1><section>'
      '<form class="row" method="get" action="/flows"><label>Protocol<select name="proto">'
      % len(rows))
    for p in ("", "tcp", "udp", "icmp"):
        w('<option%s>%s</option>' % (" selected" if query.get("proto") == p else "", p))
    w('</select></label><label>Host<input name="host" value="%s" size="15"></label><label>'
      'At most<input name="limit" value="%s" size="4"></label><button>Show</button>' % (
          esc(query.get("host", "")), esc(query.get("limit", "50"))))
    field_error(o, query, "error")
    w("</form></section><section><table><tr><th></th><th>inside</th><th>remote</th>"
      "<th>leaves as</th><th>to</th><th>idle</th></tr>")
    for r in rows:
        w("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            r["proto"], r["inside"], r["remote"], r["public"], r["final"],
            duration(r["idle_s"])))
    w("</table></section>")
    return end(o)


# ---- port forwards

def forwards(rows, csrf, errors=None, form=None, done=None):
    form = form or {}
    o, w = _titled("Port forwards", csrf, "/forwards", done)
    w("<section>")
    if not rows:
        w('<p class="muted">none</p>')
    else:
        w("<table><tr><th>protocol</th><th>WAN port</th><th>to</th><th></th></tr>")
        for f in rows:
            w('<tr><td>%s</td><td>%d</td><td>%s:%d</td><td><form method="post" '
              'action="/forwards/remove">' % (f["proto"], f["port"], esc(f["to"]), f["to_port"]))
            hidden(o, csrf)
            w('<input type="hidden" name="proto" value="%s"><input type="hidden" name="port" '
              'value="%d"><button>Remove</button></form></td></tr>' % (f["proto"], f["port"]))
        w("</table>")
    w('</section><section><h2>Add one</h2><form class="row" method="post" '
      'action="/forwards/add" id="add">')
    hidden(o, csrf)
    w('<label>Protocol<select name="proto">')
    for p in ("tcp", "udp"):
        w('<option%s>%s</option>' % (" selected" if p == form.get("proto", "tcp") else "", p))
    w("</select>")
    field_error(o, errors, "proto")
    w("</label>")
    for name, label, size in (("port", "WAN port", 6), ("to", "LAN host", 15),
                              ("to_port", "its port", 6)):
        w('<label>%s<input name="%s" value="%s" size="%d">' % (
            label, name, esc(form.get(name, "")), size))
        field_error(o, errors, name)
        w("</label>")
    w("<button>Add</button></form>")
    field_error(o, errors, "form")
    w("</section>")
    return end(o)


# ---- configuration

def configuration(items, pending, csrf, errors=None, form=None, done=None):
    """items: [(dotted key, value as JSON text)]; pending: the sections waiting for apply."""
    form = form or {}
    o, w = _titled("Configuration", csrf, "/config", done)
    w('<section><h2>Change a value</h2><form class="row" method="post" action="/config/set">')
    hidden(o, csrf)
    w('<label>Key<input name="key" value="%s" size="22" list="keys">' % esc(form.get("key", "")))
    field_error(o, errors, "key")
    w('</label><label>Value (JSON)<input name="value" value="%s" size="30">'
      % esc(form.get("value", "")))
    field_error(o, errors, "value")
    w('</label><button>Change</button></form><datalist id="keys">')
    for k, _ in items:
        w('<option value="%s">' % k)
    w('</datalist><p class="muted">Addresses, MTUs and table sizes wait for apply; the rest is '
      "in force at once. Save keeps the configuration across reboots.</p><p>")
    for action, text in (("apply", "Apply (restarts forwarding)"),
                         ("save", "Save (kept across reboots)")):
        w('<form method="post" action="/config/%s">' % action)
        hidden(o, csrf)
        w("<button>%s</button></form> " % text)
    w("</p></section><section><table><tr><th>key</th><th>value</th><th></th></tr>")
    for k, v in items:
        w("<tr><td>%s</td><td><code>%s</code></td><td>%s</td></tr>" % (
            esc(k), esc(v), '<span class="bad">waits for apply</span>'
            if k.split(".")[0] in pending else '<span class="muted">in force</span>'))
    w('</table></section><section><h2>Password</h2><form class="row" method="post" '
      'action="/password">')
    hidden(o, csrf)
    w('<label>New admin password<input type="password" name="password" '
      'autocomplete="new-password"></label><label>Again<input type="password" name="again">'
      "</label><button>Change the password</button>")
    field_error(o, errors, "password")
    w("</form></section>")
    return end(o)


def error_page(code, text):
    o = begin("Error %d" % code)
    o.write("<section><h1>%d</h1><p>%s</p></section>" % (code, esc(text)))
    return end(o)
