"""A browser-like client of the router's page, run inside a namespace: logs in, then once a
second fetches the status page and the JSON status, as an open tab with a dashboard
would, for SECONDS (or until terminated). Prints one JSON line at the end: fetches,
errors, their mean and longest times in ms.

    page_load.py HOST PASSWORD SECONDS"""
import http.client
import json
import signal
import sys
import time

host, password, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
stats = {"fetches": 0, "errors": 0, "ms_total": 0.0, "ms_max": 0.0}
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))


def fetch(method, path, body=None, headers=None):
    t0 = time.monotonic()
    c = http.client.HTTPConnection(host, 80, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
    finally:
        c.close()
    ms = (time.monotonic() - t0) * 1000
    stats["fetches"] += 1
    stats["ms_total"] += ms
    stats["ms_max"] = max(stats["ms_max"], ms)
    return r, data


r, data = fetch("POST", "/api/login", json.dumps({"password": password}),
                {"Content-Type": "application/json"})
cookie = {"Cookie": r.getheader("Set-Cookie", "").split(";", 1)[0]}
print("ready", flush=True)
end = time.monotonic() + seconds
while not stop and time.monotonic() < end:
    t0 = time.monotonic()
    for path in ("/", "/api/status"):
        try:
            r, _ = fetch("GET", path, headers=cookie)
            stats["errors"] += r.status != 200
        except OSError:
            stats["errors"] += 1
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
n = max(stats["fetches"], 1)
print(json.dumps({"fetches": stats["fetches"], "errors": stats["errors"],
                  "ms_mean": stats["ms_total"] / n, "ms_max": stats["ms_max"]}), flush=True)
