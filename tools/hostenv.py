"""What the host tools and the tests share: where the MicroPython unix port and mpremote
are, running a command, waiting for a TCP port inside a namespace."""
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
PEERS = Path(__file__).resolve().parent / "peers"


# Modules of boards/natlink that a board's own modules may import (frozen in on an ESP32).
SHARED_BOARD_MODULES = (BOARDS / "natlink" / "natlinkrules.py",)


def board_modules(board_dir):
    """The *.py files a board's filesystem needs besides the firmware: the board's own
    and the shared ones (SHARED_BOARD_MODULES) they import."""
    own = sorted(Path(board_dir).glob("*.py"))
    text = "".join(p.read_text() for p in own)
    return own + [p for p in SHARED_BOARD_MODULES
                  if "import %s" % p.stem in text or "from %s import" % p.stem in text]


def firmware_files():
    """{device path: local file} of what firmware/manifest.py lists (the modules and
    packages a board runs), read as MicroPython's manifest tools read it."""
    files = {}

    def module(name, base_path=".", opt=None):
        files[name] = FIRMWARE / base_path / name

    def package(name, files_=None, base_path=".", opt=None):
        top = FIRMWARE / base_path
        for p in sorted((top / name).rglob("*.py")):
            files[p.relative_to(top).as_posix()] = p

    manifest = FIRMWARE / "manifest.py"
    exec(compile(manifest.read_text(), str(manifest), "exec"),
         {"module": module, "package": package, "metadata": lambda **kw: None})
    return files


def board_files(board_dir):
    """{device path: local file}: what a board's filesystem holds to run the firmware
    from source: the firmware (firmware_files), main.py, the board's modules
    (board_modules). ValueError when a board module would shadow a firmware one."""
    files = firmware_files()
    files["main.py"] = FIRMWARE / "main.py"
    for p in board_modules(board_dir):
        if p.name in files or p.stem in {k.split("/")[0] for k in files}:
            raise ValueError("%s would shadow firmware/%s" % (p, p.name))
        files[p.name] = p
    return files


def micropython_binary():
    """The unix port's `micropython` command (the venv's first), or None."""
    for here in (Path(sys.executable).parent / "micropython", ROOT / ".venv" / "bin" / "micropython"):
        if here.exists():
            return str(here)
    return shutil.which("micropython")


def lwip_host_binary():
    """The lwIP host board's host program (`make lwip-host`), or None if not built."""
    here = ROOT / "build" / "lwip_host" / "lwip_host"
    return str(here) if here.exists() else None


def mpremote_command():
    """mpremote as an argv prefix."""
    here = Path(sys.executable).parent / "mpremote"
    return [str(here)] if here.exists() else [sys.executable, "-m", "mpremote"]


def sh(*cmd, check=True, timeout=30, input=None):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(map(str, cmd)), proc.returncode,
                                                   (proc.stderr or proc.stdout).strip()))
    return proc


def wait_port(ns, host, port, timeout=5):
    """Wait until host:port accepts TCP connections, seen from namespace ns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sh("ip", "netns", "exec", ns, sys.executable, PEERS / "port_open.py", host, port,
              check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("%s:%d does not accept connections in %s" % (host, port, ns))
