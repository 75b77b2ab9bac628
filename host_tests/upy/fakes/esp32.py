# A fake of MicroPython's ESP32 `esp32` module for the board tests: idf_heap_info() gives
# HEAP's regions, (total, free, largest free block, lowest free) each, as
# ports/esp32/modesp32.c does for heap_caps_get_info(); a test sets HEAP.
HEAP_DATA = 1 << 3   # MALLOC_CAP_8BIT
HEAP_EXEC = 1 << 0

# An ESP32 running the router with Ethernet up: the emulated board's regions.
HEAP = [(6432, 4, 0, 4), (140400, 1388, 1344, 128), (15072, 2364, 2304, 828),
        (113840, 47408, 47104, 45872)]


def idf_heap_info(capabilities):
    if capabilities != HEAP_DATA:
        raise ValueError("the fake knows HEAP_DATA only")
    return [tuple(region) for region in HEAP]
