/* natlink: hands the IPv4 packets an lwIP board must forward to a router that runs
 * outside lwIP (the Python router), and sends the router's packets back out through
 * lwIP's own output path. Depends on lwIP alone; the same source builds against
 * ESP-IDF's esp-lwip (2.2.0-esp in ESP-IDF v5.5, 2.1.3-esp in v5.3) and Debian's
 * liblwip 2.1.3. See README.md. */
#ifndef NATLINK_H
#define NATLINK_H

#include <stdint.h>

#include "lwip/opt.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcpip.h"

#if !LWIP_SUPPORT_CUSTOM_PBUF
#error "natlink sends from its own buffers as custom pbufs: needs LWIP_SUPPORT_CUSTOM_PBUF"
#endif

/* Sizes, fixed at build time: all the memory natlink uses is inside natlink_t. */
#ifndef NATLINK_MTU
#define NATLINK_MTU 1500          /* largest IPv4 packet carried either way */
#endif
#ifndef NATLINK_RX_SLOTS
#define NATLINK_RX_SLOTS 16       /* per link */
#endif
#ifndef NATLINK_TX_SLOTS
#define NATLINK_TX_SLOTS 16       /* shared by both links */
#endif
#define NATLINK_MAX_RANGES 8      /* claimed ranges per protocol */

#if NATLINK_TX_SLOTS > 255
#error "TX slot indexes are bytes"
#endif

enum { NATLINK_LAN = 0, NATLINK_WAN = 1, NATLINK_LINKS = 2 };

/* Platform interface: the only things that differ between the host and the ESP32. */
typedef struct natlink_port {
    void *ctx;
    /* A mutex. Held for short sections (at most one packet copy) from the netif
     * drivers' threads, lwIP's thread and the consumer; never from an ISR. */
    void (*lock)(void *ctx);
    void (*unlock)(void *ctx);
    /* Ring `link` went from empty to non-empty. Called from a netif driver's thread,
     * outside the lock. Must not block and must not call back into natlink: write an
     * eventfd, give a semaphore, or mp_sched_schedule() a Python callback. The
     * consumer, once woken, reads until natlink_recv() returns 0 (edge-triggered). */
    void (*notify)(void *ctx, int link);
} natlink_port_t;

typedef struct natlink_range {
    uint16_t lo, hi;              /* inclusive, host byte order */
} natlink_range_t;

typedef struct natlink_ranges {
    uint8_t n;                    /* 0..NATLINK_MAX_RANGES */
    natlink_range_t r[NATLINK_MAX_RANGES];
} natlink_ranges_t;

typedef struct natlink_config {
    struct netif *netif[NATLINK_LINKS];   /* [NATLINK_LAN], [NATLINK_WAN] */
    uint8_t wan_addr[4];          /* as on the wire; 0.0.0.0 claims nothing by rule 2/3 */
    natlink_ranges_t tcp;         /* destination ports claimed on the WAN address */
    natlink_ranges_t udp;
    natlink_ranges_t icmp;        /* ICMP query ids claimed on the WAN address */
    uint8_t lan_dhcp;             /* 1: the router serves DHCP on the LAN; its requests
                                   * (UDP to port 67, to the limited broadcast or the LAN
                                   * netif's address) are claimed there */
} natlink_config_t;

/* Per link. Each field is written under the lock or by one thread only (the netif's
 * driver, or lwIP's thread); all are aligned words, so a reader never sees one torn. */
typedef struct natlink_counters {
    uint32_t claimed;     /* packets taken from lwIP (then queued, or dropped below) */
    uint32_t passed;      /* frames handed on to lwIP's own input untouched */
    uint32_t rx_drops;    /* claimed but the ring was full (or larger than NATLINK_MTU) */
    uint32_t received;    /* packets read by natlink_recv() */
    uint32_t sent;        /* packets the netif's output accepted (sent, or queued on ARP) */
    uint32_t tx_full;     /* natlink_send() refused: no free TX slot */
    uint32_t tx_errors;   /* dropped in lwIP's thread: down, no address/route, too big, output error */
    uint32_t kick_fails;  /* lwIP's mbox was full; the queue goes out at the next send */
} natlink_counters_t;

/* Private from here: exposed so natlink_t can be allocated statically. */
typedef struct natlink natlink_t;

typedef struct natlink_rx_slot {
    uint16_t len;
    uint8_t data[NATLINK_MTU];
} natlink_rx_slot_t;

/* A TX slot is a pbuf itself: the packet is copied once, into mem, and lwIP sends
 * it from there; lwIP hands the slot back through pc.custom_free_function when the
 * last reference goes (at once, or after ARP resolves or times out). */
#define NATLINK_TX_HEADROOM LWIP_MEM_ALIGN_SIZE(PBUF_LINK)
typedef struct natlink_tx_slot {
    struct pbuf_custom pc;        /* first: pbuf_add_header needs mem after the pbuf */
    natlink_t *nl;
    uint16_t len;
    uint8_t link;
    uint8_t state;
    _Alignas(MEM_ALIGNMENT) uint8_t mem[NATLINK_TX_HEADROOM + NATLINK_MTU];
} natlink_tx_slot_t;

typedef struct natlink_rx_ring {
    unsigned head, tail;          /* free-running: head - tail packets queued */
    natlink_rx_slot_t slot[NATLINK_RX_SLOTS];
} natlink_rx_ring_t;

struct natlink {
    natlink_port_t port;
    natlink_config_t cfg;
    uint32_t wan;                 /* cfg.wan_addr as an lwIP u32 (network order) */
    /* Odd while natlink_set_claims() rewrites cfg's claims (a sequence lock: the
     * drivers' threads read the claims without the lock, and read again under it
     * when the count moved). */
    volatile uint32_t claims_seq;
    volatile int running;
    natlink_counters_t cnt[NATLINK_LINKS];
    natlink_rx_ring_t rx[NATLINK_LINKS];
    /* TX: a free stack of slot indexes and a FIFO of filled ones, under port.lock. */
    struct tcpip_callback_msg *kick;  /* allocated once, posted without allocating */
    int kick_posted;
    uint32_t bad_frees;           /* TX slots freed twice by lwIP: must stay 0 */
    unsigned nfree, qhead, qtail;
    uint8_t freelist[NATLINK_TX_SLOTS];
    uint8_t queue[NATLINK_TX_SLOTS];
    natlink_tx_slot_t tx[NATLINK_TX_SLOTS];
};

/* Once, on memory that stays valid for the life of the program (lwIP may still hold
 * a TX slot for a few seconds after natlink_stop()). 0 or -1. */
int natlink_init(natlink_t *nl, const natlink_port_t *port);

/* From an application thread (not lwIP's): apply cfg, empty the RX rings, zero the
 * counters, wrap both netifs' input (Ethernet netifs, or netifs whose input gets bare
 * IPv4 packets, such as PPP's). 0, or -1 (bad config, already running, out of memory
 * for the one callback message). */
int natlink_start(natlink_t *nl, const natlink_config_t *cfg);

/* lwIP's thread, from its IPv4 input hook: a bare IPv4 packet that arrived on an
 * IP-only netif (PPP). 1: claimed, p freed; 0: lwIP goes on with it. */
int natlink_ip4_input(struct pbuf *p, struct netif *inp);

/* From an application thread: restore the netifs' input; queued TX packets are dropped. */
int natlink_stop(natlink_t *nl);

/* The WAN address changed (DHCP): rules 2 and 3 follow it from the next packet. */
void natlink_set_wan_addr(natlink_t *nl, const uint8_t addr[4]);

/* The router's claims changed while it runs (a port forward added): cfg's tcp, udp,
 * icmp and lan_dhcp take effect from the next packet (its netifs and wan_addr are not
 * read). Any thread; never blocks on lwIP. 0, or -1 (bad ranges: nothing changes). */
int natlink_set_claims(natlink_t *nl, const natlink_config_t *cfg);

/* From an application thread: wrap again the input of a netif its driver removed and
 * added back while natlink runs (ESP-IDF does when an access point's settings change:
 * netif_add() sets input to tcpip_input). The number of netifs wrapped again (0: none
 * had lost it), or -1 when natlink is not running. */
int natlink_rehook(natlink_t *nl);

/* Consumer: copy the oldest packet claimed on `link` (the bare IPv4 packet, Ethernet
 * header and padding removed) into buf. Its length; 0 if none; -1 if cap is too small
 * (the packet is dropped and counted in rx_drops) or link is bad. Never blocks. */
int natlink_recv(natlink_t *nl, int link, uint8_t *buf, int cap);

/* Packets waiting on `link` (for a poll()-style readiness check). */
int natlink_pending(natlink_t *nl, int link);

/* Consumer: queue an IPv4 packet to leave through `link`'s netif towards its next hop
 * (the destination when on the netif's subnet or a broadcast/multicast, else the
 * netif's gateway); lwIP's ARP resolves it. Copies pkt; never blocks. 0 when queued,
 * -1 when refused (bad arguments, not running, no free slot: counted in tx_full). */
int natlink_send(natlink_t *nl, int link, const uint8_t *pkt, int n);

/* A consistent snapshot of one link's counters. */
void natlink_get_counters(natlink_t *nl, int link, natlink_counters_t *out);

/* TX slots not held by the queue or by lwIP. */
int natlink_tx_free(natlink_t *nl);

#endif /* NATLINK_H */
