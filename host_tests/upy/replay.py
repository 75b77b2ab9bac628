# Replays the vector file written by host_tests/vectors.py against the nat engine.
# Runs unchanged on CPython, the MicroPython unix port and the WASI build: it reads the
# file one line at a time and prints one summary line, then one line per mismatch:
#   REPLAY records=<n> checks=<n> mismatches=<n> core=<viper|cpython|python|...>
import json
from binascii import hexlify, unhexlify

import nat

FIELDS = ("src", "dst", "proto", "ttl", "length", "sport", "dport", "icmp_type", "icmp_code")


def engine(pure):
    """A Packet and a Table factory; pure=True asks the engine for its pure-Python path
    (an engine option, not part of the contract: it exists where the viper core does)."""
    if not pure:
        return nat.Packet(), nat.Table
    return nat.Packet(pure=True), lambda **caps: nat.Table(pure=True, **caps)


def core_name(pure):
    """Which per-packet path ran: the engine's fast core (nat.core.NAME) or its twin."""
    if pure:
        return "python"
    try:
        from nat import core
        return core.NAME
    except ImportError:
        return "unknown"


def port_gen(ports):
    it = iter(ports)

    def gen():
        for port in it:
            return port
        return None
    return gen


def first_difference(got, want):
    for i in range(min(len(got), len(want))):
        if got[i] != want[i]:
            return i
    return min(len(got), len(want))


class Replay:
    def __init__(self, pure=False, show=100):
        self.p, self.make_table = engine(pure)
        self.pure = pure
        self.table = None
        self.records = self.checks = self.mismatches = 0
        self.show = show
        self.details = []

    def fail(self, r, what):
        self.mismatches += 1
        if len(self.details) < self.show:
            self.details.append("MISMATCH %s [%s]: %s" % (r["op"], r["name"], what))

    def check(self, r, what, got, want):
        self.checks += 1
        if got != want:
            self.fail(r, "%s: got %r, want %r" % (what, got, want))
            return False
        return True

    def check_fields(self, r):
        for name in FIELDS:
            if name in r["f"]:
                self.check(r, name, getattr(self.p, name), r["f"][name])

    def status(self, r, what, got):
        want = r["want"]
        self.checks += 1
        if got != want:
            self.fail(r, "%s: got %s, want %s" % (what, nat.status_name(got) if
                                                  isinstance(got, int) else repr(got),
                                                  nat.status_name(want)))
            return False
        return True

    def one(self, r):
        op = r["op"]
        self.records += 1
        if op == "table":
            self.table = self.make_table(tcp=r["tcp"], udp=r["udp"], icmp=r["icmp"])
            return
        buf = bytearray(unhexlify(r["pkt"]))
        if op == "parse":
            if self.status(r, "parse", self.p.parse(buf, r["n"])) and r["want"] == nat.OK:
                self.check_fields(r)
            return
        n = r.get("n", len(buf))
        if not self.check(r, "parse", self.p.parse(buf, n), nat.OK):
            return
        if op == "add":
            redir = r["redir"]
            got = self.table.add(self.p, r["xl"], port_gen(r["ports"]), r["mode"],
                                 None if redir is None else (redir[0], redir[1]))
            self.status(r, "add", got)
        elif op == "xl":
            ok = self.status(r, "translate", self.table.translate(self.p))
            want = unhexlify(r["out"])
            self.checks += 1
            if bytes(buf) != want:
                at = first_difference(buf, want)
                self.fail(r, "bytes differ from offset %d:\n  got  %s\n  want %s" % (
                    at, hexlify(bytes(buf[at:at + 24])), hexlify(want[at:at + 24])))
            if ok and r["want"] == nat.OK:
                self.check_fields(r)
        else:
            self.fail(r, "unknown record")

    def run(self, path):
        with open(path) as lines:
            for line in lines:
                if line.strip():
                    self.one(json.loads(line))
        return self

    def report(self):
        print("REPLAY records=%d checks=%d mismatches=%d core=%s" % (
            self.records, self.checks, self.mismatches, core_name(self.pure)))
        for line in self.details:
            print(line)
        if self.mismatches > len(self.details):
            print("... and %d more" % (self.mismatches - len(self.details)))


def main(path, pure=False):
    r = Replay(pure).run(path)
    r.report()
    return r
