"""The page (firmware/web) on the ESP32 boards, without an ESP32:

- the boot path on the unix port against the fakes (host_tests/upy/web_cases.py, as
  test_esp32_boards.py runs esp32_cases.py): main.py starts the page's service, which
  listens on the access point's address with its socket bound to the access point's
  netif (lwIP then never accepts it on the WAN: esp32board.lan_only);
- the boards' manifests freeze the page and microdot (from build/upylib) and not umqtt
  (MicroPython's ESP32 port freezes micropython-lib's umqtt.simple itself);
- the page's heap per board on the 32-bit WASI build, and the bytecode it adds to the
  image (mpy-cross), printed for the note (pytest -s)."""
import json

import pytest

import hostenv
from esp32_run import BOARDS, run_case
from runtimes import ROOT, run_wasi
from test_esp32_boards import _Manifest
from test_mpy_cross import compile_all

UPYLIB = ROOT / "build" / "upylib"
MICRODOT = ("microdot/__init__.py", "microdot/microdot.py")
# The page's share of the heap: the app's objects and the biggest page's allocations,
# garbage included (WASI: no collection), the router's data it shows and the text it sends.
HEAP_BUDGET = 96 * 1024


def need_upylib():
    if not all((UPYLIB / f).exists() for f in MICRODOT):
        pytest.skip("microdot is not in build/upylib (make upylib)")


@pytest.mark.parametrize("board", BOARDS)
def test_the_page_listens_on_the_access_point_alone(board, tmp_path):
    need_upylib()
    res = run_case(board, "page_starts", tmp_path, module="web_cases")
    assert res["running"] and res["started"] == ["run"]
    assert res["want"] == ["192.168.4.1", 80] and res["stack"] == 16 * 1024
    reuse, bind_ap0, bind_ap1, bind, listen = res["calls"]
    assert reuse[0] == "setsockopt" and bind_ap0[1:] == bind_ap1[1:2] + ["ap0"]
    assert bind_ap1 == ["setsockopt", 0x100B, "ap1"]   # the netif that exists: the AP's
    assert bind == ["bind", ["192.168.4.1", 80]] and listen[0] == "listen"


@pytest.mark.parametrize("board", BOARDS)
def test_the_manifests_freeze_the_page_and_microdot(board, tmp_path):
    need_upylib()
    board_dir = ROOT / "boards" / board
    m = _Manifest(tmp_path / "ports" / "esp32", board_dir)
    m.include(str(board_dir / "manifest.py"))
    frozen = dict(m.files)
    for name in ("web/app.py", "web/server.py", "web/pages.py", "web/mqtt.py") + MICRODOT:
        assert name in frozen, name
    assert frozen["microdot/microdot.py"] == str(UPYLIB / "microdot" / "microdot.py")
    assert not any(n.startswith("umqtt") for n in frozen)   # the port's own
    assert set(frozen) >= set(hostenv.firmware_files())


@pytest.mark.parametrize("board", BOARDS)
def test_the_pages_heap_on_the_32_bit_build(board):
    need_upylib()
    code = ("sys.path.insert(0, '/input/host_tests/upy/stubs')\n"
            "sys.path.insert(0, '/input/boards/natlink')\n"
            "sys.path.insert(0, '/input/boards/esp32_common')\n"
            "sys.path.insert(0, '/input/boards/%s')\n"
            "sys.path.insert(0, '/input/host_tests/upy/fakes')\n"
            "sys.path.append('/input/build/upylib')\n"
            "import web_cases\nweb_cases.heap()\n" % board)
    out = run_wasi(code)
    res = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
    pages = {k: v for k, v in res.items() if isinstance(v, list)}
    print("\n%s (32-bit, no collection: upper bounds): microdot's module %d B, the page's "
          "modules %d B (both compiled from source here: frozen on the board), the app %d B; "
          "per page, heap allocated and bytes sent: %s" % (
              board, res["microdot"], res["modules"], res["app"],
              ", ".join("%s %d B (%d B)" % (k, v[0], v[1]) for k, v in pages.items())))
    biggest = max(v[0] for v in pages.values())
    assert res["app"] + biggest < HEAP_BUDGET, res
    assert all(v[1] > 0 for v in pages.values())


def test_the_bytecode_the_page_adds_to_an_image():
    need_upylib()
    files = sorted((ROOT / "firmware" / "web").glob("*.py")) + [UPYLIB / f for f in MICRODOT]
    sizes = {}
    total = compile_all(march="xtensawin", files=files, sizes=sizes)
    print("\nthe page's bytecode (mpy-cross -march=xtensawin): %d B in all: %s" % (
        total, ", ".join("%s %d" % (k.split("/", 1)[-1], v) for k, v in sorted(sizes.items()))))
    assert 0 < total < 64 * 1024
