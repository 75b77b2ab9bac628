/* What the MicroPython binding (modnatlink.c) needs from the platform it runs on.
 *
 * Implemented by esp32/natlink_port_freertos.c (ESP-IDF: FreeRTOS, esp_netif) and by
 * the unix-port test build (host_tests/natlink_unix/natlink/natlink_port_unix.c:
 * pthreads, in-memory lwIP netifs). The binding itself holds no rule: it converts
 * arguments, calls the core (natlink.c) and these five functions. */
#ifndef NATLINK_MP_H
#define NATLINK_MP_H

#include <stdbool.h>
#include <stdint.h>

#include "py/obj.h"
#include "natlink.h"

/* Once, before natlink_init(): fill *port. Its notify must release natlink_mp_wait();
 * nothing in *port may allocate from the MicroPython heap or raise. */
void natlink_mp_port_init(natlink_port_t *port);

/* Block the calling thread until notify() has fired since this function last
 * returned, or until timeout_ms has passed (0: only look). 1 when woken, 0 on timeout.
 * Called with the GIL released: must not touch MicroPython objects. */
int natlink_mp_wait(int timeout_ms);

/* Release a waiter now, as notify() would (natlink.stop()). */
void natlink_mp_wake(void);

/* The lwIP netif behind a network interface object (on the ESP32 a network.LAN or
 * network.WLAN). Raises TypeError for another kind of object, OSError when it has no
 * netif (yet). With the GIL held. */
struct netif *natlink_mp_netif(mp_obj_t nic);

/* The DHCP server that serves an access point (ESP-IDF's, on a WLAN(IF_AP)): stopped
 * when !enabled, else restarted handing out first..last (addresses as on the wire) for
 * lease_s seconds with dns as the DNS server. Raises where there is none. */
void natlink_mp_dhcps(mp_obj_t nic, bool enabled, const uint8_t dns[4], const uint8_t first[4],
    const uint8_t last[4], uint32_t lease_s);

#endif /* NATLINK_MP_H */
