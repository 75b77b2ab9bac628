#!/usr/bin/env python3
"""Place the firmware's third-party MicroPython code into build/upylib (never committed):

- microdot 2.7.0, its core (microdot/__init__.py, microdot/microdot.py), from its pinned
  PyPI wheel: the ESP32 images freeze it (firmware/manifest.py), tools/deploy.py copies it,
  the virtual boards run it;
- umqtt/simple.py of micropython-lib's umqtt.simple 1.3.4, from its PyPI sdist (not a
  pip-installable project: pip fetches and unpacks it, then refuses to build it; the file
  is taken from what it unpacked): the virtual boards' MQTT (MICROPYPATH); the ESP32 port
  freezes micropython-lib's own.

Both are fetched by pip with their archives' sha256 pinned, and the files checked against
theirs. `make upylib` runs this; it does nothing when the files are in place.

    upylib.py [--dest build/upylib]
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MICRODOT = ("microdot==2.7.0",
            "1e9b7b825372e1ba8ebd4c59b6180e15c71f4b5200ec4bcbf8c9f9b5652db379",
            {"microdot/__init__.py":
             "d2bc801e842a2b4e3e5a82e26c82f5cce65f1edbca27e9c1df1ac5828ebb50eb",
             "microdot/microdot.py":
             "d9e0bea681d15965e8c683f642e03536fbed34e0bc55fe5000324208924936c1"})
UMQTT = ("micropython-umqtt.simple==1.3.4",
         "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f",
         {"umqtt/simple.py": "8555d2f654deb8eb0d724f79b0811a78cc94029d070f3d96bbd74288653d63a5"})


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def in_place(dest, files):
    return all((dest / name).exists() and sha256((dest / name).read_bytes()) == digest
               for name, digest in files.items())


def pip_download(requirement, digest, tmp, unpack=False):
    """pip fetches requirement (its archive's sha256 pinned) into tmp/dl; unpack: keep
    what it unpacked (an sdist it cannot build) under tmp/build."""
    req = tmp / "req.txt"
    req.write_text("%s --hash=sha256:%s\n" % (requirement, digest))
    env = dict(os.environ, TMPDIR=str(tmp / "build"))
    (tmp / "build").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
           "-r", str(req), "-d", str(tmp / "dl"), "-q"] + (["--no-clean"] if unpack else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 and not unpack:
        raise SystemExit("upylib: pip could not fetch %s:\n%s" % (requirement, proc.stderr[-2000:]))
    return proc


def place(dest, files, found):
    """Write files (name -> sha256) from found(name) -> bytes into dest, checked."""
    for name, digest in files.items():
        data = found(name)
        if data is None or sha256(data) != digest:
            raise SystemExit("upylib: %s is missing or not the pinned one" % name)
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=str(ROOT / "build" / "upylib"))
    dest = Path(ap.parse_args(argv).dest)
    for requirement, digest, files in (MICRODOT, UMQTT):
        if in_place(dest, files):
            continue
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            if requirement.startswith("microdot"):
                pip_download(requirement, digest, tmp)
                wheel = zipfile.ZipFile(next((tmp / "dl").glob("*.whl")))
                place(dest, files, wheel.read)
            else:
                pip_download(requirement, digest, tmp, unpack=True)
                got = {str(p.relative_to(p.parents[1])): p
                       for p in (tmp / "build").rglob("umqtt/simple.py")}
                place(dest, files, lambda n: got[n].read_bytes() if n in got else None)
        print("upylib: %s in %s" % (requirement, dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
