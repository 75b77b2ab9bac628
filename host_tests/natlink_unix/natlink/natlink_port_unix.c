/* natlink_mp.h's lock and wake-up on Linux, for the unix-port test build of the
 * binding: what esp32/natlink_port_freertos.c does with a FreeRTOS mutex and binary
 * semaphore, here a pthread mutex and a flag under a condition variable (a notify
 * while nobody waits is remembered once, like a given binary semaphore). The netifs
 * and the DHCP server come from lwipsim.c. */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "natlink_mp.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wcv;
static int given;

static void ux_lock(void *ctx) {
    (void)ctx;
    pthread_mutex_lock(&mu);
}

static void ux_unlock(void *ctx) {
    (void)ctx;
    pthread_mutex_unlock(&mu);
}

void natlink_mp_wake(void) {
    pthread_mutex_lock(&wmu);
    given = 1;
    pthread_cond_signal(&wcv);
    pthread_mutex_unlock(&wmu);
}

static void ux_notify(void *ctx, int link) {
    (void)ctx;
    (void)link;
    natlink_mp_wake();
}

void natlink_mp_port_init(natlink_port_t *port) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&wcv, &a);
    port->ctx = NULL;
    port->lock = ux_lock;
    port->unlock = ux_unlock;
    port->notify = ux_notify;
}

int natlink_mp_wait(int timeout_ms) {
    struct timespec t;
    int r;

    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += timeout_ms / 1000;
    t.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&wmu);
    while (!given) {
        if (pthread_cond_timedwait(&wcv, &wmu, &t) == ETIMEDOUT) {
            break;
        }
    }
    r = given;
    given = 0;
    pthread_mutex_unlock(&wmu);
    return r;
}
