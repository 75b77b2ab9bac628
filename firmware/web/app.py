# The page and the JSON API: a microdot application over manage.api (plain data in and
# out; every rule stays there). server.py feeds it requests it has already checked and
# bounded; this module decides who may see what:
#
# - No password yet (a fresh board): only /setup, which sets one.
# - Otherwise nothing but /login (and /api/login, /style.css) without an admin session:
#   a cookie, HttpOnly, SameSite=Strict. Logins are rate-limited (auth.Limiter).
# - Every POST carries the session's token (the form field csrf, or the header
#   X-CSRF-Token) and, when the browser names one, an Origin equal to the page's own: a
#   cross-site request changes nothing. The login and setup forms have a visitor's
#   session for that token.
# - /api/...: the same data as JSON; changes are POSTs of JSON bodies.
import json

from microdot import Microdot, Response

from manage import api, webconfig
from . import auth, pages

JSON_TYPE = "application/json"
_OPEN = ("/login", "/api/login", "/style.css")
FLOWS_MAX = 200    # flows one page or answer shows


def html(text, status=200):
    return Response(text, status, {"Content-Type": "text/html; charset=utf-8",
                                   "Cache-Control": "no-store"})


def cookie(res, value, gone=False):
    """res with the session's cookie: HttpOnly (no script reads it), SameSite=Strict (no
    other site's request carries it)."""
    res.headers["Set-Cookie"] = ["%s=%s; Path=/; %sHttpOnly; SameSite=Strict" % (
        auth.COOKIE, value, "Max-Age=0; " if gone else "")]
    return res


def see_other(where, session=None):
    res = Response("", 303, {"Location": where})
    return res if session is None else cookie(res, session.id)


def peer(req):
    """The client's IP address (the unix port's sockets give a raw sockaddr)."""
    a = req.client_addr
    if isinstance(a, (bytes, bytearray)) and len(a) >= 8:
        return "%d.%d.%d.%d" % (a[4], a[5], a[6], a[7])
    return a[0] if isinstance(a, tuple) else str(a)


def field_of(message):
    """The form field a validation message of manage.api names ("forwards[2].to: ...")."""
    head = message.split(":", 1)[0]
    if "]." in head:
        return head.split("].", 1)[1]
    return "port" if "port" in message else "form"


def number(text, field, errors):
    if text is None or text == "":
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        errors[field] = "a port number 1..65535"
        return None
    return int(text)


def flat(d, prefix=""):
    """(dotted key, JSON text) of every value of the configuration, secrets hidden."""
    for k in sorted(d):
        v, key = d[k], prefix + k
        if isinstance(v, dict) and v:
            yield from flat(v, key + ".")
        elif key in webconfig.SECRET_KEYS:
            yield key, '"(set)"' if v else '""'
        else:
            yield key, json.dumps(v)


def redacted(cfg):
    for key in webconfig.SECRET_KEYS:
        sec, name = key.split(".")
        if cfg.get(sec, {}).get(name):
            cfg[sec][name] = "(set)"
    return cfg


class Web:
    def __init__(self):
        self.sessions = auth.Sessions()
        self.limiter = auth.Limiter()
        self.app = app = Microdot()
        app.before_request(self._gate)
        for path, methods, fn in (
                ("/style.css", ["GET"], self.style), ("/setup", ["GET", "POST"], self.setup),
                ("/login", ["GET", "POST"], self.login), ("/logout", ["POST"], self.logout),
                ("/", ["GET"], self.status), ("/clients", ["GET"], self.clients),
                ("/flows", ["GET"], self.flows), ("/forwards", ["GET"], self.forwards),
                ("/forwards/add", ["POST"], self.forward_add),
                ("/forwards/remove", ["POST"], self.forward_remove),
                ("/config", ["GET"], self.config), ("/config/set", ["POST"], self.config_set),
                ("/config/apply", ["POST"], self.config_apply),
                ("/config/save", ["POST"], self.config_save),
                ("/password", ["POST"], self.password), ("/api", ["GET"], self.api_index),
                ("/api/login", ["POST"], self.api_login),
                ("/api/<name>", ["GET", "POST"], self.api_call)):
            app.route(path, methods=methods)(self._guarded(fn))
        for code, text in ((404, "No such page."), (405, "Not with this method."),
                           (413, "The request is too large.")):
            app.errorhandler(code)(self._error(code, text))

    # ---- who may

    def _gate(self, req):
        path = req.path
        api_path = path == "/api" or path.startswith("/api/")
        req.g.session = s = self.sessions.get(req.cookies.get(auth.COOKIE))
        if path == "/style.css":
            return None
        if req.method == "POST" and self._cross_site(req):
            return self._deny(api_path, 403, "A request from another site changes nothing.")
        if not api.password_set():
            if path == "/setup":
                return self._token_ok(req, s, False)
            return (self._deny(True, 403, "No admin password yet: set one at /setup.")
                    if api_path else see_other("/setup"))
        if path == "/setup":
            return see_other("/")
        if path in _OPEN:
            return None if path != "/login" else self._token_ok(req, s, False)
        if s is None or not s.admin:
            return self._deny(True, 401, "Log in first.") if api_path else see_other("/login")
        return self._token_ok(req, s, api_path)

    @staticmethod
    def _cross_site(req):
        origin = req.headers.get("Origin")
        if origin is not None and origin != "http://" + req.headers.get("Host", ""):
            return True
        return req.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")

    def _token_ok(self, req, s, api_path):
        """None (go on) for a GET, or a POST carrying the session's token."""
        if req.method != "POST":
            return None
        sent = req.headers.get("X-CSRF-Token") if api_path else _form(req).get("csrf")
        if s is not None and auth.same(sent, s.csrf):
            return None
        return self._deny(api_path, 403, "This form has expired or did not come from this "
                          "page: load the page again.")

    @staticmethod
    def _deny(api_path, code, text):
        if api_path:
            return {"error": text}, code
        return html(pages.error_page(code, text), code)

    def _guarded(self, fn):
        def handler(req, **kw):
            try:
                return fn(req, **kw)
            except OSError as e:  # the router restarting, or busy
                return self._deny(req.path.startswith("/api"), 503, "The router did not answer "
                                  "(%s); try again." % e)
        return handler

    def _error(self, code, text):
        def handler(req):
            return self._deny(req is not None and req.path.startswith("/api"), code, text)
        return handler

    def _visitor(self, req):
        s = req.g.session
        return s if s is not None else self.sessions.new(False)

    def _admin(self, new_password=False):
        if new_password:
            self.sessions.clear()  # every other session ends
        return self.sessions.new(True)

    # ---- logging in

    def style(self, req):
        return Response(pages.STYLE, 200, {"Content-Type": "text/css",
                                           "Cache-Control": "max-age=3600"})

    def setup(self, req):
        s = self._visitor(req)
        error = None
        if req.method == "POST":
            f = _form(req)
            if f.get("password") != f.get("again"):
                error = "The two passwords differ."
            else:
                try:
                    api.set_password(f.get("password") or "")
                    return see_other("/", self._admin(True))
                except ValueError as e:
                    error = str(e).split(": ", 1)[-1]
        page = pages.password_form(
            "Set a password", "This router has no admin password yet. Choose one to manage it "
            "from this page (it is kept hashed on the board).", "/setup", s.csrf, error, True)
        return self._visitor_page(page, 400 if error else 200, s)

    def login(self, req):
        s = self._visitor(req)
        error, code = None, 200
        if req.method == "POST":
            who = peer(req)
            wait = self.limiter.wait_s(who)
            if wait:
                error, code = "Too many attempts: try again in %d s." % wait, 429
            elif webconfig.check_password(_form(req).get("password"), _stored()):
                self.limiter.succeeded(who)
                return see_other("/", self._admin())
            else:
                self.limiter.failed(who)
                error, code = "Wrong password.", 401
        page = pages.password_form("Log in", "The admin password of this router.", "/login",
                                   s.csrf, error)
        return self._visitor_page(page, code, s)

    @staticmethod
    def _visitor_page(page, code, s):
        return cookie(html(page, code), s.id)

    def logout(self, req):
        self.sessions.drop(req.g.session)
        return cookie(see_other("/login"), "", gone=True)

    def password(self, req):
        f = _form(req)
        errors = {}
        if f.get("password") != f.get("again"):
            errors["password"] = "The two passwords differ."
        else:
            try:
                api.set_password(f.get("password") or "")
                return see_other("/config", self._admin(True))
            except ValueError as e:
                errors["password"] = str(e)
        return self._config_page(req, errors, code=400)

    # ---- pages

    def status(self, req):
        s, rates = api.overview()
        return html(pages.status(s, rates, req.g.session.csrf))

    def clients(self, req):
        return html(pages.clients(api.clients(), req.g.session.csrf))

    def flows(self, req):
        q = {k: req.args.get(k, "") for k in ("proto", "host", "limit")}
        rows = []
        try:
            rows = api.flows(q["proto"] or None, q["host"] or None,
                             min(int(q["limit"]), FLOWS_MAX) if q["limit"].isdigit() else 50)
        except ValueError as e:
            q["error"] = str(e)
        return html(pages.flows(rows, q, req.g.session.csrf), 400 if "error" in q else 200)

    def forwards(self, req, errors=None, form=None, said=None):
        return html(pages.forwards(api.forwards(), req.g.session.csrf, errors, form, said),
                    400 if errors else 200)

    def forward_add(self, req):
        f = _form(req)
        form = {k: f.get(k, "") for k in ("proto", "port", "to", "to_port")}
        errors = {}
        port = number(form["port"], "port", errors)
        to_port = number(form["to_port"], "to_port", errors)
        if port is None and "port" not in errors:
            errors["port"] = "the WAN port to forward"
        if not errors:
            try:
                api.add_forward(form["proto"], port, form["to"], to_port)
                return self.forwards(req, said="%s port %d now leads to %s:%d." % (
                    form["proto"], port, form["to"], to_port or port))
            except ValueError as e:
                field = field_of(str(e))
                errors[field] = str(e).split(": ", 1)[-1] if field != "form" else str(e)
        return self.forwards(req, errors, form)

    def forward_remove(self, req):
        f = _form(req)
        try:
            api.remove_forward(f.get("proto"), int(f.get("port") or 0))
            return self.forwards(req, said="%s port %s is no longer forwarded." % (
                f.get("proto"), f.get("port")))
        except ValueError as e:
            return self.forwards(req, {"form": str(e)})

    def config(self, req):
        return self._config_page(req)

    def _config_page(self, req, errors=None, form=None, said=None, code=None):
        items = list(flat(api.configuration()))
        return html(pages.configuration(items, api.pending(), req.g.session.csrf, errors, form,
                                        said), code or (400 if errors else 200))

    def config_set(self, req):
        f = _form(req)
        key, text = f.get("key", ""), f.get("value", "")
        if key in webconfig.SECRET_KEYS[:1]:
            return self._config_page(req, {"key": "use the password form below"}, f)
        try:
            value = json.loads(text)
        except ValueError:
            value = text  # a bare word is taken as text: 192.168.4.1, tcp
        try:
            done = api.set(key, value)
        except ValueError as e:
            msg = str(e)
            field = "key" if "unknown key" in msg or "no item" in msg else "value"
            return self._config_page(req, {field: msg}, f)
        return self._config_page(req, said="%s %s." % (key, "is in force" if done["applied"]
                                                        else "waits for apply"))

    def config_apply(self, req):
        done = api.apply()
        return self._config_page(req, said="Restarted forwarding with the changes."
                                 if done["restarted"] else "Nothing to apply.")

    def config_save(self, req):
        return self._config_page(req, said="Saved to %s." % api.save()["saved"])

    # ---- the JSON API

    def api_index(self, req):
        return {"get": ["/api/" + n for n in _API_GET],
                "post": ["/api/" + n for n in _API_POST] + ["/api/login"],
                "token": "POSTs carry the header X-CSRF-Token: the csrf /api/login returned"}

    def api_login(self, req):
        who = peer(req)
        wait = self.limiter.wait_s(who)
        if wait:
            return {"error": "too many attempts: try again in %d s" % wait}, 429
        body = _json(req)
        if not isinstance(body, dict) or not webconfig.check_password(body.get("password"),
                                                                      _stored()):
            self.limiter.failed(who)
            return {"error": "wrong password"}, 401
        self.limiter.succeeded(who)
        s = self._admin()
        return cookie(Response({"csrf": s.csrf}), s.id)

    def api_call(self, req, name):
        table = _API_GET if req.method == "GET" else _API_POST
        if name not in table:
            return {"error": "no %s /api/%s" % (req.method, name)}, 404
        try:
            if req.method == "GET":
                return table[name](req)
            body = _json(req)
            if not isinstance(body, dict):
                return {"error": "the body must be a JSON object"}, 400
            return table[name](body)
        except ValueError as e:
            return {"error": str(e)}, 400
        except (KeyError, TypeError) as e:
            return {"error": "missing or wrong field: %s" % e}, 400


def _stored():
    from manage.runner import runner
    return runner.router.cfg["admin"]["password"]


def _form(req):
    try:
        return req.form or {}
    except ValueError:  # bad %-escapes, not UTF-8
        return {}


def _json(req):
    """The request's JSON object; ValueError for a broken one."""
    if (req.content_type or "").split(";")[0] != JSON_TYPE:
        raise ValueError("send JSON (Content-Type: application/json)")
    try:
        return json.loads(req.body.decode())
    except (ValueError, UnicodeError):
        raise ValueError("the body is not valid JSON")


def _flows(req):
    a = req.args
    limit = a.get("limit", "20")
    return api.flows(a.get("proto") or None, a.get("host") or None,
                     min(int(limit), FLOWS_MAX) if limit.isdigit() else -1)


def _config(req):
    return {"config": redacted(api.configuration()), "pending": api.pending()}


def _services(req):
    """The page's server (connections, per-page times) and the MQTT publisher."""
    from . import mqtt, service
    http = service.state["http"]
    return {"http": http.stats() if http is not None else None, "mqtt": mqtt.state}


_API_GET = {
    "status": lambda req: api.status(), "traffic": lambda req: api.traffic(),
    "clients": lambda req: api.clients(), "flows": _flows,
    "forwards": lambda req: api.forwards(), "leases": lambda req: api.leases(),
    "config": _config, "services": _services,
}
_API_POST = {
    "forwards": lambda b: api.add_forward(b["proto"], b["port"], b["to"], b.get("to_port")),
    "unforward": lambda b: api.remove_forward(b["proto"], b["port"]),
    "change": lambda b: api.change(b["changes"]),
    "apply": lambda b: api.apply(), "save": lambda b: api.save(),
}
