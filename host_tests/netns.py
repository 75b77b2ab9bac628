"""Fixtures and helpers for the virtual-board tests (tools/topology.py does the work).

Every topology gets a unique namespace prefix and is torn down even when a test
fails. Without root or `ip netns` the tests are skipped with the reason.
"""
import os
import sys
from contextlib import contextmanager

import pytest

from topology import FIRMWARE, Topology, Unavailable, check_board, check_host


def skip_reason(board="vboard"):
    """Why the virtual board (or `board`, see topology.BOARD_NAMES) cannot run here, or None."""
    try:
        check_host()
        check_board(board)
    except Unavailable as e:
        return str(e)
    if not (FIRMWARE / "main.py").exists():
        return "firmware/main.py does not exist yet"
    return None


def unique_prefix(tag="t"):
    return "%s%x%s" % (tag, os.getpid() & 0xFFFF, os.urandom(2).hex())


@contextmanager
def topology(tag="t", start=True, board="vboard"):
    """A built topology (board running unless start=False); removed on exit."""
    reason = skip_reason(board)
    if reason:
        pytest.skip("%s: %s" % ("virtual board" if board == "vboard" else board, reason))
    topo = Topology(unique_prefix(tag), log=lambda *a: None, board=board)
    try:
        topo.up(start=start)
        yield topo
    except BaseException:
        if topo.console is not None:  # the board's own words help most
            sys.stderr.write("--- board console ---\n%s\n" % topo.console.text())
        host_log = topo.workdir / "lwip_host.log"
        if host_log.exists():
            sys.stderr.write("--- lwip_host.log ---\n%s\n" % host_log.read_text()[-4000:])
        raise
    finally:
        topo.down()


def on_board(topo, code):
    """What code printed on the board's REPL, stripped."""
    return topo.exec_on_board(code).strip()


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



@contextmanager
def capture(topo, ns, ifname, seconds):
    """Frames received on ns/ifname while the block runs (at most `seconds`):
    yields a list filled in on exit with (src, dst, proto, sport, dport) tuples."""
    frames = []
    proc = topo.peer_bg(ns, "capture.py", ifname, seconds)
    with background(proc):
        assert proc.stdout.readline().strip() == "ready"
        yield frames
        out, _ = proc.communicate(timeout=seconds + 10)
    for line in out.splitlines():
        src, dst, proto, sport, dport = line.split()
        frames.append((src, dst, int(proto), int(sport), int(dport)))
