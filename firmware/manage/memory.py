# The heap, as a router's owner sees it: what nr.status() reports, and whether the flow
# tables a configuration asks for fit before the router is rebuilt with them (apply()
# refuses with the reason; a MemoryError half-way through a restart would leave no router).
#
# A board may say more (boards/README.md): board.memory() -> dict, e.g. ESP-IDF's heap
# beside MicroPython's; board.heap_room() -> bytes MicroPython's heap may still grow by
# (an ESP32 grows it into ESP-IDF's, up to a reserve kept for lwIP and Wi-Fi).
import gc

from compat import mem_alloc, mem_free
from forward.shared import holds
from nat.table import table_bytes

# Kept free beyond the tables: what the rest of a new router allocates (receive buffer,
# counters, packet fields, the DHCP server's table: some 7 KB on 32 bits) and the blocks
# a fragmented heap cannot use for one large array.
MARGIN = 12 * 1024


def sizes(cfg):
    t = cfg["table"]
    return t["tcp"], t["udp"], t["icmp"]


def report(board=None):
    """{"heap_free", "heap_used"} of MicroPython's heap (None on CPython, which has no
    fixed one), and the board's own figures."""
    out = {"heap_free": mem_free() if mem_free else None,
           "heap_used": mem_alloc() if mem_alloc else None}
    more = getattr(board, "memory", None)
    if more is not None:
        out.update(more())
    return out


def room(board=None):
    """Bytes a new allocation can have: MicroPython's free heap (after a collection) and
    what the board lets it grow by; None where there is no bound (CPython)."""
    if mem_free is None:
        return None
    gc.collect()
    grow = getattr(board, "heap_room", None)
    return mem_free() + (grow() if grow is not None else 0)


def check_tables(cfg, running=None, board=None, table=None):
    """Raise ValueError naming the table sizes when cfg's flow tables cannot be made in
    the heap left once the running configuration's tables are gone (the runner frees
    them first). None to make when the running flow table's arrays hold them (table:
    nat.Table.reshape, as the runner does)."""
    if holds(table, cfg):
        return
    have = room(board)
    if have is None:
        return
    need = table_bytes(*sizes(cfg))
    freed = table_bytes(*sizes(running)) if running is not None else 0
    have += freed
    if need + MARGIN > have:
        raise ValueError(
            "table: tcp %d, udp %d, icmp %d flows need %d bytes of heap; %d are free with "
            "the running tables' %d (keeping %d for the rest of the router): make the "
            "tables smaller" % (sizes(cfg) + (need, have, freed, MARGIN)))
