"""tools/build.py and tools/flash.py without ESP-IDF, a MicroPython checkout or a board:
the build tool's checks name what is missing and how to get it, and it runs the port's
make with the board out of tree (a stand-in make on PATH); the flash tool checks an image
with esptool's own image-info (on images esptool merge-bin puts together as MicroPython's
makeimg.py does) and runs exactly the esptool commands it should, in order."""
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build  # noqa: E402
import flash  # noqa: E402

ESPTOOL = [sys.executable, "-m", "esptool"]


# ---- build.py

def fake_checkout(tmp, version=(1, 28, 0), submodules=True):
    mp = tmp / "micropython"
    (mp / "ports" / "esp32").mkdir(parents=True)
    (mp / "ports" / "esp32" / "Makefile").write_text("# the port's Makefile\n")
    (mp / "py").mkdir()
    (mp / "py" / "mpconfig.h").write_text(
        "#define MICROPY_VERSION_MAJOR %d\n#define MICROPY_VERSION_MINOR %d\n"
        "#define MICROPY_VERSION_MICRO %d\n" % version)
    for sub in build.SUBMODULES:
        (mp / sub).mkdir(parents=True)
        if submodules:
            (mp / sub / "README.md").write_text("x")
    return mp


def fake_idf(tmp, version=(5, 5, 1)):
    idf = tmp / "esp-idf"
    (idf / "tools" / "cmake").mkdir(parents=True)
    (idf / "tools" / "idf.py").write_text("")
    (idf / "tools" / "cmake" / "version.cmake").write_text(
        "set(IDF_VERSION_MAJOR %d)\nset(IDF_VERSION_MINOR %d)\nset(IDF_VERSION_PATCH %d)\n"
        % version)
    return idf


def programs(tmp, names=("idf.py", build.TOOLCHAIN, "make"), make_rc=0, image=True):
    """A bin directory of stand-ins; make records its argv and makes the image."""
    bindir = tmp / "bin"
    bindir.mkdir()
    for name in names:
        p = bindir / name
        if name == "make":
            p.write_text(
                "#!%s\nimport os, sys, pathlib\n"
                "with open(%r, 'a') as log:\n"
                "    log.write(' '.join(sys.argv[1:] + ['MICROPY_MPYCROSS=%%s BUILD=%%s' %% (\n"
                "        os.environ.get('MICROPY_MPYCROSS'), os.environ.get('BUILD'))]) + '\\n')\n"
                "if sys.argv[-1].endswith('mpy-cross'):\n"
                "    (pathlib.Path(sys.argv[-1]) / 'build').mkdir(parents=True)\n"
                "    (pathlib.Path(sys.argv[-1]) / 'build' / 'mpy-cross').write_text('')\n"
                "    sys.exit(0)\n"
                "pathlib.Path(%r).write_text('\\n'.join(sys.argv[1:]))\n"
                "b = [a[6:] for a in sys.argv if a.startswith('BUILD=')][0]\n"
                "pathlib.Path(b).mkdir(parents=True, exist_ok=True)\n"
                "if %r: (pathlib.Path(b) / 'firmware.bin').write_bytes(b'\\xe9' * 64)\n"
                "sys.exit(%d)\n" % (sys.executable, str(tmp / "make.calls"), str(tmp / "make.argv"),
                                     image, make_rc))
        else:
            p.write_text("#!/bin/sh\nexit 0\n")
        p.chmod(0o755)
    return bindir


def test_nothing_there_says_what_to_get(tmp_path):
    _plan, problems = build.check("WT32_ETH01", {}, which=lambda p: None)
    text = "\n".join(problems)
    assert "set MICROPY_DIR" in text and "git clone -b v1.28.0" in text
    assert "set IDF_PATH" in text and "export.sh" in text and "v5.5" in text
    assert "make is not on PATH" in text
    assert len(problems) == 3


def test_wrong_versions_and_missing_submodules(tmp_path):
    mp = fake_checkout(tmp_path, version=(1, 27, 0), submodules=False)
    idf = fake_idf(tmp_path, version=(5, 1, 2))
    _plan, problems = build.check("OLIMEX_ESP32_POE", {"MICROPY_DIR": str(mp), "IDF_PATH": str(idf)},
                                 which=lambda p: "/usr/bin/" + p)
    assert len(problems) == 3, problems
    assert problems[0] == ("MICROPY_DIR=%s is MicroPython 1.27.0; natrouter needs v1.28 "
                           "(git -C %s checkout v1.28.0)" % (mp, mp))
    assert problems[1].startswith("MICROPY_DIR=%s lacks the submodules lib/micropython-lib, "
                                  "lib/berkeley-db-1.xx" % mp)
    assert "make -C %s/ports/esp32 submodules BOARD_DIR=%s" % (
        mp, ROOT / "boards" / "OLIMEX_ESP32_POE") in problems[1]
    assert problems[2].startswith("IDF_PATH=%s is ESP-IDF 5.1.2; MicroPython 1.28 builds with "
                                  "v5.3, v5.4 or v5.5" % idf)


def test_idf_environment_not_exported(tmp_path):
    env = {"MICROPY_DIR": str(fake_checkout(tmp_path)), "IDF_PATH": str(fake_idf(tmp_path))}
    _plan, problems = build.check("ESP32_GENERIC", env, which=lambda p: "/bin/make" if p == "make"
                                 else None)
    assert problems == [
        "idf.py is not on PATH: export ESP-IDF's environment first (. %s/export.sh)"
        % env["IDF_PATH"],
        "%s is not on PATH: export ESP-IDF's environment first (. %s/export.sh)"
        % (build.TOOLCHAIN, env["IDF_PATH"])]


def test_unknown_board_and_not_a_checkout(tmp_path):
    _plan, problems = build.check("vboard", {"MICROPY_DIR": str(tmp_path)},
                                 which=lambda p: "/bin/" + p)
    assert problems[0].startswith("vboard: not an ESP32 board of this repository")
    assert "ESP32_GENERIC, ESP32_QEMU, OLIMEX_ESP32_POE, WT32_ETH01" in problems[0]
    assert problems[1] == "MICROPY_DIR=%s is not a MicroPython checkout (no ports/esp32/Makefile)" \
        % tmp_path


@pytest.mark.parametrize("board", ["WT32_ETH01", "OLIMEX_ESP32_POE", "ESP32_GENERIC"])
def test_build_runs_the_ports_make_out_of_tree(board, tmp_path, capsys):
    mp = fake_checkout(tmp_path)
    env = {"MICROPY_DIR": str(mp), "IDF_PATH": str(fake_idf(tmp_path)),
           "PATH": str(programs(tmp_path))}
    image = build.image_path(board)
    existed = image.exists()
    try:
        assert build.main([board, "-j", "3"], env=env) == 0
        argv = (tmp_path / "make.argv").read_text().split("\n")
        assert argv == ["-j3", "-C", str(mp.resolve() / "ports" / "esp32"),
                        "BOARD_DIR=%s" % (ROOT / "boards" / board),
                        "USER_C_MODULES=%s" % (ROOT / "boards" / "natlink" / "micropython.cmake"),
                        "BUILD=%s" % (ROOT / "build" / "esp32" / board)]
        # mpy-cross first, on its own: the port's build would make it with the board's
        # BUILD (make hands command-line variables down) in the board's build directory
        cross = mp.resolve() / "mpy-cross" / "build" / "mpy-cross"
        assert (tmp_path / "make.calls").read_text().splitlines() == [
            "-C %s MICROPY_MPYCROSS=None BUILD=None" % cross.parent.parent,
            " ".join(argv) + " MICROPY_MPYCROSS=%s BUILD=None" % cross]
        out = capsys.readouterr().out
        assert "build: image %s (64 bytes)" % image in out
        assert "flash it at 0x1000" in out and "tools/flash.py %s --port" % board in out
    finally:
        if not existed and image.exists():
            image.unlink()


def test_build_failure_and_dry_run(tmp_path, capsys):
    mp = fake_checkout(tmp_path)
    env = {"MICROPY_DIR": str(mp), "IDF_PATH": str(fake_idf(tmp_path)),
           "PATH": str(programs(tmp_path, make_rc=2, image=False))}
    assert build.main(["WT32_ETH01"], env=env) == 1
    assert "make failed (exit 2)" in capsys.readouterr().err
    (tmp_path / "make.argv").unlink()
    assert build.main(["WT32_ETH01", "--dry-run"], env=env) == 0
    assert not (tmp_path / "make.argv").exists()   # checked, printed, not run
    assert "USER_C_MODULES=" in capsys.readouterr().out


def test_build_refuses_to_start_without_the_environment(tmp_path, capsys):
    assert build.main(["WT32_ETH01"], env={"PATH": str(tmp_path)}) == 1
    err = capsys.readouterr().err
    assert err.startswith("build: cannot build WT32_ETH01:\n  - no MicroPython checkout")


# ---- flash.py

def esp32_image(segments, entry=0x40080000):
    """An ESP32 image (esptool's format): header, extended header, segments, checksum,
    SHA-256, as ESP-IDF's build writes the bootloader and the application."""
    body = struct.pack("<BBBBI", 0xE9, len(segments), 2, 0x20, entry)
    body += struct.pack("<B3sHBHH4sB", 0xEE, bytes(3), 0, 0, 0, 0xFFFF, bytes(4), 1)
    csum = 0xEF
    for addr, data in segments:
        body += struct.pack("<II", addr, len(data)) + data
        for b in data:
            csum ^= b
    body += bytes(15 - len(body) % 16) + bytes((csum,))
    return body + hashlib.sha256(body).digest()


def partition_table():
    def entry(kind, sub, offset, size, name):
        return struct.pack("<2sBBII16sI", b"\xaa\x50", kind, sub, offset, size,
                           name.encode(), 0)
    return (entry(1, 2, 0x9000, 0x6000, "nvs") + entry(1, 1, 0xF000, 0x1000, "phy_init")
            + entry(0, 0, 0x10000, 0x1F0000, "factory")) + b"\xff" * 32


@pytest.fixture
def firmware(tmp_path):
    """A firmware.bin laid out by esptool merge-bin as makeimg.py lays MicroPython's."""
    parts = {"boot.bin": esp32_image([(0x3FFF0000, b"\x11" * 256), (0x40078000, b"\x22" * 512)]),
             "parts.bin": partition_table(),
             "app.bin": esp32_image([(0x3F400020, b"\x33" * 1024), (0x400D0020, b"\x44" * 2048)],
                                    entry=0x400D0020)}
    for name, data in parts.items():
        (tmp_path / name).write_bytes(data)
    out = tmp_path / "firmware.bin"
    proc = subprocess.run(ESPTOOL + ["--chip", "esp32", "merge-bin", "-o", str(out),
                                     "--target-offset", "0x1000",
                                     "0x1000", str(tmp_path / "boot.bin"),
                                     "0x8000", str(tmp_path / "parts.bin"),
                                     "0x10000", str(tmp_path / "app.bin")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_image_checked_with_esptool(firmware):
    info = flash.check_image(firmware)
    assert "Checksum: " in info and "(valid)" in info and "Entry point: 0x400d0020" in info


@pytest.mark.parametrize("where,damage,says", [
    (0x0F000 + 0x40, 1, "image-info"),            # a byte of the application's data
    (0x00000 + 0x30, 1, "image-info"),            # the bootloader's
    (0x07000, 0xFF, "no partition table at 0x8000"),
    (0x0F000, 0xFF, "no application at 0x10000"),
    (0x00000, 0xFF, "no bootloader at 0x1000"),
])
def test_damaged_image_refused(firmware, where, damage, says):
    data = bytearray(firmware.read_bytes())
    data[where] ^= damage
    firmware.write_bytes(bytes(data))
    with pytest.raises(flash.FlashError, match=says):
        flash.check_image(firmware)


def test_missing_image(tmp_path):
    with pytest.raises(flash.FlashError, match="build it first"):
        flash.check_image(tmp_path / "firmware.bin")


def test_steps_are_esptools_commands():
    common = ESPTOOL + ["--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"]
    assert flash.steps("/dev/ttyUSB0", "/x/firmware.bin") == [
        ("erase", common + ["erase-flash"]),
        ("write", common + ["write-flash", "0x1000", "/x/firmware.bin"])]
    assert [w for w, _ in flash.steps("/dev/ttyACM0", "f", 115200, keep_fs=True)] == ["write"]


def test_esptool_knows_the_commands():
    # The installed esptool takes every command and option flash.py gives it.
    for cmd in ("erase-flash", "write-flash", "image-info"):
        proc = subprocess.run(ESPTOOL + [cmd, "--help"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(ESPTOOL + ["--help"], capture_output=True, text=True, timeout=120)
    for opt in ("--chip", "--port", "--baud"):
        assert opt in proc.stdout


class Recorder:
    """subprocess.run for flash.main: esptool image-info runs for real, the flashing
    commands are recorded (rc from `fail`)."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def __call__(self, argv, **kw):
        if "image-info" in argv:
            return subprocess.run(argv, **kw)
        self.calls.append(argv)
        rc = 2 if self.fail and self.fail in argv else 0
        return subprocess.CompletedProcess(argv, rc)


def test_flash_runs_erase_then_write_then_says_what_next(firmware, capsys):
    rec = Recorder()
    assert flash.main(["WT32_ETH01", "--port", "/dev/ttyUSB0", "--image", str(firmware)],
                      run=rec) == 0
    common = ESPTOOL + ["--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"]
    assert rec.calls == [common + ["erase-flash"],
                         common + ["write-flash", "0x1000", str(firmware)]]
    out = capsys.readouterr().out
    assert "cp firmware/main.py :main.py + reset" in out and "import nr; nr.help()" in out
    assert "wifi.sta_ssid" not in out


def test_flash_stops_at_the_failing_step(firmware, capsys):
    rec = Recorder(fail="write-flash")
    assert flash.main(["ESP32_GENERIC", "--port", "/dev/ttyUSB1", "--image", str(firmware),
                       "--keep-fs"], run=rec) == 1
    assert [c[-3] if c[-1] != "erase-flash" else c[-1] for c in rec.calls] == ["write-flash"]
    err = capsys.readouterr().err
    assert "write failed (esptool exit 2)" in err and "/dev/ttyUSB1" in err


def test_flash_refuses_a_bad_image_before_touching_the_board(firmware, capsys):
    data = bytearray(firmware.read_bytes())
    data[0xF000 + 0x40] ^= 1
    firmware.write_bytes(bytes(data))
    rec = Recorder()
    assert flash.main(["OLIMEX_ESP32_POE", "--port", "/dev/ttyUSB0", "--image", str(firmware)],
                      run=rec) == 1
    assert rec.calls == []
    assert "invalid" in capsys.readouterr().err


def test_flash_knows_the_boards():
    with pytest.raises(SystemExit):
        flash.main(["vboard", "--port", "/dev/null"])
    assert flash.steps("p", build.image_path("WT32_ETH01"))[1][1][-1] == str(
        ROOT / "build" / "esp32" / "WT32_ETH01" / "firmware.bin")


def test_tools_run_as_scripts(tmp_path):
    for tool in ("build.py", "flash.py"):
        proc = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--help"],
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, MICROPY_DIR="", IDF_PATH=""))
        assert proc.returncode == 0 and "usage:" in proc.stdout
