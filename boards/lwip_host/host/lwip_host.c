/* lwip_host: the network side of the lwIP host board (boards/lwip_host/README.md).
 *
 * Debian's lwIP owns the router's two addresses on two TAP netifs, as esp-lwip owns
 * them on the ESP32's Ethernet and Wi-Fi: it answers ARP and pings of its own
 * addresses. natlink (boards/natlink) claims the packets the router must see; this
 * program hands each to the firmware (MicroPython's unix port, boards/lwip_host/board.py)
 * as one fixed-size Unix datagram, and sends the firmware's packets out through lwIP
 * (ARP, framing) with natlink_send().
 *
 *   lwip_host --dir DIR --lan TAP,MAC,ADDR,MASK --wan TAP,MAC,ADDR,MASK,GATEWAY
 *             [--lan-mtu 1500] [--wan-mtu 1500]
 *             --tcp 0-1023,1024-49151 --udp 0-67,69-1023,1024-49151 --icmp 0-65535 [--dhcp]
 *             [--local TUN]
 *
 * --dhcp: the firmware serves DHCP on the LAN; natlink claims the LAN's DHCP requests.
 * --local: the board's own IP stack, the kernel behind that TUN device (localstack.c): it
 * gets the TCP lwIP would take for the firmware's sockets.
 * DIR holds the sockets: lan.host and wan.host (ours, bound here), lan.upy and wan.upy
 * (the firmware's), ctl (counters and ARP cache as JSON, for the REPL and the tests; and
 * "claims tcp=R udp=R icmp=R dhcp=0|1", R as on the command line: what natlink claims,
 * changed while it runs, answered {"claims": "ok"} or {"claims": "refused"}).
 * A datagram to the firmware is always DGRAM (NATLINK_MTU + 2) bytes: the packet,
 * padding, and its length big-endian in the last two bytes, so that MicroPython's
 * non-blocking readinto() returns exactly one datagram without allocating (a fixed size,
 * not the configured MTU: the firmware may change a link's MTU while it runs). From the
 * firmware: one bare packet per datagram, or "hello <size>" when a link opens.
 *
 * Threads: lwIP's tcpip thread; one reader per TAP (tap_reader), which calls
 * netif->input (natlink's wrapper, then guard_input below), as a NIC driver's receive
 * task does on the ESP32; and this program's main thread, which polls natlink's
 * eventfd, the link sockets, the control socket and a signalfd. SIGTERM or SIGINT:
 * natlink stops, then lwIP (the readers end, the netifs go down and away). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lwip/etharp.h"
#include "lwip/netif.h"
#include "lwip/tcpip.h"

#include "localstack.h"
#include "natlink.h"
#include "natlink_port_posix.h"

#define BATCH 64                /* firmware datagrams read per link and loop turn */
#define DGRAM (NATLINK_MTU + 2)
#define SNDBUF (2 << 20)        /* our queue towards the firmware: ~900 datagrams */
#define FRAME_MAX 1518          /* an Ethernet frame with a VLAN tag, without FCS */

static const char *const link_name[NATLINK_LINKS] = {"lan", "wan"};

/* One link as configured on the command line. */
struct link_cfg {
    char tap[IFNAMSIZ];
    uint8_t mac[6];
    uint8_t addr[4], mask[4], gw[4];
};

/* What this program adds to natlink's counters, per link. Each field has one writer
 * (the main thread; the link's TAP reader for not_for_lwip and rx_alloc_fails; lwIP's
 * thread for tap_tx_errors); the control reply reads them as aligned words. */
struct host_counters {
    uint32_t delivered;       /* datagrams the firmware's socket took */
    uint32_t deliver_drops;   /* its queue was full, or the firmware is not there */
    uint32_t from_fw;         /* packets from the firmware that natlink_send() queued */
    uint32_t send_refused;    /* natlink_send() refused one (too long, not IPv4) */
    uint32_t not_for_lwip;    /* frames natlink passed that lwIP would forward: dropped */
    uint32_t hellos;          /* the firmware opened the link */
    uint32_t bad_hellos;      /* ... with a datagram size other than ours */
    uint32_t rx_alloc_fails;  /* no memory for a received frame's pbuf */
    uint32_t tap_tx_errors;   /* the TAP refused a frame lwIP sent */
    uint32_t to_local;        /* packets handed to the board's own stack (--local) */
    uint32_t from_local;      /* its packets sent out through natlink */
    uint32_t local_drops;     /* ... that the TUN refused (its reader's) */
};

/* A TAP netif's driver state: the TAP's fd, its reader thread, lwIP's send buffer. */
struct tap {
    int fd;
    int link;
    pthread_t reader;
    uint8_t rbuf[FRAME_MAX];    /* the reader's */
    uint8_t wbuf[FRAME_MAX];    /* lwIP's thread's, for a pbuf chain */
    uint8_t lbuf[FRAME_MAX];    /* the reader's, for a frame going to the local stack */
};

/* natlink_t must outlive everything (lwIP may hold a TX slot after natlink_stop()),
 * and the netifs too: static, never freed. */
static natlink_t nl;
static natlink_posix_t px;
static natlink_port_t port;
static struct netif nif[NATLINK_LINKS];
static struct link_cfg lcfg[NATLINK_LINKS];
static struct host_counters hc[NATLINK_LINKS];
static struct tap taps[NATLINK_LINKS];
static int stop_efd = -1;       /* written once at shutdown: the TAP readers end */
static volatile int stopping;   /* set before shutdown: guard_input lets nothing in */
static uint32_t tx_waits;       /* loop turns that waited for a free natlink TX slot */
static uint32_t local_refused;  /* local stack packets from neither address, or natlink refused */

static int link_mtu[NATLINK_LINKS] = {1500, 1500};   /* lwIP's netifs' */
static const char *dir;
static natlink_ranges_t ranges[3];  /* tcp, udp, icmp */
static int lan_dhcp;                /* --dhcp */
static int sock[NATLINK_LINKS] = {-1, -1}, ctl = -1;
static struct sockaddr_un own_addr[NATLINK_LINKS], fw_addr[NATLINK_LINKS], ctl_addr;
static uint8_t dgram[DGRAM];        /* towards the firmware, reused for every packet */
static uint8_t pkt[2048];           /* from the firmware: longer than any valid packet */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("lwip_host: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- command line ---- */

static int parse_ip(const char *s, uint8_t out[4])
{
    unsigned a, b, c, d;
    char end;

    if (sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &end) != 4 || a > 255 || b > 255 || c > 255 || d > 255) {
        return -1;
    }
    out[0] = (uint8_t)a;
    out[1] = (uint8_t)b;
    out[2] = (uint8_t)c;
    out[3] = (uint8_t)d;
    return 0;
}

static int parse_mac(const char *s, uint8_t out[6])
{
    unsigned m[6];
    char end;

    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &end) != 6) {
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        if (m[i] > 255) {
            return -1;
        }
        out[i] = (uint8_t)m[i];
    }
    return 0;
}

/* "TAP,MAC,ADDR,MASK[,GATEWAY]" */
static void parse_link(const char *arg, struct link_cfg *l, int want_gw)
{
    char buf[256], *f[5], *save = NULL;
    int n = 0;

    snprintf(buf, sizeof buf, "%s", arg);
    for (char *t = strtok_r(buf, ",", &save); t != NULL && n < 5; t = strtok_r(NULL, ",", &save)) {
        f[n++] = t;
    }
    if (n != 4 + want_gw || strlen(f[0]) == 0 || strlen(f[0]) >= IFNAMSIZ || parse_mac(f[1], l->mac)
        || parse_ip(f[2], l->addr) || parse_ip(f[3], l->mask) || (want_gw && parse_ip(f[4], l->gw))) {
        die("bad link %s: want TAP,MAC,ADDR,MASK%s", arg, want_gw ? ",GATEWAY" : "");
    }
    strcpy(l->tap, f[0]);
}

/* "lo-hi,lo-hi,...": inclusive port (or ICMP id) ranges natlink claims, up to the end
 * of arg or a space. 0, or -1 when it is not that. */
static int read_ranges(const char *arg, natlink_ranges_t *rs)
{
    const char *p = arg;

    rs->n = 0;
    while (*p && *p != ' ') {
        unsigned lo, hi;
        int used;

        if (rs->n == NATLINK_MAX_RANGES || sscanf(p, "%u-%u%n", &lo, &hi, &used) != 2 || lo > hi || hi > 0xffff) {
            return -1;
        }
        rs->r[rs->n].lo = (uint16_t)lo;
        rs->r[rs->n].hi = (uint16_t)hi;
        rs->n++;
        p += used;
        if (*p == ',') {
            p++;
        } else if (*p && *p != ' ') {
            return -1;
        }
    }
    return 0;
}

static void parse_ranges(const char *arg, natlink_ranges_t *rs)
{
    if (read_ranges(arg, rs) != 0) {
        die("bad ranges %s: want at most %d of lo-hi, 0..65535", arg, NATLINK_MAX_RANGES);
    }
}

static void sock_path(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if ((size_t)snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name) >= sizeof a->sun_path) {
        die("socket path %s/%s is too long", dir, name);
    }
}

static void parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'}, {"lan-mtu", required_argument, NULL, 'L'},
        {"wan-mtu", required_argument, NULL, 'W'},
        {"lan", required_argument, NULL, 'l'}, {"wan", required_argument, NULL, 'w'},
        {"tcp", required_argument, NULL, 't'}, {"udp", required_argument, NULL, 'u'},
        {"icmp", required_argument, NULL, 'i'}, {"dhcp", no_argument, NULL, 'D'},
        {"local", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0},
    };
    int c, seen = 0;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; seen |= 1; break;
        case 'L': link_mtu[NATLINK_LAN] = atoi(optarg); break;
        case 'W': link_mtu[NATLINK_WAN] = atoi(optarg); break;
        case 'l': parse_link(optarg, &lcfg[NATLINK_LAN], 0); seen |= 2; break;
        case 'w': parse_link(optarg, &lcfg[NATLINK_WAN], 1); seen |= 4; break;
        case 't': parse_ranges(optarg, &ranges[0]); break;
        case 'u': parse_ranges(optarg, &ranges[1]); break;
        case 'i': parse_ranges(optarg, &ranges[2]); break;
        case 'D': lan_dhcp = 1; break;
        case 'o': local_open(optarg); break;
        default: die("usage: see the top of boards/lwip_host/host/lwip_host.c");
        }
    }
    if (seen != 7 || optind != argc) {
        die("--dir, --lan and --wan are required (boards/lwip_host/host/lwip_host.c)");
    }
    for (int i = 0; i < NATLINK_LINKS; i++) {
        if (link_mtu[i] < 576 || link_mtu[i] > NATLINK_MTU) {
            die("--%s-mtu %d: natlink carries 576..%d", link_name[i], link_mtu[i], NATLINK_MTU);
        }
    }
    for (int i = 0; i < NATLINK_LINKS; i++) {
        if (if_nametoindex(lcfg[i].tap) == 0) {
            die("no TAP device %s in this network namespace", lcfg[i].tap);
        }
    }
}

/* ---- the TAP netifs ----
 *
 * Not lwIP's own tapif (contrib/ports/unix, in Debian's liblwip.so): it reads every
 * frame into a PBUF_POOL pbuf, and Debian's liblwip 2.1.3 allocates those as 616-byte
 * blocks while pbuf_alloc() fills up to PBUF_POOL_BUFSIZE (1536) bytes into one (its
 * memp.c and pbuf.c disagree on the pool's size): every frame over 592 bytes wrote past
 * its block and corrupted the heap. This driver reads into a PBUF_RAM pbuf of the
 * frame's own size. It also keeps the link's MAC, never runs ifconfig, and reports
 * errors rather than exit(1). */

static void *tap_reader(void *arg)
{
    struct tap *t = (struct tap *)arg;
    struct netif *n = &nif[t->link];
    struct pollfd pfd[2] = {{t->fd, POLLIN, 0}, {stop_efd, POLLIN, 0}};

    for (;;) {
        ssize_t len = read(t->fd, t->rbuf, sizeof t->rbuf);
        struct pbuf *p;

        if (len < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "lwip_host: %s: read: %s\n", lcfg[t->link].tap, strerror(errno));
                return NULL;
            }
            if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
                return NULL;
            }
            if (pfd[1].revents) {
                return NULL;            /* shutting down */
            }
            continue;
        }
        if (len < 14) {
            continue;                   /* not even an Ethernet header */
        }
        p = pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_RAM);
        if (p == NULL) {
            hc[t->link].rx_alloc_fails++;
            continue;
        }
        memcpy(p->payload, t->rbuf, (size_t)len);   /* PBUF_RAM: one piece */
        if (n->input(p, n) != ERR_OK) {
            pbuf_free(p);               /* input refused it: the driver frees it */
        }
    }
}

/* lwIP's thread (or under its core lock): one whole frame out. */
static err_t tap_linkoutput(struct netif *n, struct pbuf *p)
{
    struct tap *t = (struct tap *)n->state;
    const void *frame = p->payload;

    if (p->tot_len > sizeof t->wbuf) {
        hc[t->link].tap_tx_errors++;
        return ERR_BUF;
    }
    if (p->len != p->tot_len) {         /* a chain: gather it */
        pbuf_copy_partial(p, t->wbuf, p->tot_len, 0);
        frame = t->wbuf;
    }
    if (write(t->fd, frame, p->tot_len) != (ssize_t)p->tot_len) {
        hc[t->link].tap_tx_errors++;    /* TAP down, or its queue full */
        return ERR_IF;
    }
    return ERR_OK;
}

static err_t tap_netif_init(struct netif *n)
{
    struct tap *t = (struct tap *)n->state;

    n->name[0] = link_name[t->link][0];
    n->name[1] = '0';
    n->output = etharp_output;          /* no output_ip6: lwIP sends no IPv6 here */
    n->linkoutput = tap_linkoutput;
    n->mtu = (u16_t)link_mtu[t->link];
    n->hwaddr_len = 6;
    memcpy(n->hwaddr, lcfg[t->link].mac, 6);
    n->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    return ERR_OK;
}

/* Attach to the existing TAP device (made by tools/topology.py); non-blocking. */
static void tap_open(struct tap *t, int link)
{
    struct ifreq ifr;

    t->link = link;
    t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (t->fd < 0) {
        die("/dev/net/tun: %s", strerror(errno));
    }
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, lcfg[link].tap, IFNAMSIZ);    /* NUL-terminated: parse_link */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(t->fd, TUNSETIFF, &ifr) != 0) {
        die("TUNSETIFF %s: %s", lcfg[link].tap, strerror(errno));
    }
}

/* ---- lwIP ---- */

/* True when lwIP keeps dst for itself (one of its addresses or broadcasts, multicast)
 * rather than forwarding it. */
static int for_lwip(const uint8_t *d)
{
    uint32_t a;

    memcpy(&a, d, 4);
    if ((d[0] & 0xf0) == 0xe0 || a == IPADDR_BROADCAST) {
        return 1;
    }
    for (int i = 0; i < NATLINK_LINKS; i++) {
        uint32_t addr = ip4_addr_get_u32(netif_ip4_addr(&nif[i]));
        uint32_t mask = ip4_addr_get_u32(netif_ip4_netmask(&nif[i]));
        if (a == addr || (((a ^ addr) & mask) == 0 && (a | mask) == IPADDR_BROADCAST)) {
            return 1;
        }
    }
    return 0;
}

/* Each TAP netif's input behind natlink's wrapper (and alone while natlink is stopped),
 * in that netif's TAP reader. Debian builds lwIP with IP_FORWARD=1 and
 * LWIP_IPV6_FORWARD=1, ESP-IDF without: lwIP must never route between LAN and WAN
 * behind the router's back (unfiltered, untranslated). So it gets ARP, IPv4 for
 * itself, and IPv4 frames too short to say where they go (it drops those itself);
 * IPv6 and IPv4 it would forward (what natlink passes on: UDP to port 68, frames to a
 * link-layer broadcast, and everything while natlink is stopped) are dropped here. */
static err_t guard_input(struct pbuf *p, struct netif *inp)
{
    uint8_t h[34];               /* Ethernet header + IPv4 header up to the destination */
    int link = inp == &nif[NATLINK_WAN];
    u16_t n = pbuf_copy_partial(p, h, sizeof h, 0);
    int keep = 0;

    if (!stopping && n >= 14) {
        unsigned type = (unsigned)h[12] << 8 | h[13];
        keep = type == 0x0806 || (type == 0x0800 && (n < sizeof h || for_lwip(h + 30)));
        if (keep && type == 0x0800 && n == sizeof h && h[23] == 6 && local_fd() >= 0) {
            u16_t len = pbuf_copy_partial(p, taps[link].lbuf, sizeof taps[link].lbuf, 0);
            int r = local_divert(link, taps[link].lbuf, len, lcfg[NATLINK_LAN].addr,
                                 lcfg[NATLINK_WAN].addr);
            if (r != 0) {
                (*(r > 0 ? &hc[link].to_local : &hc[link].local_drops))++;
                pbuf_free(p);
                return ERR_OK;
            }
        }
    }
    if (!keep) {
        hc[link].not_for_lwip++;
        pbuf_free(p);
        return ERR_OK;
    }
    return tcpip_input(p, inp);
}

static void tcpip_ready(void *arg)
{
    sem_post((sem_t *)arg);
}

static void lwip_start(void)
{
    sem_t up;
    ip4_addr_t a, m, g;

    sem_init(&up, 0, 0);
    tcpip_init(tcpip_ready, &up);
    while (sem_wait(&up) != 0) {
    }
    sem_destroy(&up);

    LOCK_TCPIP_CORE();
    for (int i = 0; i < NATLINK_LINKS; i++) {
        struct link_cfg *l = &lcfg[i];
        memcpy(&a.addr, l->addr, 4);
        memcpy(&m.addr, l->mask, 4);
        memcpy(&g.addr, l->gw, 4);
        /* Down until natlink runs; guard_input is the input natlink wraps. */
        if (netif_add(&nif[i], &a, &m, &g, &taps[i], tap_netif_init, guard_input) == NULL) {
            die("netif_add(%s) failed", l->tap);
        }
        netif_set_link_up(&nif[i]);
    }
    netif_set_default(&nif[NATLINK_WAN]);   /* lwIP's own replies to remote hosts */
    UNLOCK_TCPIP_CORE();
    for (int i = 0; i < NATLINK_LINKS; i++) {
        if (pthread_create(&taps[i].reader, NULL, tap_reader, &taps[i]) != 0) {
            die("pthread_create failed");
        }
    }
}

/* Both netifs up: lwIP announces its addresses (gratuitous ARP) and answers. */
static void lwip_up(void)
{
    LOCK_TCPIP_CORE();
    for (int i = 0; i < NATLINK_LINKS; i++) {
        netif_set_up(&nif[i]);
    }
    UNLOCK_TCPIP_CORE();
}

static void barrier_cb(void *arg)
{
    sem_post((sem_t *)arg);
}

/* lwIP has no deinit: the TAP readers end, its netifs go down and away, its own
 * thread ends with the process. */
static void lwip_stop(void)
{
    sem_t s;
    uint64_t one = 1;

    if (write(stop_efd, &one, sizeof one) == sizeof one) {
        for (int i = 0; i < NATLINK_LINKS; i++) {
            pthread_join(taps[i].reader, NULL);
        }
    }
    /* Frames queued for lwIP's thread before the readers ended: handled while the
     * netifs still exist. */
    sem_init(&s, 0, 0);
    if (tcpip_callback(barrier_cb, &s) == ERR_OK) {
        while (sem_wait(&s) != 0) {
        }
    }
    sem_destroy(&s);
    LOCK_TCPIP_CORE();
    for (int i = 0; i < NATLINK_LINKS; i++) {
        netif_set_down(&nif[i]);
        netif_remove(&nif[i]);  /* frees ARP entries and the TX slots they queue */
    }
    UNLOCK_TCPIP_CORE();
    for (int i = 0; i < NATLINK_LINKS; i++) {
        close(taps[i].fd);
    }
    close(stop_efd);
}

static void natlink_begin(void)
{
    natlink_config_t c;

    memset(&c, 0, sizeof c);
    c.netif[NATLINK_LAN] = &nif[NATLINK_LAN];
    c.netif[NATLINK_WAN] = &nif[NATLINK_WAN];
    /* Static here; a board with a DHCP client calls natlink_set_wan_addr() on change. */
    memcpy(c.wan_addr, lcfg[NATLINK_WAN].addr, 4);
    c.tcp = ranges[0];
    c.udp = ranges[1];
    c.icmp = ranges[2];
    c.lan_dhcp = (uint8_t)lan_dhcp;
    if (natlink_start(&nl, &c) != 0) {
        die("natlink_start failed");
    }
}

/* ---- the firmware's sockets ---- */

static int bind_dgram(struct sockaddr_un *a)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int size = SNDBUF;

    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }
    unlink(a->sun_path);        /* a stale one from a killed run */
    if (bind(fd, (struct sockaddr *)a, sizeof *a) != 0) {
        die("bind %s: %s", a->sun_path, strerror(errno));
    }
    /* A unix datagram counts against its sender's buffer until read: room for bursts
     * while MicroPython is busy (SNDBUFFORCE as root, else up to wmem_max). */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
    return fd;
}

static void sockets_open(void)
{
    for (int i = 0; i < NATLINK_LINKS; i++) {
        char name[16];
        snprintf(name, sizeof name, "%s.host", link_name[i]);
        sock_path(&own_addr[i], name);
        snprintf(name, sizeof name, "%s.upy", link_name[i]);
        sock_path(&fw_addr[i], name);
        sock[i] = bind_dgram(&own_addr[i]);
    }
    sock_path(&ctl_addr, "ctl");
    ctl = bind_dgram(&ctl_addr);
}

static void sockets_close(void)
{
    for (int i = 0; i < NATLINK_LINKS; i++) {
        close(sock[i]);
        unlink(own_addr[i].sun_path);
    }
    close(ctl);
    unlink(ctl_addr.sun_path);
}

/* Claimed packets of `link` to the firmware, at most `budget`; returns how many are
 * still waiting. A full firmware queue drops the packet, as a full NIC ring would. */
static int deliver(int link, int budget)
{
    while (budget-- > 0) {
        int n = natlink_recv(&nl, link, dgram, NATLINK_MTU);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            continue;               /* longer than the MTU: natlink counted it in rx_drops */
        }
        dgram[DGRAM - 2] = (uint8_t)(n >> 8);
        dgram[DGRAM - 1] = (uint8_t)n;
        if (sendto(sock[link], dgram, DGRAM, MSG_DONTWAIT | MSG_NOSIGNAL,
                   (struct sockaddr *)&fw_addr[link], sizeof fw_addr[link]) == DGRAM) {
            hc[link].delivered++;
        } else {
            hc[link].deliver_drops++;   /* EAGAIN: full; ENOENT/ECONNREFUSED: not running */
        }
    }
    return natlink_pending(&nl, link);
}

/* "hello <size>": the firmware opened the link; its datagrams must be our size. */
static void hello(int link, const uint8_t *d, ssize_t n)
{
    char text[32];
    int size = 0;

    snprintf(text, sizeof text, "%.*s", (int)(n < 31 ? n : 31), (const char *)d);
    if (sscanf(text, "hello %d", &size) == 1 && size == DGRAM) {
        hc[link].hellos++;
        fprintf(stderr, "lwip_host: the firmware opened %s\n", link_name[link]);
    } else {
        hc[link].bad_hellos++;
        fprintf(stderr, "lwip_host: %s: the firmware says \"%s\"; expected \"hello %d\"\n",
                link_name[link], text, DGRAM);
    }
}

/* The firmware's packets on `link` out through natlink, while TX slots last. Returns 1
 * when it stopped for want of a slot (the socket keeps the rest). */
static int from_firmware(int link)
{
    for (int i = 0; i < BATCH; i++) {
        ssize_t n;

        if (natlink_tx_free(&nl) == 0) {
            return 1;
        }
        n = recv(sock[link], pkt, sizeof pkt, MSG_DONTWAIT);
        if (n < 0) {
            return 0;
        }
        if (n > 0 && (pkt[0] >> 4) != 4) {
            hello(link, pkt, n);
        } else if (natlink_send(&nl, link, pkt, (int)n) == 0) {
            hc[link].from_fw++;
        } else {
            hc[link].send_refused++;
        }
    }
    return 0;
}

/* The local stack's packets out through natlink, by their source: from the LAN address
 * on the LAN, from the WAN address on the WAN; while TX slots last. Returns 1 when it
 * stopped for want of a slot (the TUN keeps the rest). */
static int from_local(void)
{
    for (int i = 0; i < BATCH; i++) {
        ssize_t n;
        int link;

        if (natlink_tx_free(&nl) == 0) {
            return 1;
        }
        n = local_read(pkt, sizeof pkt);
        if (n == 0) {
            return 0;
        }
        link = memcmp(pkt + 12, lcfg[NATLINK_LAN].addr, 4) == 0 ? NATLINK_LAN
             : memcmp(pkt + 12, lcfg[NATLINK_WAN].addr, 4) == 0 ? NATLINK_WAN : -1;
        if (link >= 0 && (pkt[0] >> 4) == 4 && natlink_send(&nl, link, pkt, (int)n) == 0) {
            hc[link].from_local++;
        } else {
            local_refused++;
        }
    }
    return 0;
}

/* ---- control: counters and lwIP's ARP cache, as one JSON object ---- */

struct out {
    char *p;
    size_t left;
};

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->p, o->left, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < o->left) {
        o->p += n;
        o->left -= (size_t)n;
    } else {
        o->left = 0;                /* truncated: the reader's json.loads says so */
    }
}

/* "claims tcp=R udp=R icmp=R dhcp=0|1" (the firmware's board.py, when its configuration
 * changes): natlink_set_claims(). 0, or -1 when the request is not that. */
static int set_claims(const char *req)
{
    static const char *const key[3] = {" tcp=", " udp=", " icmp="};
    natlink_config_t c;
    const char *d = strstr(req, " dhcp=");

    memset(&c, 0, sizeof c);
    for (int i = 0; i < 3; i++) {
        const char *at = strstr(req, key[i]);
        if (at == NULL || read_ranges(at + strlen(key[i]), i == 0 ? &c.tcp : i == 1 ? &c.udp : &c.icmp) != 0) {
            return -1;
        }
    }
    if (d == NULL || (d[6] != '0' && d[6] != '1')) {
        return -1;
    }
    c.lan_dhcp = d[6] == '1';
    return natlink_set_claims(&nl, &c);
}

static void control(void)
{
    char req[512], reply[4096];
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    struct out o = {reply, sizeof reply};
    ssize_t n = recvfrom(ctl, req, sizeof req - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);

    if (n < 0) {
        return;
    }
    req[n] = 0;
    if (strncmp(req, "claims ", 7) == 0) {
        int ok = set_claims(req) == 0;
        if (ok) {
            fprintf(stderr, "lwip_host: natlink claims %s\n", req + 7);
        }
        put(&o, "{\"claims\": \"%s\"}", ok ? "ok" : "refused");
        sendto(ctl, reply, sizeof reply - o.left, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&from, flen);
        return;
    }
    put(&o, "{");
    for (int i = 0; i < NATLINK_LINKS; i++) {
        natlink_counters_t c;
        struct host_counters *h = &hc[i];
        natlink_get_counters(&nl, i, &c);
        put(&o, "\"%s\": {\"claimed\": %u, \"passed\": %u, \"rx_drops\": %u, \"received\": %u, "
            "\"sent\": %u, \"tx_full\": %u, \"tx_errors\": %u, \"kick_fails\": %u, "
            "\"delivered\": %u, \"deliver_drops\": %u, \"from_fw\": %u, \"send_refused\": %u, "
            "\"not_for_lwip\": %u, \"hellos\": %u, \"bad_hellos\": %u, \"rx_alloc_fails\": %u, "
            "\"tap_tx_errors\": %u, \"to_local\": %u, \"from_local\": %u, \"local_drops\": %u}, ",
            link_name[i], c.claimed, c.passed, c.rx_drops, c.received, c.sent, c.tx_full,
            c.tx_errors, c.kick_fails, h->delivered, h->deliver_drops, h->from_fw,
            h->send_refused, h->not_for_lwip, h->hellos, h->bad_hellos, h->rx_alloc_fails,
            h->tap_tx_errors, h->to_local, h->from_local, h->local_drops);
    }
    put(&o, "\"tx_waits\": %u, \"tx_free\": %d, \"local_refused\": %u, \"arp\": [", tx_waits,
        natlink_tx_free(&nl), local_refused);
    LOCK_TCPIP_CORE();              /* lwIP's ARP table: its thread's, or under its lock */
    for (size_t i = 0, first = 1; i < ARP_TABLE_SIZE; i++) {
        ip4_addr_t *ip;
        struct netif *n;
        struct eth_addr *mac;
        if (etharp_get_entry(i, &ip, &n, &mac)) {
            const uint8_t *b = (const uint8_t *)&ip->addr, *e = mac->addr;
            put(&o, "%s[\"%s\", \"%u.%u.%u.%u\", \"%02x:%02x:%02x:%02x:%02x:%02x\"]", first ? "" : ", ",
                n == &nif[NATLINK_WAN] ? "wan" : "lan", b[0], b[1], b[2], b[3],
                e[0], e[1], e[2], e[3], e[4], e[5]);
            first = 0;
        }
    }
    UNLOCK_TCPIP_CORE();
    put(&o, "]}");
    sendto(ctl, reply, sizeof reply - o.left, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&from, flen);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    enum { P_EVENT, P_SIG, P_CTL, P_LOCAL, P_LAN, P_WAN, P_N };
    struct pollfd pfd[P_N];
    sigset_t sigs;
    int sfd, backlog = 0, tx_blocked = 0, spins = 0;

    parse_args(argc, argv);
    /* Blocked before any thread starts (lwIP's and the TAP readers inherit the mask):
     * the signals arrive only through the signalfd, in the main thread. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        die("signalfd: %s", strerror(errno));
    }
    sockets_open();
    stop_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (stop_efd < 0) {
        die("eventfd: %s", strerror(errno));
    }
    for (int i = 0; i < NATLINK_LINKS; i++) {
        tap_open(&taps[i], i);
    }
    if (natlink_posix_init(&px, &port) != 0 || natlink_init(&nl, &port) != 0) {
        die("natlink_init failed");
    }
    lwip_start();
    /* natlink first, then the netifs up: lwIP never runs up without natlink (and
     * guard_input keeps it from forwarding even then). */
    natlink_begin();
    lwip_up();
    printf("lwip_host: ready, LAN %s WAN %s, sockets in %s\n", lcfg[0].tap, lcfg[1].tap, dir);
    fflush(stdout);

    pfd[P_EVENT] = (struct pollfd){px.efd, POLLIN, 0};
    pfd[P_SIG] = (struct pollfd){sfd, POLLIN, 0};
    pfd[P_CTL] = (struct pollfd){ctl, POLLIN, 0};
    for (;;) {
        int timeout = backlog ? 0 : -1;

        /* No TX slot free: leave the firmware's datagrams queued in the sockets (their
         * senders see a full queue, as behind a busy NIC) and let lwIP's thread send. */
        for (int i = 0; i < NATLINK_LINKS; i++) {
            pfd[P_LAN + i] = (struct pollfd){sock[i], (short)(tx_blocked ? 0 : POLLIN), 0};
        }
        pfd[P_LOCAL] = (struct pollfd){local_fd(), (short)(tx_blocked ? 0 : POLLIN), 0};
        if (tx_blocked) {
            tx_waits++;
            /* lwIP's thread frees a slot within microseconds; yield to it, and sleep
             * only if it takes long. */
            timeout = ++spins < 1000 ? 0 : 1;
            sched_yield();
        }
        if (poll(pfd, P_N, timeout) < 0 && errno != EINTR) {
            die("poll: %s", strerror(errno));
        }
        if (pfd[P_SIG].revents) {
            break;
        }
        if (pfd[P_EVENT].revents) {
            uint64_t v;
            ssize_t r = read(px.efd, &v, sizeof v);   /* re-arm, then drain: edge-triggered */
            (void)r;
        }
        backlog = 0;
        for (int i = 0; i < NATLINK_LINKS; i++) {
            backlog |= deliver(i, 2 * NATLINK_RX_SLOTS);
        }
        if (natlink_tx_free(&nl) > 0) {
            tx_blocked = 0;
            spins = 0;
            for (int i = 0; i < NATLINK_LINKS; i++) {
                tx_blocked |= from_firmware(i);
            }
            tx_blocked |= from_local();
        } else {
            tx_blocked = 1;
        }
        if (pfd[P_CTL].revents) {
            control();
        }
    }

    fprintf(stderr, "lwip_host: stopping\n");
    stopping = 1;                   /* nothing reaches lwIP any more ... */
    if (natlink_stop(&nl) != 0) {   /* ... natlink hands the netifs back ... */
        fprintf(stderr, "lwip_host: natlink_stop failed\n");
    }
    lwip_stop();                    /* ... and lwIP: readers, netifs, TAPs */
    sockets_close();
    close(sfd);
    /* natlink's eventfd and mutex stay until the process ends (they cost nothing and
     * outlive every thread that could still touch them). */
    return 0;
}
