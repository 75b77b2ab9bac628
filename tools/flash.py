#!/usr/bin/env python3
"""Flash a board's image (tools/build.py) onto an ESP32 with esptool, then say how to
install the configuration and reach the REPL.

    flash.py WT32_ETH01 --port /dev/ttyUSB0 [--image FILE] [--baud 460800] [--keep-fs]

The image is MicroPython's ESP32 firmware.bin: the bootloader, the partition table and
the application in one file, written at 0x1000 (the ESP32's bootloader offset;
ports/esp32/makeimg.py lays them out for that: bootloader at 0x1000, partition table
at 0x8000, application at 0x10000). Before touching the board the image is checked:
the three parts where they belong, and esptool's image-info on the bootloader and the
application (header, checksum, hash). Then, with esptool:
  1. erase-flash (not with --keep-fs, which keeps the filesystem: natrouter.json and
     main.py survive an update);
  2. write-flash 0x1000 firmware.bin, which checks the MD5 of what it wrote against the
     image's ("Hash of data verified.") and fails if they differ.
Exit status: 0 flashed, 1 failed (the step and the reason on stderr), 2 bad usage.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402  (the image's place and the boards)

CHIP = "esp32"
OFFSET = 0x1000             # the bootloader's offset on the ESP32 (0x0 on the S3, C3...)
PARTITIONS = 0x8000         # CONFIG_PARTITION_TABLE_OFFSET
APP = 0x10000               # the factory app partition (partitions-4MiBplus.csv)
IMAGE_MAGIC = 0xE9
PARTITION_MAGIC = b"\xaa\x50"


class FlashError(Exception):
    pass


def esptool():
    return [sys.executable, "-m", "esptool"]


def steps(port, image, baud=460800, keep_fs=False):
    """[(what, argv)], in order: the esptool commands that flash the image (write-flash
    verifies what it wrote)."""
    common = esptool() + ["--chip", CHIP, "--port", port, "--baud", str(baud)]
    out = []
    if not keep_fs:
        out.append(("erase", common + ["erase-flash"]))
    out.append(("write", common + ["write-flash", "0x%x" % OFFSET, str(image)]))
    return out


def image_info(part, run=subprocess.run):
    """esptool image-info on one ESP32 image file; FlashError unless it is whole."""
    proc = run(esptool() + ["--chip", CHIP, "image-info", str(part)], capture_output=True,
               text=True, timeout=120)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "(invalid" in out or "Checksum:" not in out:
        raise FlashError("esptool image-info %s: %s" % (part, out.strip()[-600:]))
    return out


def check_image(path, run=subprocess.run):
    """Checks the layout of a merged ESP32 image flashed at OFFSET, and esptool's view of
    its bootloader and application. Returns the application's image-info."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FlashError("%s: %s (build it first: tools/build.py)" % (path, e.strerror))
    parts = (("bootloader", 0), ("partition table", PARTITIONS - OFFSET), ("application",
                                                                            APP - OFFSET))
    for name, at in parts:
        magic = data[at:at + (2 if name == "partition table" else 1)]
        want = PARTITION_MAGIC if name == "partition table" else bytes((IMAGE_MAGIC,))
        if magic != want:
            raise FlashError("%s: no %s at 0x%x (file offset 0x%x): not an ESP32 firmware.bin "
                             "made to be flashed at 0x%x" % (path, name, at + OFFSET, at, OFFSET))
    with tempfile.TemporaryDirectory() as tmp:
        boot = Path(tmp) / "bootloader.bin"
        boot.write_bytes(data[:PARTITIONS - OFFSET])
        image_info(boot, run)
        app = Path(tmp) / "application.bin"
        app.write_bytes(data[APP - OFFSET:])
        return image_info(app, run)


def next_steps(board, port):
    """What to do once flashed. The firmware is frozen into the image; the board only
    needs main.py on its filesystem (a frozen main.py would run at every boot whatever
    the filesystem holds). Without natrouter.json the board boots with its defaults."""
    mpremote = ".venv/bin/mpremote connect %s" % port
    lines = [
        "flash: done. Next:",
        "  1. main.py, which starts the router at every boot (the rest is in the image):",
        "       %s cp firmware/main.py :main.py + reset" % mpremote,
        "  2. the serial console shows the boot (natrouter: ... lines), then the REPL:",
        "       %s repl          (Ctrl-] leaves; the router keeps running)" % mpremote,
        "       >>> import nr; nr.help()",
        "  3. settings, from the REPL (saved to natrouter.json on the board):",
        "       >>> import manage",
        "       >>> manage.set(\"wifi.ap_key\", \"a passphrase of 8+ characters\")",
    ]
    if board == "ESP32_GENERIC":
        lines.append("       >>> manage.change({\"wifi.sta_ssid\": \"your network\", "
                     "\"wifi.sta_key\": \"its key\"})")
    lines.append("       >>> manage.save()")
    return "\n".join(lines)


def main(argv=None, run=subprocess.run):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("board", help="one of: %s" % ", ".join(build.esp32_boards()))
    ap.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    ap.add_argument("--image", help="the image (default: build/esp32/<board>/firmware.bin)")
    ap.add_argument("--baud", type=int, default=460800)
    ap.add_argument("--keep-fs", action="store_true",
                    help="do not erase the flash first: the filesystem (natrouter.json, "
                         "main.py) survives")
    args = ap.parse_args(argv)
    if args.board not in build.esp32_boards():
        ap.error("%s: not an ESP32 board (%s)" % (args.board, ", ".join(build.esp32_boards())))
    image = Path(args.image) if args.image else build.image_path(args.board)
    try:
        info = check_image(image, run)
        print("flash: %s: %s" % (image, " ".join(
            line.strip() for line in info.splitlines() if line.startswith(("Checksum",
                                                                             "Validation")))))
        for what, cmd in steps(args.port, image, args.baud, args.keep_fs):
            print("flash: %s: %s" % (what, " ".join(cmd)), flush=True)
            rc = run(cmd).returncode
            if rc != 0:
                raise FlashError("%s failed (esptool exit %d); is the board on %s and in its "
                                 "download mode (hold BOOT/IO0 low while resetting)?"
                                 % (what, rc, args.port))
    except FlashError as e:
        print("flash: error: %s" % e, file=sys.stderr)
        return 1
    print(next_steps(args.board, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
