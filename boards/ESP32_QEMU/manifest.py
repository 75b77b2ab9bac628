# What the emulated board's image freezes (tools/build.py): MicroPython's own ESP32 set,
# the natrouter firmware and esp32board (../esp32_common/manifest.py), this board's
# board.py and its PPP LAN.
include("$(PORT_DIR)/boards/manifest.py")
include("$(BOARD_DIR)/../esp32_common/manifest.py")
module("board.py", base_path="$(BOARD_DIR)")
module("ppplan.py", base_path="$(BOARD_DIR)")
