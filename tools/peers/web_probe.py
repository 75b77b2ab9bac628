"""An HTTP client of the router's page, run inside a namespace, driven a line at a time:
one JSON command on stdin, one JSON result on stdout. It keeps the session's cookie and
the token /api/login returned.

    web_probe.py HOST PORT

Commands ({"op": ...}):
  request  method, path, headers {}, body (text) or json (a value), timeout
           -> status, headers, body (text), ms
  login    password -> status, csrf (then sent as X-CSRF-Token on every request)
  raw      data (text, sent as latin-1), timeout -> status (the first line or ""), ms
  slow     data, every (s between bytes), max_s -> status, seconds (until the answer)
  parallel n, path, timeout -> statuses (one per connection, all opened at once)
Every loop is bounded by its timeout."""
import http.client
import json
import socket
import sys
import threading
import time

HOST, PORT = sys.argv[1], int(sys.argv[2])
state = {"cookie": None, "csrf": None}


def request(c):
    headers = dict(c.get("headers") or {})
    body = c.get("body")
    if "json" in c:
        body = json.dumps(c["json"])
        headers.setdefault("Content-Type", "application/json")
    if state["cookie"] and "Cookie" not in headers:
        headers["Cookie"] = state["cookie"]
    if state["csrf"] and c.get("token", True):
        headers.setdefault("X-CSRF-Token", state["csrf"])
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(HOST, PORT, timeout=c.get("timeout", 10))
    try:
        conn.request(c.get("method", "GET"), c["path"], body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    for v in r.headers.get_all("Set-Cookie") or ():
        state["cookie"] = v.split(";", 1)[0]
    return {"status": r.status, "headers": dict(r.headers), "ms": (time.monotonic() - t0) * 1000,
            "body": data.decode(errors="replace")}


def login(c):
    state["csrf"] = None
    r = request({"method": "POST", "path": "/api/login", "json": {"password": c["password"]}})
    if r["status"] == 200:
        state["csrf"] = json.loads(r["body"])["csrf"]
    return {"status": r["status"], "csrf": state["csrf"], "body": r["body"]}


def first_line(s, limit_s):
    s.settimeout(limit_s)
    data = b""
    try:
        while b"\n" not in data:
            more = s.recv(4096)
            if not more:
                break
            data += more
    except OSError:
        pass
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def raw(c):
    t0 = time.monotonic()
    with socket.create_connection((HOST, PORT), 5) as s:
        try:
            s.sendall(c["data"].encode("latin-1"))
        except OSError:
            pass  # the server may close before it has read everything: its answer counts
        status = first_line(s, c.get("timeout", 10))
    return {"status": status, "ms": (time.monotonic() - t0) * 1000}


def slow(c):
    t0 = time.monotonic()
    with socket.create_connection((HOST, PORT), 5) as s:
        s.settimeout(c["every"])
        for b in c["data"].encode("latin-1"):
            if time.monotonic() - t0 > c["max_s"]:
                break
            try:
                s.send(bytes([b]))
                if s.recv(4096, socket.MSG_PEEK):
                    break  # the server answered
            except socket.timeout:
                continue
            except OSError:
                break
        status = first_line(s, max(1.0, c["max_s"] - (time.monotonic() - t0)))
    return {"status": status, "seconds": time.monotonic() - t0}


def parallel(c):
    n = c["n"]
    out = [None] * n
    socks = []
    for _ in range(n):  # every connection open before any request is sent
        try:
            socks.append(socket.create_connection((HOST, PORT), 5))
        except OSError as e:
            socks.append(e)
    head = ("GET %s HTTP/1.0\r\nHost: %s\r\n%s\r\n" % (
        c["path"], HOST, "Cookie: %s\r\n" % state["cookie"] if state["cookie"] else "")).encode()

    def one(i):
        s = socks[i]
        if isinstance(s, OSError):
            out[i] = "connect: %s" % s
            return
        try:
            s.sendall(head)
        except OSError:
            pass
        out[i] = first_line(s, c.get("timeout", 20))
        s.close()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(c.get("timeout", 20) + 5)
    return {"statuses": out}


OPS = {"request": request, "login": login, "raw": raw, "slow": slow, "parallel": parallel}
print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        result = OPS[cmd["op"]](cmd)
    except Exception as e:  # the test reads what went wrong
        result = {"error": repr(e)}
    print(json.dumps(result), flush=True)
