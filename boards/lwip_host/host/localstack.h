/* The lwIP host board's own IP stack (localstack.c): what on an ESP32 the firmware's
 * sockets are, lwIP's own TCP, is here the Linux kernel of the router's namespace
 * behind a TUN device, reached through this program's lwIP netifs. */
#ifndef LOCALSTACK_H
#define LOCALSTACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOCAL_PORTS_FIRST 0xC000    /* lwIP's own ports on the WAN address (natlink's split) */

/* Attach to the TUN device `name` (made and addressed by tools/topology.py). */
void local_open(const char *name);
/* In a TAP reader, for an IPv4 frame lwIP would take (guard_input): 1 when the packet in
 * it went to the local stack instead: TCP to the LAN address arriving on the LAN, TCP to
 * the WAN address at one of lwIP's own ports arriving on the WAN. */
int local_divert(int wan, const uint8_t *frame, size_t len, const uint8_t lan_addr[4],
                 const uint8_t wan_addr[4]);
/* A packet the kernel sends (non-blocking), its length, or 0 when none is queued. */
ssize_t local_read(uint8_t *buf, size_t cap);
int local_fd(void);

#endif
