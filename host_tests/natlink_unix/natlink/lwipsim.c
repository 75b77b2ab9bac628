/* _lwipsim: in-memory Ethernet netifs in Debian's lwIP, as MicroPython objects, so
 * the natlink binding (boards/natlink/modnatlink.c) runs in the unix port as it runs on
 * the ESP32: natlink.start() takes these objects where the ESP32 takes network.LAN /
 * network.WLAN (natlink_mp_netif below), frames come in through netif->input from the
 * caller's thread (as a driver's receive task calls it) and the frames lwIP sends are
 * captured for the test to take.
 *
 *   _lwipsim.boot()                                   lwIP's tcpip thread, once
 *   nic = _lwipsim.Netif(i, mac, addr, mask, gw)      netif i (0..2), up, link up
 *   nic.inject(frame)                                 -> lwIP's err_t
 *   nic.take()                                        -> the oldest frame sent, or None
 *   nic.input_is_lwip()                               -> its input is tcpip_input again
 *   nic.set_addr(addr, mask, gw)                      what a static address or a lease does
 *   _lwipsim.sync()                                   waits until lwIP's thread is idle
 *   _lwipsim.last_dhcps()                             -> natlink.dhcps()'s last arguments */
#include <pthread.h>
#include <semaphore.h>
#include <string.h>

#include "py/runtime.h"
#include "py/mperrno.h"

#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/tcpip.h"
#include "netif/ethernet.h"

#include "natlink_mp.h"

#define SIM_NETIFS 3
#define CAP_FRAMES 64
#define FRAME_MAX 1600

static struct simnet {
    struct netif netif;         /* static: natlink and lwIP keep pointers to it */
    uint8_t mac[6];
    int added;
    pthread_mutex_t mu;
    unsigned head, tail;
    uint16_t len[CAP_FRAMES];
    uint8_t frame[CAP_FRAMES][FRAME_MAX];
} sn[SIM_NETIFS] = {
    [0 ... SIM_NETIFS - 1] = { .mu = PTHREAD_MUTEX_INITIALIZER },
};

static int booted;

typedef struct {
    mp_obj_base_t base;
    int idx;
} sim_nic_obj_t;

static const mp_obj_type_t sim_nic_type;

static err_t sim_linkoutput(struct netif *netif, struct pbuf *p) {
    struct simnet *s = (struct simnet *)netif->state;
    pthread_mutex_lock(&s->mu);
    if (s->head - s->tail < CAP_FRAMES && p->tot_len <= FRAME_MAX) {
        unsigned i = s->head++ % CAP_FRAMES;
        s->len[i] = pbuf_copy_partial(p, s->frame[i], p->tot_len, 0);
    }
    pthread_mutex_unlock(&s->mu);
    return ERR_OK;
}

static err_t sim_netif_init(struct netif *n) {
    struct simnet *s = (struct simnet *)n->state;
    n->name[0] = 's';
    n->name[1] = (char)('0' + (s - sn));
    n->output = etharp_output;
    #if LWIP_IPV6
    n->output_ip6 = ethip6_output;
    #endif
    n->linkoutput = sim_linkoutput;
    n->mtu = 1500;
    n->hwaddr_len = 6;
    memcpy(n->hwaddr, s->mac, 6);
    n->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    return ERR_OK;
}

static void post_sem(void *arg) {
    sem_post((sem_t *)arg);
}

static mp_obj_t sim_boot(void) {
    if (!booted) {
        sem_t s;
        sem_init(&s, 0, 0);
        tcpip_init(post_sem, &s);
        sem_wait(&s);
        sem_destroy(&s);
        booted = 1;
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(sim_boot_obj, sim_boot);

static mp_obj_t sim_sync(void) {
    sem_t s;
    sem_init(&s, 0, 0);
    if (tcpip_callback(post_sem, &s) != ERR_OK) {
        mp_raise_OSError(MP_EIO);
    }
    sem_wait(&s);
    sem_destroy(&s);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(sim_sync_obj, sim_sync);

static void get4(mp_obj_t o, void *out, size_t n) {
    mp_buffer_info_t bi;
    mp_get_buffer_raise(o, &bi, MP_BUFFER_READ);
    if (bi.len != n) {
        mp_raise_ValueError(MP_ERROR_TEXT("wrong address length"));
    }
    memcpy(out, bi.buf, n);
}

/* Netif(i, mac, addr, mask, gw): addresses as bytes, as on the wire. */
static mp_obj_t sim_nic_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 5, 5, false);
    mp_int_t i = mp_obj_get_int(args[0]);
    if (i < 0 || i >= SIM_NETIFS) {
        mp_raise_ValueError(MP_ERROR_TEXT("netif index"));
    }
    struct simnet *s = &sn[i];
    if (!s->added) {
        ip4_addr_t a, m, g;
        get4(args[1], s->mac, 6);
        get4(args[2], &a.addr, 4);
        get4(args[3], &m.addr, 4);
        get4(args[4], &g.addr, 4);
        LOCK_TCPIP_CORE();
        netif_add(&s->netif, &a, &m, &g, s, sim_netif_init, tcpip_input);
        netif_set_up(&s->netif);
        netif_set_link_up(&s->netif);
        UNLOCK_TCPIP_CORE();
        s->added = 1;
    }
    sim_nic_obj_t *o = mp_obj_malloc(sim_nic_obj_t, type);
    o->idx = (int)i;
    return MP_OBJ_FROM_PTR(o);
}

static mp_obj_t sim_nic_inject(mp_obj_t self_in, mp_obj_t frame_in) {
    sim_nic_obj_t *self = MP_OBJ_TO_PTR(self_in);
    struct netif *n = &sn[self->idx].netif;
    mp_buffer_info_t bi;
    mp_get_buffer_raise(frame_in, &bi, MP_BUFFER_READ);
    struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)bi.len, PBUF_RAM);
    if (p == NULL) {
        mp_raise_OSError(MP_ENOMEM);
    }
    pbuf_take(p, bi.buf, (u16_t)bi.len);
    err_t err = n->input(p, n);   /* natlink's wrapper while it runs, else tcpip_input */
    if (err != ERR_OK) {
        pbuf_free(p);               /* a driver frees what input refused */
    }
    return MP_OBJ_NEW_SMALL_INT(err);
}
static MP_DEFINE_CONST_FUN_OBJ_2(sim_nic_inject_obj, sim_nic_inject);

static mp_obj_t sim_nic_take(mp_obj_t self_in) {
    sim_nic_obj_t *self = MP_OBJ_TO_PTR(self_in);
    struct simnet *s = &sn[self->idx];
    uint8_t buf[FRAME_MAX];
    int n = -1;
    pthread_mutex_lock(&s->mu);
    if (s->head != s->tail) {
        unsigned i = s->tail++ % CAP_FRAMES;
        n = s->len[i];
        memcpy(buf, s->frame[i], (size_t)n);
    }
    pthread_mutex_unlock(&s->mu);
    return n < 0 ? mp_const_none : mp_obj_new_bytes(buf, (size_t)n);
}
static MP_DEFINE_CONST_FUN_OBJ_1(sim_nic_take_obj, sim_nic_take);

/* set_addr(addr, mask, gw): what esp_netif_set_ip_info or a DHCP lease does. */
static mp_obj_t sim_nic_set_addr(size_t n_args, const mp_obj_t *args) {
    sim_nic_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    ip4_addr_t a, m, g;
    get4(args[1], &a.addr, 4);
    get4(args[2], &m.addr, 4);
    get4(args[3], &g.addr, 4);
    LOCK_TCPIP_CORE();
    netif_set_addr(&sn[self->idx].netif, &a, &m, &g);
    UNLOCK_TCPIP_CORE();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(sim_nic_set_addr_obj, 4, 4, sim_nic_set_addr);

static mp_obj_t sim_nic_input_is_lwip(mp_obj_t self_in) {
    sim_nic_obj_t *self = MP_OBJ_TO_PTR(self_in);
    return mp_obj_new_bool(sn[self->idx].netif.input == tcpip_input);
}
static MP_DEFINE_CONST_FUN_OBJ_1(sim_nic_input_is_lwip_obj, sim_nic_input_is_lwip);

static const mp_rom_map_elem_t sim_nic_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_inject), MP_ROM_PTR(&sim_nic_inject_obj) },
    { MP_ROM_QSTR(MP_QSTR_take), MP_ROM_PTR(&sim_nic_take_obj) },
    { MP_ROM_QSTR(MP_QSTR_input_is_lwip), MP_ROM_PTR(&sim_nic_input_is_lwip_obj) },
    { MP_ROM_QSTR(MP_QSTR_set_addr), MP_ROM_PTR(&sim_nic_set_addr_obj) },
};
static MP_DEFINE_CONST_DICT(sim_nic_locals, sim_nic_locals_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    sim_nic_type,
    MP_QSTR_Netif,
    MP_TYPE_FLAG_NONE,
    make_new, sim_nic_make_new,
    locals_dict, &sim_nic_locals
    );

static mp_obj_t sim_last_dhcps(void) {
    return MP_STATE_VM(lwipsim_last_dhcps) == MP_OBJ_NULL ? mp_const_none : MP_STATE_VM(lwipsim_last_dhcps);
}
static MP_DEFINE_CONST_FUN_OBJ_0(sim_last_dhcps_obj, sim_last_dhcps);

/* ---- natlink_mp.h: what the ESP32 port finds in MicroPython's network objects ---- */

/* An _lwipsim.Netif, or an object carrying one as `_sim` (the board tests' fake
 * network.LAN / network.WLAN objects, host_tests/upy/fakes/network.py). */
static sim_nic_obj_t *sim_nic(mp_obj_t nic) {
    if (mp_obj_get_type(nic) != &sim_nic_type) {
        mp_obj_t dest[2];
        mp_load_method_maybe(nic, MP_QSTR__sim, dest);
        if (dest[0] == MP_OBJ_NULL || dest[1] != MP_OBJ_NULL || mp_obj_get_type(dest[0]) != &sim_nic_type) {
            mp_raise_TypeError(MP_ERROR_TEXT("natlink: expected an _lwipsim.Netif"));
        }
        nic = dest[0];
    }
    return MP_OBJ_TO_PTR(nic);
}

struct netif *natlink_mp_netif(mp_obj_t nic) {
    sim_nic_obj_t *o = sim_nic(nic);
    if (!sn[o->idx].added) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("natlink: the interface has no lwIP netif"));
    }
    return &sn[o->idx].netif;
}

void natlink_mp_dhcps(mp_obj_t nic, bool enabled, const uint8_t dns[4], const uint8_t first[4],
    const uint8_t last[4], uint32_t lease_s) {
    sim_nic_obj_t *o = sim_nic(nic);
    mp_obj_t t[6] = {
        MP_OBJ_NEW_SMALL_INT(o->idx), mp_obj_new_bool(enabled), mp_obj_new_bytes(dns, 4),
        mp_obj_new_bytes(first, 4), mp_obj_new_bytes(last, 4), mp_obj_new_int_from_uint(lease_s),
    };
    MP_STATE_VM(lwipsim_last_dhcps) = mp_obj_new_tuple(6, t);
}

static const mp_rom_map_elem_t sim_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__lwipsim) },
    { MP_ROM_QSTR(MP_QSTR_boot), MP_ROM_PTR(&sim_boot_obj) },
    { MP_ROM_QSTR(MP_QSTR_sync), MP_ROM_PTR(&sim_sync_obj) },
    { MP_ROM_QSTR(MP_QSTR_last_dhcps), MP_ROM_PTR(&sim_last_dhcps_obj) },
    { MP_ROM_QSTR(MP_QSTR_Netif), MP_ROM_PTR(&sim_nic_type) },
};
static MP_DEFINE_CONST_DICT(sim_globals, sim_globals_table);

const mp_obj_module_t lwipsim_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&sim_globals,
};

MP_REGISTER_MODULE(MP_QSTR__lwipsim, lwipsim_user_cmodule);
MP_REGISTER_ROOT_POINTER(mp_obj_t lwipsim_last_dhcps);
