# The natrouter firmware, frozen into the ESP32 boards' images (each board's manifest.py
# includes this file; tools/build.py builds them): every firmware module and the nat
# package, plus esp32board, the boards' shared module. Frozen code runs from flash, so
# only the objects the modules make take heap.
#
# Not main.py: MicroPython runs a frozen main.py before the filesystem's at every boot
# (shared/runtime/pyexec.c), so it could never be replaced or left out; it goes onto the
# filesystem (tools/deploy.py). A module copied onto the filesystem later overrides its
# frozen twin ("" comes before ".frozen" in sys.path).
import os

_FIRMWARE = "../../firmware"    # relative to this file, which include() runs from here

for _name in sorted(os.listdir(_FIRMWARE)):
    if _name.endswith(".py") and _name != "main.py":
        module(_name, base_path=_FIRMWARE)
package("nat", base_path=_FIRMWARE)
module("esp32board.py")
module("natlinkrules.py", base_path="../natlink")  # the port split, shared with lwip_host
