# What every natrouter ESP32 image freezes besides MicroPython's own set: the firmware
# (firmware/manifest.py: exactly what a board runs, nothing of the tests) and the
# boards' shared modules. Frozen code runs from flash, so only the objects the modules
# make take heap. A module copied onto the filesystem later overrides its frozen twin
# ("" comes before ".frozen" in sys.path).
include("../../firmware/manifest.py")
module("esp32board.py")    # the board interface (setup, open_links, ...)
module("esp32net.py")      # the interfaces: Ethernet, the access point
module("esp32station.py")  # the Wi-Fi station: saved networks, backoff, MAC
module("esp32watch.py")    # the supervisor: watchdog, uplink, settings, leases
module("esp32reset.py")    # the factory-reset button
module("esp32heap.py")     # the two heaps: memory(), heap_room(), the tables that fit
module("natlinkrules.py", base_path="../natlink")  # the port split, shared with lwip_host
