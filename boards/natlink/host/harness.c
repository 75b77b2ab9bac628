/* Host test harness for natlink (host_tests/test_natlink.py drives it with ctypes).
 *
 * Real lwIP: Debian's liblwip 2.1.3, tcpip_init() and its thread. Three in-memory
 * Ethernet netifs (added with tcpip_input, as a driver would) whose linkoutput
 * captures frames, so a test sees the ARP requests lwIP sends and the frames that
 * leave. Frames are injected through netif->input from the caller's thread, as a
 * driver's receive task would, in custom pbufs whose frees are counted. h_pump() runs
 * the million-packet accounting test in C: a driver thread feeding the WAN netif and
 * a consumer forwarding every claimed packet out through the LAN netif. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lwip/etharp.h"
#include "lwip/ip4.h"
#include "lwip/ethip6.h"
#include "lwip/tcpip.h"
#include "netif/ethernet.h"

#include "natlink.h"
#include "natlink_port_posix.h"

#define H_NETIFS 4
#define CAP_FRAMES 128
#define FRAME_MAX 1600

struct hnetif {
    struct netif netif;
    uint8_t mac[6];
    int added;
    pthread_mutex_t mu;
    /* capture ring (tests), or counting only (the pump) */
    unsigned head, tail;
    uint16_t len[CAP_FRAMES];
    uint8_t frame[CAP_FRAMES][FRAME_MAX];
    int count_only;
    uint8_t expect_dst[6];
    int expect_len;
    uint64_t frames_out, ipv4_out, mismatches, cap_drops;
};

static struct hnetif hn[H_NETIFS];
static natlink_posix_t px;
static natlink_port_t port;
static natlink_t nl;
static int booted;
static atomic_long rx_allocs, rx_frees;

/* ---- netifs ---- */

static void h_capture(struct hnetif *h, struct pbuf *p, const uint8_t *eth, int is_ip)
{
    pthread_mutex_lock(&h->mu);
    h->frames_out++;
    h->ipv4_out += is_ip;
    if (h->count_only) {
        if (is_ip && eth && h->expect_len && (memcmp(eth, h->expect_dst, 6) || p->tot_len != h->expect_len)) {
            h->mismatches++;
        }
    } else if (h->head - h->tail < CAP_FRAMES && p->tot_len <= FRAME_MAX) {
        unsigned i = h->head++ % CAP_FRAMES;
        h->len[i] = pbuf_copy_partial(p, h->frame[i], p->tot_len, 0);
    } else {
        h->cap_drops++;
    }
    pthread_mutex_unlock(&h->mu);
}

static err_t h_linkoutput(struct netif *netif, struct pbuf *p)
{
    uint8_t eth[14];
    int is_ip = pbuf_copy_partial(p, eth, 14, 0) == 14 && eth[12] == 0x08 && eth[13] == 0x00;

    h_capture((struct hnetif *)netif->state, p, eth, is_ip);
    return ERR_OK;
}

/* A point-to-point IP netif, as PPP's: no link header, no ARP; output gets the bare
 * IPv4 packet (captured whole, as frames are). */
static err_t h_output_ip(struct netif *netif, struct pbuf *p, const ip4_addr_t *hop)
{
    (void)hop;
    h_capture((struct hnetif *)netif->state, p, NULL, 1);
    return ERR_OK;
}

static err_t h_netif_init_ip(struct netif *n)
{
    struct hnetif *h = (struct hnetif *)n->state;

    n->name[0] = 'p';
    n->name[1] = (char)('0' + (h - hn));
    n->output = h_output_ip;
    n->mtu = 1500;
    n->flags = 0;                   /* neither ETHARP nor ETHERNET */
    return ERR_OK;
}

static err_t h_netif_init(struct netif *n)
{
    struct hnetif *h = (struct hnetif *)n->state;

    n->name[0] = 'h';
    n->name[1] = (char)('0' + (h - hn));
    n->output = etharp_output;
    n->output_ip6 = ethip6_output;
    n->linkoutput = h_linkoutput;
    n->mtu = 1500;
    n->hwaddr_len = 6;
    memcpy(n->hwaddr, h->mac, 6);
    n->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    return ERR_OK;
}

static int wait_sem(sem_t *s, int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    while (sem_timedwait(s, &t) != 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

static void post_sem(void *arg)
{
    sem_post((sem_t *)arg);
}

/* lwIP once per process; returns natlink's eventfd. */
int h_boot(void)
{
    static sem_t s;

    if (booted) {
        return px.efd;
    }
    for (int i = 0; i < H_NETIFS; i++) {
        pthread_mutex_init(&hn[i].mu, NULL);
    }
    sem_init(&s, 0, 0);
    tcpip_init(post_sem, &s);
    if (wait_sem(&s, 5000) != 0 || natlink_posix_init(&px, &port) != 0 || natlink_init(&nl, &port) != 0) {
        return -1;
    }
    booted = 1;
    return px.efd;
}

int h_netif_add(int idx, const uint8_t *mac, const uint8_t *ip, const uint8_t *mask, const uint8_t *gw)
{
    struct hnetif *h;
    ip4_addr_t a, m, g;

    if (idx < 0 || idx >= H_NETIFS || hn[idx].added) {
        return -1;
    }
    h = &hn[idx];
    memcpy(h->mac, mac, 6);
    memcpy(&a.addr, ip, 4);
    memcpy(&m.addr, mask, 4);
    memcpy(&g.addr, gw, 4);
    LOCK_TCPIP_CORE();
    netif_add(&h->netif, &a, &m, &g, h, h_netif_init, tcpip_input);
    netif_set_up(&h->netif);
    netif_set_link_up(&h->netif);
    UNLOCK_TCPIP_CORE();
    h->added = 1;
    return 0;
}

static struct pbuf *hrx_alloc(const uint8_t *d, int n);

/* An IP-only point-to-point netif at idx (PPP's kind): address ip, the peer at peer. */
int h_netif_add_ip(int idx, const uint8_t *ip, const uint8_t *peer)
{
    struct hnetif *h;
    ip4_addr_t a, m, g;

    if (idx < 0 || idx >= H_NETIFS || hn[idx].added) {
        return -1;
    }
    h = &hn[idx];
    memcpy(&a.addr, ip, 4);
    ip4_addr_set_u32(&m, 0xffffffffUL);
    memcpy(&g.addr, peer, 4);
    LOCK_TCPIP_CORE();
    netif_add(&h->netif, &a, &m, &g, h, h_netif_init_ip, ip4_input);
    netif_set_up(&h->netif);
    netif_set_link_up(&h->netif);
    UNLOCK_TCPIP_CORE();
    h->added = 1;
    return 0;
}

/* A bare IPv4 packet into the IP netif idx, as PPP delivers one: in lwIP's thread (here
 * under its core lock), ip4_input() with the IPv4 input hook first, which on the
 * ESP32 is natlink_ip4_input() (Debian's prebuilt lwIP has no hook: called here). */
int h_inject_ip(int idx, const uint8_t *pkt, int len)
{
    struct netif *n = &hn[idx].netif;
    struct pbuf *p;

    if (len <= 0 || len > 0xffff || (p = hrx_alloc(pkt, len)) == NULL) {
        return -100;
    }
    LOCK_TCPIP_CORE();
    if (!natlink_ip4_input(p, n)) {
        ip4_input(p, n);            /* lwIP owns p now */
    }
    UNLOCK_TCPIP_CORE();
    return 0;
}

/* Is idx's input still lwIP's own tcpip_input? */
int h_input_is_lwip(int idx)
{
    return hn[idx].netif.input == tcpip_input;
}

/* ---- driver side: inject frames through netif->input ---- */

struct hrx {
    struct pbuf_custom pc;
    uint8_t data[];
};

static void hrx_free(struct pbuf *p)
{
    atomic_fetch_add(&rx_frees, 1);
    free(p);
}

/* Like ESP-IDF's Wi-Fi receive path: a PBUF_REF custom pbuf over the driver's buffer. */
static struct pbuf *hrx_alloc(const uint8_t *d, int n)
{
    struct hrx *b = malloc(sizeof *b + (size_t)n);

    if (b == NULL) {
        return NULL;
    }
    memcpy(b->data, d, (size_t)n);
    b->pc.custom_free_function = hrx_free;
    atomic_fetch_add(&rx_allocs, 1);
    return pbuf_alloced_custom(PBUF_RAW, (u16_t)n, PBUF_REF, &b->pc, b->data, (u16_t)n);
}

/* One frame into netif idx; split > 0 delivers it as a chain of two pbufs. */
int h_inject(int idx, const uint8_t *frame, int len, int split)
{
    struct netif *n = &hn[idx].netif;
    struct pbuf *p;
    err_t err;

    if (len <= 0 || len > 0xffff) {
        return -100;
    }
    if (split > 0 && split < len) {
        struct pbuf *q;
        p = hrx_alloc(frame, split);
        q = hrx_alloc(frame + split, len - split);
        pbuf_cat(p, q);
    } else {
        p = hrx_alloc(frame, len);
    }
    err = n->input(p, n);
    if (err != ERR_OK) {
        pbuf_free(p);               /* a driver frees what input refused */
    }
    return err;
}

long h_rx_outstanding(void)
{
    return atomic_load(&rx_allocs) - atomic_load(&rx_frees);
}

long h_rx_allocs(void)
{
    return atomic_load(&rx_allocs);
}

/* ---- captured output ---- */

int h_take(int idx, uint8_t *buf, int cap)
{
    struct hnetif *h = &hn[idx];
    int n = 0;

    pthread_mutex_lock(&h->mu);
    if (h->head != h->tail) {
        unsigned i = h->tail++ % CAP_FRAMES;
        n = h->len[i] <= cap ? h->len[i] : -1;
        if (n > 0) {
            memcpy(buf, h->frame[i], (size_t)n);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

void h_clear(int idx)
{
    pthread_mutex_lock(&hn[idx].mu);
    hn[idx].head = hn[idx].tail = 0;
    pthread_mutex_unlock(&hn[idx].mu);
}

/* Count frames instead of capturing them; IPv4 frames not going to expect_dst with
 * expect_len bytes count as mismatches (expect_len 0: no check). */
void h_count_only(int idx, int on, const uint8_t *expect_dst, int expect_len)
{
    struct hnetif *h = &hn[idx];

    pthread_mutex_lock(&h->mu);
    h->count_only = on;
    if (expect_dst != NULL) {
        memcpy(h->expect_dst, expect_dst, 6);
    }
    h->expect_len = expect_len;
    h->frames_out = h->ipv4_out = h->mismatches = h->cap_drops = 0;
    pthread_mutex_unlock(&h->mu);
}

/* frames_out, ipv4_out, mismatches, cap_drops */
void h_out_stats(int idx, uint64_t *out)
{
    struct hnetif *h = &hn[idx];

    pthread_mutex_lock(&h->mu);
    out[0] = h->frames_out;
    out[1] = h->ipv4_out;
    out[2] = h->mismatches;
    out[3] = h->cap_drops;
    pthread_mutex_unlock(&h->mu);
}

/* ---- lwIP's thread ---- */

/* Returns once lwIP's thread has handled every message posted before (a barrier:
 * tcpip_callback always goes through the mbox, core locking or not). */
int h_sync(void)
{
    sem_t s;
    int r;

    sem_init(&s, 0, 0);
    if (tcpip_callback(post_sem, &s) != ERR_OK) {
        return -1;
    }
    r = wait_sem(&s, 5000);
    sem_destroy(&s);
    return r;
}

/* Debian's lwIP has LWIP_TCPIP_CORE_LOCKING: holding the lock stalls lwIP's thread. */
void h_core_lock(void)
{
    LOCK_TCPIP_CORE();
}

void h_core_unlock(void)
{
    UNLOCK_TCPIP_CORE();
}

/* Forget idx's ARP entries (so a test sees the first ARP request again). */
void h_arp_flush(int idx)
{
    LOCK_TCPIP_CORE();
    etharp_cleanup_netif(&hn[idx].netif);
    UNLOCK_TCPIP_CORE();
}

void h_set_mtu(int idx, int mtu)
{
    LOCK_TCPIP_CORE();
    hn[idx].netif.mtu = (u16_t)mtu;
    UNLOCK_TCPIP_CORE();
}

/* ---- natlink ---- */

static void fill_ranges(natlink_ranges_t *rs, const uint16_t *pairs, int n)
{
    rs->n = (uint8_t)n;             /* natlink_start() rejects n > NATLINK_MAX_RANGES */
    for (int i = 0; i < n && i < NATLINK_MAX_RANGES; i++) {
        rs->r[i].lo = pairs[2 * i];
        rs->r[i].hi = pairs[2 * i + 1];
    }
}

static void fill_claims(natlink_config_t *c, const uint16_t *tcp, int ntcp, const uint16_t *udp,
                        int nudp, const uint16_t *icmp, int nicmp, int lan_dhcp)
{
    memset(c, 0, sizeof *c);
    fill_ranges(&c->tcp, tcp, ntcp);
    fill_ranges(&c->udp, udp, nudp);
    fill_ranges(&c->icmp, icmp, nicmp);
    c->lan_dhcp = (uint8_t)lan_dhcp;
}

int h_start(int lan, int wan, const uint8_t *wan_addr, const uint16_t *tcp, int ntcp,
            const uint16_t *udp, int nudp, const uint16_t *icmp, int nicmp, int lan_dhcp)
{
    natlink_config_t c;

    fill_claims(&c, tcp, ntcp, udp, nudp, icmp, nicmp, lan_dhcp);
    c.netif[NATLINK_LAN] = &hn[lan].netif;
    c.netif[NATLINK_WAN] = &hn[wan].netif;
    memcpy(c.wan_addr, wan_addr, 4);
    return natlink_start(&nl, &c);
}

int h_set_claims(const uint16_t *tcp, int ntcp, const uint16_t *udp, int nudp,
                 const uint16_t *icmp, int nicmp, int lan_dhcp)
{
    natlink_config_t c;

    fill_claims(&c, tcp, ntcp, udp, nudp, icmp, nicmp, lan_dhcp);
    return natlink_set_claims(&nl, &c);
}

int h_rehook(void)
{
    return natlink_rehook(&nl);
}

/* What ESP-IDF does to an interface's netif when its driver stops and starts again
 * (an access point whose settings changed): down, removed, added back with the
 * driver's own input (tcpip_input) and up, in lwIP's thread. */
int h_netif_readd(int idx)
{
    struct netif *n = &hn[idx].netif;
    ip4_addr_t a, m, g;

    if (idx < 0 || idx >= H_NETIFS || !hn[idx].added) {
        return -1;
    }
    LOCK_TCPIP_CORE();
    ip4_addr_copy(a, *netif_ip4_addr(n));
    ip4_addr_copy(m, *netif_ip4_netmask(n));
    ip4_addr_copy(g, *netif_ip4_gw(n));
    netif_set_down(n);
    netif_remove(n);
    netif_add(n, &a, &m, &g, &hn[idx], h_netif_init, tcpip_input);
    netif_set_up(n);
    netif_set_link_up(n);
    UNLOCK_TCPIP_CORE();
    return 0;
}

int h_stop(void)
{
    return natlink_stop(&nl);
}

int h_running(void)
{
    return nl.running;
}

void h_set_wan(const uint8_t *addr)
{
    natlink_set_wan_addr(&nl, addr);
}

int h_recv(int link, uint8_t *buf, int cap)
{
    return natlink_recv(&nl, link, buf, cap);
}

int h_send(int link, const uint8_t *pkt, int n)
{
    return natlink_send(&nl, link, pkt, n);
}

int h_pending(int link)
{
    return natlink_pending(&nl, link);
}

int h_tx_free(void)
{
    return natlink_tx_free(&nl);
}

unsigned h_bad_frees(void)
{
    return nl.bad_frees;
}

/* Copies up to n counters (natlink_counters_t's fields, in order); returns how many
 * fields natlink_counters_t has, so the Python side can check its field list. */
int h_counters(int link, uint32_t *out, int n)
{
    natlink_counters_t c;
    int fields = (int)(sizeof c / sizeof(uint32_t));

    natlink_get_counters(&nl, link, &c);
    memcpy(out, &c, sizeof(uint32_t) * (size_t)(n < fields ? n : fields));
    return fields;
}

int h_sizes(int *out)
{
    out[0] = NATLINK_MTU;
    out[1] = NATLINK_RX_SLOTS;
    out[2] = NATLINK_TX_SLOTS;
    out[3] = NATLINK_MAX_RANGES;
    return 4;
}

/* ---- the pump: WAN driver thread -> ring -> consumer -> natlink_send(LAN) ---- */

struct pump {
    int n, flen, plen, pass_every;
    const uint8_t *fwd, *pass;
    volatile int abort;
    long injected, passes;
    sem_t go, done;                 /* a burst: released by the consumer, completed by the driver */
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Like a NIC's receive task: bursts of frames, as many as the ring holds (so that
 * every packet goes through it; overflow has its own test). */
static void *pump_driver(void *arg)
{
    struct pump *pp = (struct pump *)arg;

    for (int i = 0; i < pp->n;) {
        while (wait_sem(&pp->go, 100) != 0) {
            if (pp->abort) {
                return NULL;
            }
        }
        for (int b = 0; b < NATLINK_RX_SLOTS && i < pp->n; b++, i++) {
            h_inject(1, pp->fwd, pp->flen, 0);
            pp->injected++;
            if (pp->pass_every && (i + 1) % pp->pass_every == 0) {
                h_inject(1, pp->pass, pp->plen, 0);
                pp->passes++;
            }
        }
        sem_post(&pp->done);
    }
    return NULL;
}

/* Per burst the consumer, like the router: sleeps on natlink's eventfd until woken
 * (the ring starts each burst empty, so natlink must notify exactly once), drains the
 * ring and sends every packet out through the LAN netif.
 * res: [0] packets received, [1] injected, [2] passes injected, [3] bursts whose
 * wake-up never came (2 s), [4] bursts woken other than exactly once, [5] microseconds.
 * 0 when all n left through the LAN netif before timeout_s, else -1. */
int h_pump(int n, const uint8_t *fwd, int flen, const uint8_t *pass, int plen, int pass_every,
           double timeout_s, uint64_t *res)
{
    struct pump pp;
    pthread_t th;
    uint8_t buf[NATLINK_MTU];
    long got = 0;
    uint64_t lost = 0, odd = 0, st[4];
    double t0 = now_s(), deadline = t0 + timeout_s;
    int rc = 0;

    memset(&pp, 0, sizeof pp);
    pp.n = n;
    pp.fwd = fwd;
    pp.flen = flen;
    pp.pass = pass;
    pp.plen = plen;
    pp.pass_every = pass_every;
    sem_init(&pp.go, 0, 0);
    sem_init(&pp.done, 0, 0);
    {
        uint64_t v;
        ssize_t r = read(px.efd, &v, sizeof v);     /* start from a quiet eventfd */
        (void)r;
    }
    if (natlink_pending(&nl, NATLINK_WAN) != 0 || pthread_create(&th, NULL, pump_driver, &pp) != 0) {
        return -1;
    }
    while (got < n && rc == 0) {
        struct pollfd pfd = {px.efd, POLLIN, 0};
        long target = got + (n - got < NATLINK_RX_SLOTS ? n - got : NATLINK_RX_SLOTS);

        sem_post(&pp.go);
        if (poll(&pfd, 1, 2000) == 0) {
            lost++;
        } else {
            uint64_t v = 0;
            ssize_t r = read(px.efd, &v, sizeof v);
            odd += r != (ssize_t)sizeof v || v != 1;
        }
        if (wait_sem(&pp.done, 10000) != 0) {
            rc = -1;
            break;
        }
        for (int k; (k = natlink_recv(&nl, NATLINK_WAN, buf, sizeof buf)) != 0;) {
            if (k < 0) {
                rc = -1;
                break;
            }
            got++;
            while (natlink_tx_free(&nl) == 0 && now_s() < deadline) {
                sched_yield();      /* lwIP's thread, on another core, frees slots as it sends */
            }
            if (natlink_send(&nl, NATLINK_LAN, buf, k) != 0) {
                rc = -1;
                break;
            }
        }
        if (got != target || now_s() > deadline) {
            rc = -1;
        }
    }
    pp.abort = 1;
    pthread_join(th, NULL);
    sem_destroy(&pp.go);
    sem_destroy(&pp.done);
    for (;;) {                      /* until lwIP's thread has sent them all */
        h_out_stats(0, st);
        if (st[1] >= (uint64_t)got || now_s() > deadline) {
            break;
        }
        usleep(1000);
    }
    res[0] = (uint64_t)got;
    res[1] = (uint64_t)pp.injected;
    res[2] = (uint64_t)pp.passes;
    res[3] = lost;
    res[4] = odd;
    res[5] = (uint64_t)((now_s() - t0) * 1e6);
    return rc == 0 && st[1] >= (uint64_t)n ? 0 : -1;
}
