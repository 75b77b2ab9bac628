"""Fixtures and helpers for the virtual-board tests (tools/vboard.py does the work).

Every topology gets a unique namespace prefix and is torn down even when a test
fails. Without root or `ip netns` the tests are skipped with the reason.
"""
import os
import sys
import time
from contextlib import contextmanager

import pytest

import vboard


def skip_reason():
    """Why the virtual board cannot run here, or None."""
    try:
        vboard.check_host()
    except vboard.Unavailable as e:
        return str(e)
    if not (vboard.FIRMWARE / "main.py").exists():
        return "firmware/main.py does not exist yet"
    return None


def unique_prefix(tag="t"):
    return "%s%x%s" % (tag, os.getpid() & 0xFFFF, os.urandom(2).hex())


@contextmanager
def topology(tag="t", start=True):
    """A built topology (board running unless start=False); removed on exit."""
    reason = skip_reason()
    if reason:
        pytest.skip("virtual board: " + reason)
    topo = vboard.Topology(unique_prefix(tag), log=lambda *a: None)
    try:
        topo.up(start=start)
        yield topo
    except BaseException:
        if topo.console is not None:  # the board's own words help most
            sys.stderr.write("--- board console ---\n%s\n" % topo.console.text())
        raise
    finally:
        topo.down()


@pytest.fixture(scope="module")
def vtopo():
    with topology("e") as topo:
        yield topo


@contextmanager
def background(proc):
    """Terminate a Popen on exit, whatever happens."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except Exception:
                proc.kill()


def wait_port(topo, ns, host, port, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if topo.run(ns, sys.executable, "-c", vboard.PORT_OPEN, host, port, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("%s:%d does not accept connections in %s" % (host, port, ns))


# Captures IPv4 frames on an interface (both ways) for a bounded time; prints one line
# per frame "src dst proto sport dport" (ports 0 for ICMP and others).
CAPTURE = r"""
import select, socket, struct, sys, time
ifname, seconds = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
print("ready", flush=True)
end = time.monotonic() + seconds
while True:
    left = end - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        break
    f = s.recv(65535)
    if f[12:14] != b"\x08\x00":
        continue
    ip = f[14:]
    hl = (ip[0] & 15) * 4
    sport = dport = 0
    if ip[9] in (6, 17):
        sport, dport = struct.unpack("!HH", ip[hl:hl + 4])
    print(socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[9], sport, dport, flush=True)
"""


@contextmanager
def capture(topo, ns, ifname, seconds):
    """Frames received on ns/ifname while the block runs (at most `seconds`):
    yields a list filled in on exit with (src, dst, proto, sport, dport) tuples."""
    frames = []
    proc = topo.python_bg(ns, CAPTURE, ifname, seconds)
    with background(proc):
        assert proc.stdout.readline().strip() == "ready"
        yield frames
        out, _ = proc.communicate(timeout=seconds + 10)
    for line in out.splitlines():
        src, dst, proto, sport, dport = line.split()
        frames.append((src, dst, int(proto), int(sport), int(dport)))
