/* natlink's platform interface on Linux (natlink_port_posix.h). */
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "natlink_port_posix.h"

static void px_lock(void *ctx)
{
    pthread_mutex_lock(&((natlink_posix_t *)ctx)->mu);
}

static void px_unlock(void *ctx)
{
    pthread_mutex_unlock(&((natlink_posix_t *)ctx)->mu);
}

/* One eventfd for both links: the router reads both rings when woken anyway. A full
 * counter (EAGAIN) still leaves the fd readable, so the error is harmless. */
static void px_notify(void *ctx, int link)
{
    uint64_t one = 1;
    ssize_t r = write(((natlink_posix_t *)ctx)->efd, &one, sizeof one);
    (void)r;
    (void)link;
}

int natlink_posix_init(natlink_posix_t *px, natlink_port_t *port)
{
    memset(px, 0, sizeof *px);
    px->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (px->efd < 0 || pthread_mutex_init(&px->mu, NULL) != 0) {
        return -1;
    }
    port->ctx = px;
    port->lock = px_lock;
    port->unlock = px_unlock;
    port->notify = px_notify;
    return 0;
}
