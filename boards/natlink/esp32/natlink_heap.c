/* ESP-IDF's heap is shared: lwIP's pbufs, natlink's TX callback messages, Wi-Fi's
 * buffers and every FreeRTOS thread stack (the router's among them) come from it at
 * run time, and MicroPython grows its own heap into it (MICROPY_GC_SPLIT_HEAP_AUTO) as
 * soon as a collection leaves an allocation unmet, taking up to the largest free block.
 * On a router that starves lwIP: seen in QEMU, where a restart (new tables beside the
 * old ones) grew the Python heap until PPP's input found no pbufs and no thread could
 * start. The linker's --wrap (micropython.cmake) puts this in front of the port's
 * gc_get_max_new_split(): the Python heap may only grow into what leaves
 * NATLINK_IDF_RESERVE bytes of ESP-IDF's heap free; past that, Python gets MemoryError
 * and lwIP keeps its share. */
#include <stddef.h>

#include "esp_heap_caps.h"

#ifndef NATLINK_IDF_RESERVE
#define NATLINK_IDF_RESERVE (48 * 1024)
#endif

size_t __wrap_gc_get_max_new_split(void);

size_t __wrap_gc_get_max_new_split(void) {
    size_t largest = heap_caps_get_largest_free_block(MALLOC_CAP_DEFAULT);
    size_t free = heap_caps_get_free_size(MALLOC_CAP_DEFAULT);
    /* what may go: the largest block, as long as the rest of the heap keeps the reserve */
    if (free <= NATLINK_IDF_RESERVE) {
        return 0;
    }
    return largest < free - NATLINK_IDF_RESERVE ? largest : free - NATLINK_IDF_RESERVE;
}
