/* natlink: the C core between lwIP and the Python router (README.md).
 *
 * In:  each wrapped netif's input sees every frame before lwIP does; claimed IPv4
 *      packets are copied into a per-link ring and their pbuf freed, the rest go on
 *      to lwIP untouched.
 * Out: natlink_send() copies a packet into a TX slot; lwIP's thread sends the slot,
 *      as a custom pbuf, through the netif's own output (etharp_output: ARP, framing).
 *
 * Depends on lwIP alone. Portable bits (a mutex, the wake-up) come in natlink_port_t. */
#include <stddef.h>
#include <string.h>

#include "natlink.h"
#include "lwip/ip4_addr.h"
#include "lwip/priv/tcpip_priv.h"   /* tcpip_api_call(): what netifapi uses */

/* Frames on an Ethernet netif: [ETH_PAD_SIZE][dst 6][src 6][type 2][IPv4...]. A netif
 * without Ethernet (PPP: NETIF_FLAG_ETHARP and _ETHERNET clear) hands its input the
 * bare IPv4 packet: its link header is 0 bytes. */
#define ETH_OFF  ETH_PAD_SIZE
#define L2_HLEN  (ETH_PAD_SIZE + 14)
/* The classifier reads at most this far into a packet: IP header (60) + ICMP header
 * (8) + quoted IP header (60) + the quoted 64 bits (8), RFC 792. */
#define IP_READ_MAX 136
#define HDR_MAX (L2_HLEN + IP_READ_MAX)

enum { PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17 };
enum { SLOT_FREE, SLOT_QUEUED, SLOT_LWIP };

_Static_assert(offsetof(natlink_tx_slot_t, pc) == 0 && offsetof(struct pbuf_custom, pbuf) == 0,
               "lwIP's free callback gets the pbuf: it must be the slot's address");
/* ethernet_output() prepends the link header with pbuf_add_header(), which only lets
 * the payload grow down to the end of the struct pbuf (pbuf.c, SIZEOF_STRUCT_PBUF). */
_Static_assert(offsetof(natlink_tx_slot_t, mem) >= LWIP_MEM_ALIGN_SIZE(sizeof(struct pbuf)),
               "TX headroom would overlap the pbuf");
_Static_assert(NATLINK_TX_HEADROOM + NATLINK_MTU <= 0xffff, "pbuf lengths are u16");

/* ---- byte helpers: packets are byte arrays (the IP header sits at offset 14 of an
 * aligned frame, so no 32-bit loads through casts: Xtensa faults on those) ---- */

static inline unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* An address as lwIP stores it (network byte order in memory). */
static inline uint32_t addr_at(const uint8_t *p)
{
    uint32_t a;
    memcpy(&a, p, 4);
    return a;
}

static int hdr_checksum_ok(const uint8_t *ip, int ihl)
{
    uint32_t s = 0;
    for (int i = 0; i < ihl; i += 2) {
        s += be16(ip + i);
    }
    while (s >> 16) {
        s = (s & 0xffff) + (s >> 16);
    }
    return s == 0xffff;             /* RFC 791 3.1, RFC 1071 */
}

static int in_ranges(const natlink_ranges_t *rs, unsigned v)
{
    for (unsigned i = 0; i < rs->n; i++) {
        if (v >= rs->r[i].lo && v <= rs->r[i].hi) {
            return 1;
        }
    }
    return 0;
}

static const natlink_ranges_t *port_ranges(const natlink_t *nl, unsigned proto)
{
    return proto == PROTO_TCP ? &nl->cfg.tcp : &nl->cfg.udp;
}

/* ICMP queries (RFC 792, 950): echo 8/0, timestamp 13/14, information 15/16, mask 17/18. */
static int icmp_is_query(unsigned t) { return t == 0 || (t >= 13 && t <= 18) || t == 8; }
static int icmp_is_query_reply(unsigned t) { return t == 0 || t == 14 || t == 16 || t == 18; }
/* Errors that quote the offending packet: unreachable, source quench, redirect, time
 * exceeded, parameter problem (RFC 792; what the router translates, RFC 5508). */
static int icmp_is_error(unsigned t) { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12; }

/* ---- the claim rules ---- */

/* lwIP keeps a destination for itself (or drops it) rather than forwarding it: 0/8
 * (RFC 1122 3.2.1.3), multicast (RFC 1112), the limited broadcast, any up netif's
 * address or directed broadcast (RFC 919, 922). Mirrors ip4_input()'s "for us" test
 * over every netif, not only the two natlink wraps. Reads netif_list from a driver
 * thread: netifs must not be removed while natlink runs, and an address is a single
 * aligned 32-bit word, so a concurrent DHCP update is seen whole, old or new. */
static int kept_by_lwip(const uint8_t *d)
{
    uint32_t a = addr_at(d);
    struct netif *n;

    if (d[0] == 0 || (d[0] & 0xf0) == 0xe0 || a == IPADDR_BROADCAST) {
        return 1;
    }
    NETIF_FOREACH(n) {
        uint32_t addr = ip4_addr_get_u32(netif_ip4_addr(n));
        uint32_t mask = ip4_addr_get_u32(netif_ip4_netmask(n));
        if (!netif_is_up(n) || addr == 0) {
            continue;
        }
        if (a == addr) {
            return 1;
        }
        if ((n->flags & NETIF_FLAG_BROADCAST) && ((a ^ addr) & mask) == 0 && (a | mask) == IPADDR_BROADCAST) {
            return 1;
        }
    }
    return 0;
}

/* Rule 3: an ICMP error about a packet the router sent from the WAN address. */
static int claims_icmp_error(const natlink_t *nl, const uint8_t *q, int qlen)
{
    int qihl;
    const uint8_t *l4;

    if (qlen < 20 || (q[0] >> 4) != 4) {
        return 0;
    }
    qihl = (q[0] & 15) * 4;
    if (qihl < 20 || qlen < qihl + 8 || addr_at(q + 12) != nl->wan) {
        return 0;                   /* RFC 792: the quote is the IP header + 64 bits */
    }
    if (be16(q + 6) & 0x1fff) {
        return 0;                   /* quotes a non-first fragment: no ports in it */
    }
    l4 = q + qihl;
    switch (q[9]) {
    case PROTO_TCP:
    case PROTO_UDP:
        return in_ranges(port_ranges(nl, q[9]), be16(l4));          /* its source port */
    case PROTO_ICMP:
        return icmp_is_query(l4[0]) && in_ranges(&nl->cfg.icmp, be16(l4 + 4));
    }
    return 0;
}

/* Rules 2 and 3: a packet to the WAN address, from either side (LAN hosts hairpin). */
static int claims_for_wan(const natlink_t *nl, const uint8_t *ip, int ihl, int tot)
{
    const uint8_t *l4 = ip + ihl;
    int l4len = tot - ihl;

    /* Every fragment (MF or offset, RFC 791 3.2): only the first has ports, and the
     * router needs them all to reassemble or forward; ESP-IDF builds lwIP without
     * IPv4 reassembly by default (CONFIG_LWIP_IP4_REASSEMBLY=n) anyway. */
    if (be16(ip + 6) & 0x3fff) {
        return 1;
    }
    switch (ip[9]) {
    case PROTO_TCP:
        return l4len >= 20 && in_ranges(&nl->cfg.tcp, be16(l4 + 2));
    case PROTO_UDP:
        return l4len >= 8 && in_ranges(&nl->cfg.udp, be16(l4 + 2));
    case PROTO_ICMP:
        if (l4len < 8) {
            return 0;
        }
        if (icmp_is_query_reply(l4[0])) {
            return in_ranges(&nl->cfg.icmp, be16(l4 + 4));
        }
        if (icmp_is_error(l4[0])) {
            return claims_icmp_error(nl, l4 + 8, l4len - 8);
        }
        return 0;
    }
    return 0;
}

/* Rule 0, when the router serves DHCP on the LAN (cfg.lan_dhcp): a client's request,
 * to the limited broadcast before it has an address (RFC 2131 4.1) or to the LAN
 * netif's own address once it has one (renewals, RFC 2131 4.3.2), unfragmented. */
static int claims_dhcp_request(const natlink_t *nl, const uint8_t *ip, int ihl, int tot)
{
    uint32_t dst = addr_at(ip + 16);
    uint32_t me = ip4_addr_get_u32(netif_ip4_addr(nl->cfg.netif[NATLINK_LAN]));

    return ip[9] == PROTO_UDP && !(be16(ip + 6) & 0x3fff) && tot - ihl >= 8
           && be16(ip + ihl + 2) == 67 && (dst == IPADDR_BROADCAST || (me != 0 && dst == me));
}

/* The IPv4 packet's length if natlink claims the frame, else 0. f holds the first hl
 * bytes of a flen-byte frame whose link header is l2 bytes (L2_HLEN or 0),
 * hl >= min(flen, HDR_MAX), that arrived on `link`. Anything malformed is left to
 * lwIP, which drops it (or, for its own traffic, judges it) itself. */
static int classify(const natlink_t *nl, const uint8_t *f, int hl, int flen, int l2, int link)
{
    const uint8_t *ip = f + l2;
    int ihl, tot;

    if (hl < l2 + 20 || (l2 && (f[ETH_OFF + 12] != 0x08 || f[ETH_OFF + 13] != 0x00))) {
        return 0;                   /* short, or not IPv4: ARP, IPv6, 802.1Q tags... */
    }
    ihl = (ip[0] & 15) * 4;
    tot = (int)be16(ip + 2);
    /* RFC 1812 5.2.2: a router checks version, header length, total length, checksum.
     * tot <= flen - l2; the frame may be longer (Ethernet pads to 60 bytes). */
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || tot > flen - l2 || !hdr_checksum_ok(ip, ihl)) {
        return 0;
    }
    if (link == NATLINK_LAN && nl->cfg.lan_dhcp && claims_dhcp_request(nl, ip, ihl, tot)) {
        return tot;
    }
    if (nl->wan != 0 && addr_at(ip + 16) == nl->wan) {
        return claims_for_wan(nl, ip, ihl, tot) ? tot : 0;
    }
    /* Rule 1: a packet to forward. Inbound packets to inside hosts are claimed too:
     * the router, not lwIP, filters them. */
    if (kept_by_lwip(ip + 16)) {
        return 0;
    }
    if (l2 && (f[ETH_OFF] & 1)) {
        return 0;                   /* link-layer broadcast/multicast: RFC 1812 5.3.4 */
    }
    /* lwIP accepts UDP to the DHCP client port whatever the destination: a DHCP reply
     * goes to the offered address before the netif has it (RFC 2131 4.1, RFC 1542
     * 3.1.1; ip4_input's IP_ACCEPT_LINK_LAYER_ADDRESSING). */
    if (ip[9] == PROTO_UDP && !(be16(ip + 6) & 0x1fff) && tot - ihl >= 8 && be16(ip + ihl + 2) == 68) {
        return 0;
    }
    return tot;
}

/* classify() with the claims as one natlink_set_claims() left them: read without the
 * lock (a sequence lock: the count is even and unchanged around the reading), or, when
 * a writer was inside, again under the lock it writes under. Never a spin: a driver
 * task must not wait on a lower-priority writer it keeps from running. */
static int classify_claims(natlink_t *nl, const uint8_t *f, int hl, int flen, int l2, int link)
{
    uint32_t seq = __atomic_load_n(&nl->claims_seq, __ATOMIC_ACQUIRE);
    int len;

    if (!(seq & 1)) {
        len = classify(nl, f, hl, flen, l2, link);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&nl->claims_seq, __ATOMIC_RELAXED) == seq) {
            return len;
        }
    }
    nl->port.lock(nl->port.ctx);
    len = classify(nl, f, hl, flen, l2, link);
    nl->port.unlock(nl->port.ctx);
    return len;
}

/* ---- input: the wrapped netif->input ----
 *
 * Why wrap netif->input rather than ESP-IDF's LWIP_HOOK_IP4_INPUT: the hook is
 * compiled into lwIP (a rebuilt esp-lwip, impossible with Debian's prebuilt
 * liblwip.so), while the function pointer exists in every lwIP, so one mechanism runs,
 * and is tested, on both targets. The cost: it runs in the driver's thread (Wi-Fi,
 * EMAC, tapif), before tcpip_input() queues the frame for lwIP's thread, and sees
 * whole Ethernet frames. That is also a gain: claimed packets never cross lwIP's mbox.
 *
 * Wrapped netifs, found by the wrapper. Written only in lwIP's thread (or under its
 * core lock); an entry outlives natlink_stop() so a call already inside the wrapper
 * still finds its original input. */
#define MAX_HOOKS 4
static struct hook {
    struct netif *netif;
    natlink_t *nl;
    int link;
    int l2;                         /* its frames' link header: L2_HLEN, or 0 (PPP) */
    netif_input_fn orig;
} hooks[MAX_HOOKS];

static err_t natlink_input(struct pbuf *p, struct netif *inp);

static struct hook *hook_find(const struct netif *n)
{
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (hooks[i].netif == n) {
            return &hooks[i];
        }
    }
    return NULL;
}

static void rx_push(natlink_t *nl, int link, struct pbuf *p, int len, int l2)
{
    natlink_rx_ring_t *r = &nl->rx[link];
    int wake = 0;

    nl->port.lock(nl->port.ctx);
    nl->cnt[link].claimed++;
    if (len > NATLINK_MTU || r->head - r->tail >= NATLINK_RX_SLOTS) {
        nl->cnt[link].rx_drops++;   /* never block lwIP's driver: drop the newest */
    } else {
        natlink_rx_slot_t *s = &r->slot[r->head % NATLINK_RX_SLOTS];
        s->len = (uint16_t)pbuf_copy_partial(p, s->data, (u16_t)len, (u16_t)l2);
        wake = r->head == r->tail;
        r->head++;
    }
    nl->port.unlock(nl->port.ctx);
    pbuf_free(p);                   /* claimed: ours to free, exactly once */
    if (wake) {
        nl->port.notify(nl->port.ctx, link);
    }
}

static err_t natlink_input(struct pbuf *p, struct netif *inp)
{
    struct hook *h = hook_find(inp);
    natlink_t *nl;

    if (h == NULL) {
        return ERR_IF;              /* cannot happen; the driver frees p */
    }
    nl = h->nl;
    if (nl->running) {
        uint8_t tmp[HDR_MAX];
        const uint8_t *f = (const uint8_t *)p->payload;
        int flen = p->tot_len;
        int hl = flen < HDR_MAX ? flen : HDR_MAX;
        int len;

        if (p->len < hl) {          /* headers split over a pbuf chain */
            hl = pbuf_copy_partial(p, tmp, (u16_t)hl, 0);
            f = tmp;
        }
        len = classify_claims(nl, f, hl, flen, h->l2, h->link);
        if (len > 0) {
            rx_push(nl, h->link, p, len, h->l2);
            return ERR_OK;
        }
        nl->cnt[h->link].passed++;  /* only this netif's driver thread writes it */
    }
    return h->orig(p, inp);         /* lwIP owns p now (or the driver, on error) */
}

/* A netif whose frames are bare IPv4 packets, such as PPP's, hands them to ip4_input()
 * itself, in lwIP's thread, never through netif->input: lwIP's IPv4 input hook
 * (LWIP_HOOK_IP4_INPUT, esp32/natlink_lwip_hook.h) calls this first. 1: claimed (p is
 * freed), 0: lwIP goes on with p. Ethernet netifs are left to their wrapped input. */
int natlink_ip4_input(struct pbuf *p, struct netif *inp)
{
    struct hook *h = hook_find(inp);
    natlink_t *nl;
    uint8_t tmp[IP_READ_MAX];
    const uint8_t *f;
    int hl, len;

    if (h == NULL || h->l2 != 0 || !h->nl->running) {
        return 0;
    }
    nl = h->nl;
    f = (const uint8_t *)p->payload;
    hl = p->tot_len < IP_READ_MAX ? p->tot_len : IP_READ_MAX;
    if (p->len < hl) {
        hl = pbuf_copy_partial(p, tmp, (u16_t)hl, 0);
        f = tmp;
    }
    len = classify_claims(nl, f, hl, p->tot_len, 0, h->link);
    if (len > 0) {
        rx_push(nl, h->link, p, len, 0);
        return 1;
    }
    nl->cnt[h->link].passed++;
    return 0;
}

/* ---- output ----
 *
 * lwIP's output path (etharp_output) may only run in lwIP's thread, or under the core
 * lock where LWIP_TCPIP_CORE_LOCKING is on. Debian builds it on; ESP-IDF leaves it
 * off by default (CONFIG_LWIP_TCPIP_CORE_LOCKING), so the lock cannot be relied on.
 * Instead: natlink_send() fills a preallocated TX slot and queues it; one callback
 * message, allocated once by tcpip_callbackmsg_new(), is posted with
 * tcpip_callbackmsg_trycallback() (lwIP 2.1 and 2.2, esp-lwip's -esp versions too), at
 * most once at a time, and drains the queue in lwIP's thread. Nothing is allocated
 * per packet, the consumer never blocks on lwIP, and the same code serves both. */

static void tx_slot_free(struct pbuf *p)
{
    natlink_tx_slot_t *s = (natlink_tx_slot_t *)p;
    natlink_t *nl = s->nl;

    /* lwIP's thread, or a driver that sent from the pbuf by reference (ESP32 Wi-Fi). */
    nl->port.lock(nl->port.ctx);
    if (s->state != SLOT_LWIP) {
        nl->bad_frees++;            /* a second free: a bug; the test checks it is 0 */
    } else {
        s->state = SLOT_FREE;
        nl->freelist[nl->nfree++] = (uint8_t)(s - nl->tx);
    }
    nl->port.unlock(nl->port.ctx);
}

/* boards/README.md's Link.send: on-link destinations (including the subnet's directed
 * broadcast), the limited broadcast and multicast go straight to the destination;
 * anything else to the netif's gateway. etharp_output() would send an off-link
 * destination to the gateway by itself; choosing here keeps the contract whatever
 * the netif's output function is. */
static err_t next_hop(struct netif *nif, const uint8_t *pkt, ip4_addr_t *hop)
{
    uint32_t addr = ip4_addr_get_u32(netif_ip4_addr(nif));
    uint32_t mask = ip4_addr_get_u32(netif_ip4_netmask(nif));
    uint32_t gw = ip4_addr_get_u32(netif_ip4_gw(nif));
    uint32_t dst = addr_at(pkt + 16);

    if (!netif_is_up(nif) || !netif_is_link_up(nif)) {
        return ERR_IF;
    }
    if (addr == 0) {
        return ERR_RTE;             /* no address yet (DHCP): ARP could not ask */
    }
    if (dst == IPADDR_BROADCAST || (pkt[16] & 0xf0) == 0xe0 || ((dst ^ addr) & mask) == 0) {
        ip4_addr_set_u32(hop, dst);
    } else if (gw != 0) {
        ip4_addr_set_u32(hop, gw);
    } else {
        return ERR_RTE;
    }
    return ERR_OK;
}

static void transmit(natlink_t *nl, natlink_tx_slot_t *s)
{
    struct netif *nif = nl->cfg.netif[s->link];
    natlink_counters_t *c = &nl->cnt[s->link];
    ip4_addr_t hop;
    err_t err;
    /* Cannot fail: the sizes are checked at build time. The payload is mem +
     * NATLINK_TX_HEADROOM, where natlink_send() put the packet. */
    struct pbuf *p = pbuf_alloced_custom(PBUF_LINK, s->len, PBUF_RAM, &s->pc, s->mem, sizeof s->mem);

    err = next_hop(nif, s->mem + NATLINK_TX_HEADROOM, &hop);
    if (err == ERR_OK && nif->mtu != 0 && s->len > nif->mtu) {
        err = ERR_BUF;              /* fragmenting is the router's job */
    }
    if (err == ERR_OK) {
        /* etharp_output: resolves hop (queueing p, by reference, while ARP asks),
         * prepends the Ethernet header, calls linkoutput. */
        err = nif->output(nif, p, &hop);
    }
    if (err == ERR_OK) {
        c->sent++;                  /* sent/tx_errors: only lwIP's thread writes them */
    } else {
        c->tx_errors++;
    }
    pbuf_free(p);                   /* the slot returns when lwIP drops its last reference */
}

static void kick(natlink_t *nl, int link)
{
    if (tcpip_callbackmsg_trycallback(nl->kick) != ERR_OK) {
        nl->port.lock(nl->port.ctx);
        nl->kick_posted = 0;        /* the queue waits for the next natlink_send() */
        nl->cnt[link].kick_fails++;
        nl->port.unlock(nl->port.ctx);
    }
}

/* In lwIP's thread. At most NATLINK_TX_SLOTS packets per call, then re-post, so a
 * busy router cannot starve lwIP's other messages. */
static void tx_drain(void *arg)
{
    natlink_t *nl = (natlink_t *)arg;

    for (int budget = NATLINK_TX_SLOTS;; budget--) {
        natlink_tx_slot_t *s;

        nl->port.lock(nl->port.ctx);
        if (nl->qhead == nl->qtail) {
            nl->kick_posted = 0;
            nl->port.unlock(nl->port.ctx);
            return;
        }
        s = &nl->tx[nl->queue[nl->qtail % NATLINK_TX_SLOTS]];
        if (budget == 0) {
            int link = s->link;
            nl->port.unlock(nl->port.ctx);
            kick(nl, link);
            return;
        }
        nl->qtail++;
        s->state = SLOT_LWIP;
        nl->port.unlock(nl->port.ctx);
        transmit(nl, s);
    }
}

/* ---- control ---- */

static int valid_ranges(const natlink_ranges_t *rs)
{
    if (rs->n > NATLINK_MAX_RANGES) {
        return 0;
    }
    for (unsigned i = 0; i < rs->n; i++) {
        if (rs->r[i].lo > rs->r[i].hi) {
            return 0;
        }
    }
    return 1;
}

static int valid_config(const natlink_config_t *cfg)
{
    for (int i = 0; i < NATLINK_LINKS; i++) {
        if (cfg->netif[i] == NULL) {
            return 0;
        }
    }
    return cfg->netif[NATLINK_LAN] != cfg->netif[NATLINK_WAN]
           && valid_ranges(&cfg->tcp) && valid_ranges(&cfg->udp) && valid_ranges(&cfg->icmp);
}

enum { CALL_STOP, CALL_START, CALL_REHOOK };

struct natlink_call {
    struct tcpip_api_call_data base;    /* first: tcpip_api_call() passes &base */
    natlink_t *nl;
    int what;                       /* CALL_* */
    int rehooked;                   /* CALL_REHOOK: netifs wrapped again */
};

/* A driver removed a wrapped netif and added it back (netif_add() set its input to
 * tcpip_input again): save that input and wrap it again. */
static void rehook(struct natlink_call *call)
{
    natlink_t *nl = call->nl;

    for (int i = 0; i < NATLINK_LINKS; i++) {
        struct netif *n = nl->cfg.netif[i];
        struct hook *h = hook_find(n);
        if (h != NULL && h->nl == nl && h->l2 && n->input != natlink_input) {
            h->orig = n->input;
            __sync_synchronize();   /* the entry before the pointer, as at start */
            n->input = natlink_input;
            call->rehooked++;
        }
    }
}

/* In lwIP's thread (or under its core lock): the only safe place to swap a netif's
 * input pointer and to touch `hooks`. */
static err_t do_install(struct tcpip_api_call_data *d)
{
    struct natlink_call *call = (struct natlink_call *)d;
    natlink_t *nl = call->nl;
    struct hook *h[NATLINK_LINKS];

    if (call->what == CALL_REHOOK) {
        if (!nl->running) {
            return ERR_VAL;
        }
        rehook(call);
        return ERR_OK;
    }
    if (call->what == CALL_STOP) {
        nl->running = 0;
        for (int i = 0; i < NATLINK_LINKS; i++) {
            struct netif *n = nl->cfg.netif[i];
            struct hook *k = hook_find(n);
            if (k != NULL && k->nl == nl && n->input == natlink_input) {
                n->input = k->orig;
            }
        }
        nl->port.lock(nl->port.ctx);    /* queued, not yet sent: back to the free list */
        while (nl->qtail != nl->qhead) {
            unsigned i = nl->queue[nl->qtail++ % NATLINK_TX_SLOTS];
            nl->tx[i].state = SLOT_FREE;
            nl->freelist[nl->nfree++] = (uint8_t)i;
        }
        nl->port.unlock(nl->port.ctx);
        return ERR_OK;
    }
    for (int i = 0; i < NATLINK_LINKS; i++) {
        struct netif *n = nl->cfg.netif[i];
        if (n->input == natlink_input) {
            return ERR_USE;         /* wrapped already (by another natlink_t) */
        }
        h[i] = hook_find(n);
        if (h[i] == NULL) {
            h[i] = hook_find(NULL);
            if (h[i] == NULL) {
                return ERR_MEM;
            }
            h[i]->netif = n;
        }
    }
    for (int i = 0; i < NATLINK_LINKS; i++) {
        struct netif *n = nl->cfg.netif[i];
        h[i]->nl = nl;
        h[i]->link = i;
        h[i]->l2 = n->flags & (NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET) ? L2_HLEN : 0;
        h[i]->orig = n->input;
    }
    nl->running = 1;
    /* The entries must be visible to a driver on another core before the pointer. */
    __sync_synchronize();
    for (int i = 0; i < NATLINK_LINKS; i++) {
        if (h[i]->l2) {             /* the rest come through natlink_ip4_input() */
            nl->cfg.netif[i]->input = natlink_input;
        }
    }
    return ERR_OK;
}

static int install(natlink_t *nl, int what)
{
    struct natlink_call call;

    memset(&call, 0, sizeof call);
    call.nl = nl;
    call.what = what;
    if (tcpip_api_call(do_install, &call.base) != ERR_OK) {
        return -1;
    }
    return call.rehooked;
}

int natlink_init(natlink_t *nl, const natlink_port_t *port)
{
    if (nl == NULL || port == NULL || !port->lock || !port->unlock || !port->notify) {
        return -1;
    }
    memset(nl, 0, sizeof *nl);
    nl->port = *port;
    for (int i = 0; i < NATLINK_TX_SLOTS; i++) {
        nl->tx[i].nl = nl;
        nl->tx[i].pc.custom_free_function = tx_slot_free;
        nl->freelist[i] = (uint8_t)i;
    }
    nl->nfree = NATLINK_TX_SLOTS;
    return 0;
}

int natlink_start(natlink_t *nl, const natlink_config_t *cfg)
{
    if (nl->running || cfg == NULL || !valid_config(cfg)) {
        return -1;
    }
    if (nl->kick == NULL) {         /* once, and kept: it may still sit in lwIP's mbox */
        nl->kick = tcpip_callbackmsg_new(tx_drain, nl);
        if (nl->kick == NULL) {
            return -1;
        }
    }
    nl->port.lock(nl->port.ctx);
    nl->cfg = *cfg;
    nl->wan = addr_at(cfg->wan_addr);
    memset(nl->cnt, 0, sizeof nl->cnt);
    for (int i = 0; i < NATLINK_LINKS; i++) {
        nl->rx[i].head = nl->rx[i].tail = 0;
    }
    nl->port.unlock(nl->port.ctx);
    return install(nl, CALL_START);
}

int natlink_stop(natlink_t *nl)
{
    return install(nl, CALL_STOP);
}

int natlink_rehook(natlink_t *nl)
{
    return install(nl, CALL_REHOOK);
}

int natlink_set_claims(natlink_t *nl, const natlink_config_t *cfg)
{
    uint32_t seq;

    if (cfg == NULL || !valid_ranges(&cfg->tcp) || !valid_ranges(&cfg->udp) || !valid_ranges(&cfg->icmp)) {
        return -1;
    }
    nl->port.lock(nl->port.ctx);    /* one writer at a time; readers that find the
                                     * count odd classify under this lock */
    seq = nl->claims_seq;
    __atomic_store_n(&nl->claims_seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    nl->cfg.tcp = cfg->tcp;
    nl->cfg.udp = cfg->udp;
    nl->cfg.icmp = cfg->icmp;
    nl->cfg.lan_dhcp = cfg->lan_dhcp ? 1 : 0;
    __atomic_store_n(&nl->claims_seq, seq + 2, __ATOMIC_RELEASE);
    nl->port.unlock(nl->port.ctx);
    return 0;
}

void natlink_set_wan_addr(natlink_t *nl, const uint8_t addr[4])
{
    nl->port.lock(nl->port.ctx);
    memcpy(nl->cfg.wan_addr, addr, 4);
    nl->wan = addr_at(addr);        /* one aligned word: drivers see old or new */
    nl->port.unlock(nl->port.ctx);
}

int natlink_recv(natlink_t *nl, int link, uint8_t *buf, int cap)
{
    natlink_rx_ring_t *r;
    int n = 0;

    if (link < 0 || link >= NATLINK_LINKS) {
        return -1;
    }
    r = &nl->rx[link];
    nl->port.lock(nl->port.ctx);
    if (r->head != r->tail) {
        natlink_rx_slot_t *s = &r->slot[r->tail % NATLINK_RX_SLOTS];
        n = s->len;
        if (n > cap) {
            n = -1;
            nl->cnt[link].rx_drops++;
        } else {
            memcpy(buf, s->data, (size_t)n);
            nl->cnt[link].received++;
        }
        r->tail++;
    }
    nl->port.unlock(nl->port.ctx);
    return n;
}

int natlink_pending(natlink_t *nl, int link)
{
    int n;

    if (link < 0 || link >= NATLINK_LINKS) {
        return 0;
    }
    nl->port.lock(nl->port.ctx);
    n = (int)(nl->rx[link].head - nl->rx[link].tail);
    nl->port.unlock(nl->port.ctx);
    return n;
}

int natlink_send(natlink_t *nl, int link, const uint8_t *pkt, int n)
{
    natlink_tx_slot_t *s;
    int post;

    if (link < 0 || link >= NATLINK_LINKS || pkt == NULL || n < 20 || n > NATLINK_MTU || (pkt[0] >> 4) != 4) {
        return -1;
    }
    nl->port.lock(nl->port.ctx);
    if (!nl->running || nl->nfree == 0) {
        if (nl->running) {
            nl->cnt[link].tx_full++;
        }
        nl->port.unlock(nl->port.ctx);
        return -1;
    }
    s = &nl->tx[nl->freelist[--nl->nfree]];
    s->state = SLOT_QUEUED;
    s->link = (uint8_t)link;
    s->len = (uint16_t)n;
    memcpy(s->mem + NATLINK_TX_HEADROOM, pkt, (size_t)n);
    nl->queue[nl->qhead++ % NATLINK_TX_SLOTS] = (uint8_t)(s - nl->tx);
    post = !nl->kick_posted;
    nl->kick_posted = 1;
    nl->port.unlock(nl->port.ctx);
    if (post) {
        kick(nl, link);
    }
    return 0;
}

void natlink_get_counters(natlink_t *nl, int link, natlink_counters_t *out)
{
    if (link < 0 || link >= NATLINK_LINKS) {
        memset(out, 0, sizeof *out);
        return;
    }
    nl->port.lock(nl->port.ctx);
    *out = nl->cnt[link];
    nl->port.unlock(nl->port.ctx);
}

int natlink_tx_free(natlink_t *nl)
{
    int n;

    nl->port.lock(nl->port.ctx);
    n = (int)nl->nfree;
    nl->port.unlock(nl->port.ctx);
    return n;
}
