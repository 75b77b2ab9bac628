# What this board's image freezes (tools/build.py): MicroPython's own ESP32 set (asyncio,
# mip, ntptime, webrepl...: the port's boards/manifest.py), the natrouter firmware and
# esp32board (../esp32_common/manifest.py), and this board's board.py.
include("$(PORT_DIR)/boards/manifest.py")
include("$(BOARD_DIR)/../esp32_common/manifest.py")
module("board.py", base_path="$(BOARD_DIR)")
