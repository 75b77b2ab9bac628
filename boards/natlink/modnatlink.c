/* natlink for MicroPython: the `natlink` module (README.md, "The MicroPython binding").
 *
 *   lan, wan = natlink.start(lan=ap, wan=eth, wan_addr=b"...", tcp=((0, 1023), ...),
 *                            udp=(...), icmp=((0, 65535),), dhcp=True, lan_mtu=1500,
 *                            wan_mtu=1500)
 *   natlink.claim(tcp=..., udp=..., icmp=..., dhcp=True)   # while it runs
 *   natlink.rehook()             # a netif its driver added back: wrapped again
 *   n = wan.recv_into(buf)       # one IPv4 packet, or 0; never blocks, never allocates
 *   lan.send(buf, n)             # queued for lwIP's thread; refusals are counted
 *   natlink.wait(100)            # sleeps, GIL released, until a ring fills or 100 ms
 *   natlink.stop()               # the netifs get their own input back; links go stale
 *
 * A thin layer: it converts arguments and calls the core (natlink.c) and the platform
 * (natlink_mp.h). Every rule (what is claimed, ring and slot handling, next hops) is in
 * the core, which the host tests run against lwIP; this file is exercised by the
 * unix-port build in host_tests/natlink_unix/ (test_esp32_boards.py). */
#include <string.h>

#include "py/runtime.h"
#include "py/mperrno.h"
#include "py/mpthread.h"

#include "natlink.h"
#include "natlink_mp.h"

/* Static and never freed: lwIP may hold a TX slot for seconds after natlink_stop(),
 * and a driver may still be inside the input wrapper (README, "Rules for the
 * binding"). */
#ifndef NATLINK_IDF_RESERVE
#define NATLINK_IDF_RESERVE (48 * 1024)  /* esp32/natlink_heap.c's default */
#endif

static natlink_t nl;
static natlink_port_t port;
static bool initialised;
/* Bumped by every start and stop: link objects of an earlier start are stale, so a
 * router that outlived its links cannot read a later start's rings. */
static uint32_t generation;

static void ensure_init(void) {
    if (!initialised) {
        natlink_mp_port_init(&port);
        if (natlink_init(&nl, &port) != 0) {
            mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("natlink: platform port incomplete"));
        }
        initialised = true;
    }
}

static int get_link(mp_obj_t which) {
    mp_int_t i = mp_obj_get_int(which);
    if (i != NATLINK_LAN && i != NATLINK_WAN) {
        mp_raise_ValueError(MP_ERROR_TEXT("natlink: link must be natlink.LAN or natlink.WAN"));
    }
    return (int)i;
}

static void get_addr(mp_obj_t obj, uint8_t out[4], qstr what) {
    mp_buffer_info_t bi;
    mp_get_buffer_raise(obj, &bi, MP_BUFFER_READ);
    if (bi.len != 4) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("natlink: %q must be 4 bytes"), what);
    }
    memcpy(out, bi.buf, 4);
}

static void get_ranges(mp_obj_t seq, natlink_ranges_t *out, qstr what) {
    size_t n;
    mp_obj_t *items;
    mp_obj_get_array(seq, &n, &items);
    if (n > NATLINK_MAX_RANGES) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("natlink: %q: more than %d ranges"),
            what, NATLINK_MAX_RANGES);
    }
    out->n = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        mp_obj_t *pair;
        mp_obj_get_array_fixed_n(items[i], 2, &pair);
        mp_int_t lo = mp_obj_get_int(pair[0]);
        mp_int_t hi = mp_obj_get_int(pair[1]);
        if (lo < 0 || hi > 0xffff || lo > hi) {
            mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("natlink: %q: bad range"), what);
        }
        out->r[i].lo = (uint16_t)lo;
        out->r[i].hi = (uint16_t)hi;
    }
}

/* ---- natlink.Link: one ring pair, the board interface's Link (boards/README.md) ---- */

typedef struct {
    mp_obj_base_t base;
    uint8_t link;             /* NATLINK_LAN or NATLINK_WAN */
    uint16_t mtu;
    uint32_t generation;      /* of the start that made it */
} natlink_link_obj_t;

/* recv_into(buf) -> the length of one whole IPv4 packet copied into buf, or 0. A
 * packet longer than buf is dropped (counted in rx_drops), so buf must hold the MTU. */
static mp_obj_t link_recv_into(mp_obj_t self_in, mp_obj_t buf_in) {
    natlink_link_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t bi;
    mp_get_buffer_raise(buf_in, &bi, MP_BUFFER_WRITE);
    if (self->generation != generation) {
        return MP_OBJ_NEW_SMALL_INT(0);
    }
    int cap = bi.len > NATLINK_MTU ? NATLINK_MTU : (int)bi.len;
    int n = natlink_recv(&nl, self->link, bi.buf, cap);
    return MP_OBJ_NEW_SMALL_INT(n > 0 ? n : 0);
}
static MP_DEFINE_CONST_FUN_OBJ_2(link_recv_into_obj, link_recv_into);

/* send(buf, n): buf[0:n] leaves towards its next hop, through lwIP's thread. Never
 * blocks; a full queue or a stale link drops it (the core counts tx_full). */
static mp_obj_t link_send(mp_obj_t self_in, mp_obj_t buf_in, mp_obj_t n_in) {
    natlink_link_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t bi;
    mp_get_buffer_raise(buf_in, &bi, MP_BUFFER_READ);
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0 || (size_t)n > bi.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("natlink: n is outside the buffer"));
    }
    if (self->generation == generation) {
        natlink_send(&nl, self->link, bi.buf, (int)n);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(link_send_obj, link_send);

static void link_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    natlink_link_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (dest[0] != MP_OBJ_NULL) {
        return;                 /* no stores, no deletes */
    }
    if (attr == MP_QSTR_name) {
        dest[0] = MP_OBJ_NEW_QSTR(self->link == NATLINK_LAN ? MP_QSTR_lan : MP_QSTR_wan);
    } else if (attr == MP_QSTR_mtu) {
        dest[0] = MP_OBJ_NEW_SMALL_INT(self->mtu);
    } else {
        dest[1] = MP_OBJ_SENTINEL;  /* go on to the methods */
    }
}

static void link_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    (void)kind;
    natlink_link_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_printf(print, "<natlink.Link %s mtu %d%s>", self->link == NATLINK_LAN ? "lan" : "wan",
        self->mtu, self->generation == generation ? "" : " stale");
}

static const mp_rom_map_elem_t link_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_recv_into), MP_ROM_PTR(&link_recv_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_send), MP_ROM_PTR(&link_send_obj) },
};
static MP_DEFINE_CONST_DICT(link_locals, link_locals_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    natlink_link_type,
    MP_QSTR_Link,
    MP_TYPE_FLAG_NONE,
    print, link_print,
    attr, link_attr,
    locals_dict, &link_locals
    );

static mp_obj_t new_link(int link, int mtu) {
    natlink_link_obj_t *o = mp_obj_malloc(natlink_link_obj_t, &natlink_link_type);
    o->link = (uint8_t)link;
    o->mtu = (uint16_t)mtu;
    o->generation = generation;
    return MP_OBJ_FROM_PTR(o);
}

/* ---- the module ---- */

/* start(*, lan, wan, wan_addr, tcp, udp, icmp, dhcp=False, lan_mtu=MTU, wan_mtu=MTU)
 *   -> (lan_link, wan_link); each link's mtu is what the router sizes its buffer and its
 *   "too big" answers by (the netif's own MTU still bounds what lwIP sends). dhcp: the
 *   router serves DHCP on the LAN, so the LAN's DHCP requests are claimed. */
static mp_obj_t natlink_start_fn(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_lan, ARG_wan, ARG_wan_addr, ARG_tcp, ARG_udp, ARG_icmp, ARG_dhcp, ARG_lan_mtu, ARG_wan_mtu };
    static const mp_arg_t allowed[] = {
        { MP_QSTR_lan, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_wan, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_wan_addr, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_tcp, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_udp, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_icmp, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_dhcp, MP_ARG_KW_ONLY | MP_ARG_BOOL, {.u_bool = false} },
        { MP_QSTR_lan_mtu, MP_ARG_KW_ONLY | MP_ARG_INT, {.u_int = NATLINK_MTU} },
        { MP_QSTR_wan_mtu, MP_ARG_KW_ONLY | MP_ARG_INT, {.u_int = NATLINK_MTU} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed), allowed, args);

    natlink_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.netif[NATLINK_LAN] = natlink_mp_netif(args[ARG_lan].u_obj);
    cfg.netif[NATLINK_WAN] = natlink_mp_netif(args[ARG_wan].u_obj);
    get_addr(args[ARG_wan_addr].u_obj, cfg.wan_addr, MP_QSTR_wan_addr);
    get_ranges(args[ARG_tcp].u_obj, &cfg.tcp, MP_QSTR_tcp);
    get_ranges(args[ARG_udp].u_obj, &cfg.udp, MP_QSTR_udp);
    get_ranges(args[ARG_icmp].u_obj, &cfg.icmp, MP_QSTR_icmp);
    cfg.lan_dhcp = args[ARG_dhcp].u_bool;
    mp_int_t lan_mtu = args[ARG_lan_mtu].u_int, wan_mtu = args[ARG_wan_mtu].u_int;
    if (lan_mtu < 68 || lan_mtu > NATLINK_MTU || wan_mtu < 68 || wan_mtu > NATLINK_MTU) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("natlink: an mtu must be 68..%d"), NATLINK_MTU);
    }
    ensure_init();
    if (nl.running) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("natlink: running already (natlink.stop() first)"));
    }
    /* Both run a call in lwIP's thread and wait for it: let the other threads on. */
    int r;
    MP_THREAD_GIL_EXIT();
    r = natlink_start(&nl, &cfg);
    MP_THREAD_GIL_ENTER();
    if (r != 0) {
        mp_raise_msg(&mp_type_OSError,
            MP_ERROR_TEXT("natlink: cannot claim these interfaces (not Ethernet, the same one twice, or wrapped already)"));
    }
    generation++;
    mp_obj_t links[2] = { new_link(NATLINK_LAN, (int)lan_mtu), new_link(NATLINK_WAN, (int)wan_mtu) };
    return mp_obj_new_tuple(2, links);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(natlink_start_obj, 0, natlink_start_fn);

static mp_obj_t natlink_stop_fn(void) {
    if (initialised && nl.running) {
        MP_THREAD_GIL_EXIT();
        natlink_stop(&nl);
        MP_THREAD_GIL_ENTER();
    }
    generation++;
    if (initialised) {
        natlink_mp_wake();
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(natlink_stop_obj, natlink_stop_fn);

/* claim(*, tcp, udp, icmp, dhcp=False): what natlink claims, changed while it runs (a
 * port forward added from the REPL takes effect from the next packet). */
static mp_obj_t natlink_claim_fn(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_tcp, ARG_udp, ARG_icmp, ARG_dhcp };
    static const mp_arg_t allowed[] = {
        { MP_QSTR_tcp, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_udp, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_icmp, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_dhcp, MP_ARG_KW_ONLY | MP_ARG_BOOL, {.u_bool = false} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed), allowed, args);

    natlink_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    get_ranges(args[ARG_tcp].u_obj, &cfg.tcp, MP_QSTR_tcp);
    get_ranges(args[ARG_udp].u_obj, &cfg.udp, MP_QSTR_udp);
    get_ranges(args[ARG_icmp].u_obj, &cfg.icmp, MP_QSTR_icmp);
    cfg.lan_dhcp = args[ARG_dhcp].u_bool;
    ensure_init();
    if (!nl.running) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("natlink: not running (natlink.start() first)"));
    }
    natlink_set_claims(&nl, &cfg);  /* cannot fail: get_ranges() checked every range */
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(natlink_claim_obj, 0, natlink_claim_fn);

/* rehook() -> how many netifs were wrapped again: ones their driver removed and added
 * back while natlink ran (ESP-IDF restarts an access point whose settings change, and
 * netif_add() gives it lwIP's input again). 0 when none had lost the wrapper, or when
 * natlink is not running. */
static mp_obj_t natlink_rehook_fn(void) {
    int r = 0;
    if (initialised && nl.running) {
        MP_THREAD_GIL_EXIT();
        r = natlink_rehook(&nl);
        MP_THREAD_GIL_ENTER();
    }
    return MP_OBJ_NEW_SMALL_INT(r < 0 ? 0 : r);
}
static MP_DEFINE_CONST_FUN_OBJ_0(natlink_rehook_obj, natlink_rehook_fn);

static mp_obj_t natlink_running_fn(void) {
    return mp_obj_new_bool(initialised && nl.running);
}
static MP_DEFINE_CONST_FUN_OBJ_0(natlink_running_obj, natlink_running_fn);

/* wait(timeout_ms) -> True when a ring may have packets, False after the timeout.
 * The router's board.wait(): the calling thread sleeps with the GIL released, so the
 * REPL and other threads run; the drivers wake it (the port's notify). */
static mp_obj_t natlink_wait_fn(mp_obj_t timeout_in) {
    mp_int_t ms = mp_obj_get_int(timeout_in);
    ensure_init();
    int r;
    MP_THREAD_GIL_EXIT();
    r = natlink_mp_wait(ms < 0 ? 0 : (int)ms);
    MP_THREAD_GIL_ENTER();
    return mp_obj_new_bool(r);
}
static MP_DEFINE_CONST_FUN_OBJ_1(natlink_wait_obj, natlink_wait_fn);

static mp_obj_t natlink_set_wan_addr_fn(mp_obj_t addr_in) {
    uint8_t a[4];
    get_addr(addr_in, a, MP_QSTR_wan_addr);
    ensure_init();
    natlink_set_wan_addr(&nl, a);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(natlink_set_wan_addr_obj, natlink_set_wan_addr_fn);

static mp_obj_t natlink_pending_fn(mp_obj_t which) {
    int link = get_link(which);
    ensure_init();
    return MP_OBJ_NEW_SMALL_INT(natlink_pending(&nl, link));
}
static MP_DEFINE_CONST_FUN_OBJ_1(natlink_pending_obj, natlink_pending_fn);

static mp_obj_t natlink_tx_free_fn(void) {
    ensure_init();
    return MP_OBJ_NEW_SMALL_INT(natlink_tx_free(&nl));
}
static MP_DEFINE_CONST_FUN_OBJ_0(natlink_tx_free_obj, natlink_tx_free_fn);

/* counters(link) -> dict of natlink_counters_t's fields (slow path: allocates). */
static const qstr counter_names[] = {
    MP_QSTR_claimed, MP_QSTR_passed, MP_QSTR_rx_drops, MP_QSTR_received,
    MP_QSTR_sent, MP_QSTR_tx_full, MP_QSTR_tx_errors, MP_QSTR_kick_fails,
};

static mp_obj_t natlink_counters_fn(mp_obj_t which) {
    int link = get_link(which);
    natlink_counters_t c;
    uint32_t v[MP_ARRAY_SIZE(counter_names)];
    MP_STATIC_ASSERT(sizeof c == sizeof v);
    ensure_init();
    natlink_get_counters(&nl, link, &c);
    memcpy(v, &c, sizeof v);
    mp_obj_t d = mp_obj_new_dict(MP_ARRAY_SIZE(counter_names));
    for (size_t i = 0; i < MP_ARRAY_SIZE(counter_names); i++) {
        mp_obj_dict_store(d, MP_OBJ_NEW_QSTR(counter_names[i]), mp_obj_new_int_from_uint(v[i]));
    }
    return d;
}
static MP_DEFINE_CONST_FUN_OBJ_1(natlink_counters_obj, natlink_counters_fn);

/* dhcps(nic, *, enabled, dns, first, last, lease_s): the access point's own DHCP
 * server (ESP-IDF's), which the router leaves alone (board.LAN_DHCP = False). */
static mp_obj_t natlink_dhcps_fn(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_nic, ARG_enabled, ARG_dns, ARG_first, ARG_last, ARG_lease_s };
    static const mp_arg_t allowed[] = {
        { MP_QSTR_nic, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_enabled, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_BOOL, {.u_bool = false} },
        { MP_QSTR_dns, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_first, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_last, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_lease_s, MP_ARG_KW_ONLY | MP_ARG_REQUIRED | MP_ARG_INT, {.u_int = 0} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed), allowed, args);
    uint8_t dns[4], first[4], last[4];
    get_addr(args[ARG_dns].u_obj, dns, MP_QSTR_dns);
    get_addr(args[ARG_first].u_obj, first, MP_QSTR_first);
    get_addr(args[ARG_last].u_obj, last, MP_QSTR_last);
    if (args[ARG_lease_s].u_int < 60) {
        mp_raise_ValueError(MP_ERROR_TEXT("natlink: lease_s must be 60 or more"));
    }
    natlink_mp_dhcps(args[ARG_nic].u_obj, args[ARG_enabled].u_bool, dns, first, last,
        (uint32_t)args[ARG_lease_s].u_int);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(natlink_dhcps_obj, 1, natlink_dhcps_fn);

static const mp_rom_map_elem_t natlink_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_natlink) },
    { MP_ROM_QSTR(MP_QSTR_start), MP_ROM_PTR(&natlink_start_obj) },
    { MP_ROM_QSTR(MP_QSTR_stop), MP_ROM_PTR(&natlink_stop_obj) },
    { MP_ROM_QSTR(MP_QSTR_running), MP_ROM_PTR(&natlink_running_obj) },
    { MP_ROM_QSTR(MP_QSTR_claim), MP_ROM_PTR(&natlink_claim_obj) },
    { MP_ROM_QSTR(MP_QSTR_rehook), MP_ROM_PTR(&natlink_rehook_obj) },
    { MP_ROM_QSTR(MP_QSTR_wait), MP_ROM_PTR(&natlink_wait_obj) },
    { MP_ROM_QSTR(MP_QSTR_set_wan_addr), MP_ROM_PTR(&natlink_set_wan_addr_obj) },
    { MP_ROM_QSTR(MP_QSTR_pending), MP_ROM_PTR(&natlink_pending_obj) },
    { MP_ROM_QSTR(MP_QSTR_tx_free), MP_ROM_PTR(&natlink_tx_free_obj) },
    { MP_ROM_QSTR(MP_QSTR_counters), MP_ROM_PTR(&natlink_counters_obj) },
    { MP_ROM_QSTR(MP_QSTR_dhcps), MP_ROM_PTR(&natlink_dhcps_obj) },
    { MP_ROM_QSTR(MP_QSTR_Link), MP_ROM_PTR(&natlink_link_type) },
    { MP_ROM_QSTR(MP_QSTR_LAN), MP_ROM_INT(NATLINK_LAN) },
    { MP_ROM_QSTR(MP_QSTR_WAN), MP_ROM_INT(NATLINK_WAN) },
    { MP_ROM_QSTR(MP_QSTR_MTU), MP_ROM_INT(NATLINK_MTU) },
    { MP_ROM_QSTR(MP_QSTR_RX_SLOTS), MP_ROM_INT(NATLINK_RX_SLOTS) },
    { MP_ROM_QSTR(MP_QSTR_TX_SLOTS), MP_ROM_INT(NATLINK_TX_SLOTS) },
    { MP_ROM_QSTR(MP_QSTR_MAX_RANGES), MP_ROM_INT(NATLINK_MAX_RANGES) },
    /* the ESP-IDF heap MicroPython's may not take (esp32/natlink_heap.c) */
    { MP_ROM_QSTR(MP_QSTR_IDF_RESERVE), MP_ROM_INT(NATLINK_IDF_RESERVE) },
};
static MP_DEFINE_CONST_DICT(natlink_module_globals, natlink_module_globals_table);

const mp_obj_module_t natlink_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&natlink_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_natlink, natlink_user_cmodule);
