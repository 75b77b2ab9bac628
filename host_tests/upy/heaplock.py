# micropython.heap_lock() for the tests' allocation checks, with stand-ins where there is
# none (CPython imports the case modules only for their names; the firmware never locks
# its heap, so these live here, not in firmware/compat.py).
try:
    from micropython import heap_lock, heap_unlock
except ImportError:
    def heap_lock():
        return 0

    def heap_unlock():
        return 0
