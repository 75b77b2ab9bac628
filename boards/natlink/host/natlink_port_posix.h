/* natlink's platform interface on Linux: a pthread mutex, and an eventfd the consumer
 * polls (readable when a ring went from empty to non-empty). Reused by the host
 * harness and by the later host program (TAP netifs + natlink). */
#ifndef NATLINK_PORT_POSIX_H
#define NATLINK_PORT_POSIX_H

#include <pthread.h>

#include "natlink.h"

typedef struct natlink_posix {
    pthread_mutex_t mu;
    int efd;                      /* non-blocking eventfd; read 8 bytes to re-arm */
} natlink_posix_t;

/* Fills *port to use *px, which must outlive natlink. 0, or -1 (errno set). */
int natlink_posix_init(natlink_posix_t *px, natlink_port_t *port);

#endif /* NATLINK_PORT_POSIX_H */
