# The ESP32's two heaps. ESP-IDF's (lwIP's pbufs, Wi-Fi's buffers, natlink's messages,
# thread stacks) and MicroPython's, which grows into ESP-IDF's as it needs, but only so
# far that IDF_RESERVE bytes of ESP-IDF's stay free (natlink/esp32/natlink_heap.c). The
# board interface's memory() and heap_room() (manage/memory.py), and the table sizes
# check() lets through.
import esp32
import natlink

# natlink_heap.c's NATLINK_IDF_RESERVE, as the image was built (natlink.IDF_RESERVE; the
# default here, which a host test keeps equal to the C's): the boards' Wi-Fi
# (sdkconfig.memory, ESP-IDF's "Memory saving" rank) may hold 12 dynamic RX and 12 TX
# buffers of about 1.6 KB at once (ESP-IDF's Wi-Fi guide): 38.4 KB, and lwIP's pbufs and
# natlink's messages beside them. A board without a radio sets less (ESP32_QEMU).
IDF_RESERVE = getattr(natlink, "IDF_RESERVE", 48 * 1024)

# The most flow-table bytes (nat.table.table_bytes) a configuration may ask for. Measured
# on the emulated board (tools/qemu.py bench) with the router, the page and both links
# up at the default tables (16.9 KB): 29 KB of MicroPython's heap free and ESP-IDF's
# heap at its reserve (no growth left), so a restart may have 29 + 16.9 KB less
# manage.memory.MARGIN (12 KB): 34 KB; a real board's Wi-Fi leaves less, which the
# live check at apply() (manage.memory.check_tables) sees.
TABLE_BYTES_MAX = 32 * 1024


def memory():
    """ESP-IDF's data heap, all regions: free bytes, the largest free block (what one
    allocation can have), the lowest free since boot; and the reserve."""
    free = largest = lowest = 0
    for _total, region_free, region_largest, region_lowest in esp32.idf_heap_info(
            esp32.HEAP_DATA):
        free += region_free
        lowest += region_lowest
        largest = max(largest, region_largest)
    return {"idf_free": free, "idf_largest": largest, "idf_min_free": lowest,
            "idf_reserve": IDF_RESERVE}


def heap_room():
    """Bytes MicroPython's heap may still take from ESP-IDF's in one piece (as
    natlink_heap.c computes it)."""
    m = memory()
    spare = m["idf_free"] - IDF_RESERVE
    return max(0, min(m["idf_largest"], spare))


def check(cfg, problems):
    """Flow tables past what the board's heap holds are refused, the defaults used."""
    from nat.table import table_bytes
    t = cfg["table"]
    need = table_bytes(t["tcp"], t["udp"], t["icmp"])
    if need > TABLE_BYTES_MAX:
        default = config_defaults()
        problems.add("table: tcp %d, udp %d, icmp %d flows take %d bytes; this board's "
                     "heap holds at most %d for flow tables" % (t["tcp"], t["udp"], t["icmp"],
                                                               need, TABLE_BYTES_MAX),
                     "using tcp %d, udp %d, icmp %d" % (default["tcp"], default["udp"],
                                                        default["icmp"]))
        cfg["table"] = default


def config_defaults():
    from manage import config
    return dict(config.defaults()["table"])
