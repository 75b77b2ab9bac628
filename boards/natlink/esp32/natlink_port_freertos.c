/* natlink's platform on the ESP32 (natlink_mp.h): FreeRTOS for the lock and the
 * wake-up, esp_netif for the netifs behind MicroPython's network objects and for the
 * access point's DHCP server. Built into MicroPython's ESP32 port as a user C module
 * (../micropython.cmake); ESP-IDF v5.3..v5.5, MicroPython 1.28.
 *
 * The lock is a FreeRTOS mutex: it is taken by the Wi-Fi and EMAC receive tasks (high
 * priority), lwIP's tcpip task and the router's MicroPython thread (low priority), for
 * at most one packet copy; priority inheritance keeps a driver from waiting long behind
 * the router. Never from an ISR (natlink takes it only in task context).
 *
 * The wake-up is a binary semaphore: notify() (a driver task, when a ring goes from
 * empty to non-empty) gives it; natlink.wait() takes it with the GIL released. A give
 * while nobody waits is remembered once, so a packet that lands between the router's
 * last empty read and its wait is never slept through. Both are created statically:
 * no heap, no failure path. */
#include <string.h>

#include "py/runtime.h"
#include "py/mperrno.h"

#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "esp_netif.h"
#include "esp_netif_net_stack.h"
#include "dhcpserver/dhcpserver.h"

#include "modnetwork.h"         /* MicroPython's ESP32 port: base_if_obj_t, esp_network_wlan_type */
#include "natlink_mp.h"

#if MICROPY_PY_NETWORK_LAN
extern const mp_obj_type_t lan_if_type;  /* network_lan.c: network.LAN's type */
#endif

#if defined(CONFIG_LWIP_PPP_SUPPORT)
/* network_ppp.c's object (MicroPython v1.28, ports/esp32), up to its netif: PPP has no
 * esp_netif, its lwIP netif lives in the object (only the emulated board's LAN uses it). */
extern const mp_obj_type_t esp_network_ppp_lwip_type;
typedef struct {
    mp_obj_base_t base;
    int state;
    int error_code;
    mp_obj_t stream;
    void *pcb;
    struct netif netif;
} ppp_object_t;
#endif

static StaticSemaphore_t mutex_mem, wake_mem;
static SemaphoreHandle_t mutex, wake;

static void fr_lock(void *ctx) {
    (void)ctx;
    xSemaphoreTake(mutex, portMAX_DELAY);
}

static void fr_unlock(void *ctx) {
    (void)ctx;
    xSemaphoreGive(mutex);
}

static void fr_notify(void *ctx, int link) {
    (void)ctx;
    (void)link;                 /* one semaphore: the router drains both rings when woken */
    xSemaphoreGive(wake);
}

void natlink_mp_port_init(natlink_port_t *port) {
    mutex = xSemaphoreCreateMutexStatic(&mutex_mem);
    wake = xSemaphoreCreateBinaryStatic(&wake_mem);
    port->ctx = NULL;
    port->lock = fr_lock;
    port->unlock = fr_unlock;
    port->notify = fr_notify;
}

int natlink_mp_wait(int timeout_ms) {
    /* Round up: at 100 Hz, pdMS_TO_TICKS(5) would be 0, a busy loop. */
    TickType_t ticks = (TickType_t)((timeout_ms + portTICK_PERIOD_MS - 1) / portTICK_PERIOD_MS);
    return xSemaphoreTake(wake, ticks) == pdTRUE;
}

void natlink_mp_wake(void) {
    xSemaphoreGive(wake);
}

static base_if_obj_t *network_object(mp_obj_t nic) {
    const mp_obj_type_t *t = mp_obj_get_type(nic);
    if (1
        #if MICROPY_PY_NETWORK_WLAN
        && t != &esp_network_wlan_type
        #endif
        #if MICROPY_PY_NETWORK_LAN
        && t != &lan_if_type
        #endif
        ) {
        mp_raise_TypeError(MP_ERROR_TEXT("natlink: expected a network.LAN or network.WLAN object"));
    }
    return MP_OBJ_TO_PTR(nic);
}

/* esp_netif adds the lwIP netif (netif_add, which sets netif->input) in lwIP's thread
 * when the driver reports its start (WIFI_EVENT_AP_START, ETHERNET_EVENT_START...), a
 * moment after active(True) returns: wrapping input before that would be undone by
 * netif_add. netif_add links the netif into netif_list last, so once it is there its
 * input is set. (Read from this thread as the core's wrapper reads it from the
 * drivers': netifs are not removed while natlink runs.) */
static bool added(struct netif *n) {
    struct netif *i;
    NETIF_FOREACH(i) {
        if (i == n) {
            return true;
        }
    }
    return false;
}

struct netif *natlink_mp_netif(mp_obj_t nic) {
    struct netif *n;
    #if defined(CONFIG_LWIP_PPP_SUPPORT)
    if (mp_obj_get_type(nic) == &esp_network_ppp_lwip_type) {
        n = &((ppp_object_t *)MP_OBJ_TO_PTR(nic))->netif;  /* IP-only: natlink_ip4_input */
    } else
    #endif
    {
        base_if_obj_t *b = network_object(nic);
        n = b->netif != NULL ? esp_netif_get_netif_impl(b->netif) : NULL;
    }
    if (n == NULL || !added(n)) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("natlink: the interface is not started yet (activate it, then retry)"));
    }
    return n;
}

static void check(esp_err_t e, const char *what) {
    if (e != ESP_OK) {
        mp_raise_msg_varg(&mp_type_OSError, MP_ERROR_TEXT("natlink.dhcps: %s failed (0x%x)"), what, (unsigned)e);
    }
}

/* What ESP-IDF v5.5 takes as a pool (esp_netif_lwip.c, dhcpserver.c): first below last,
 * at most DHCPS_MAX_LEASE addresses, both in the AP's subnet (its real netmask), the AP's
 * own address outside. Checked before the server is stopped: a pool it would refuse
 * must not leave the access point without DHCP. */
static bool pool_taken(esp_netif_t *en, const uint8_t first[4], const uint8_t last[4]) {
    esp_netif_ip_info_t info;
    if (esp_netif_get_ip_info(en, &info) != ESP_OK) {
        return false;
    }
    uint32_t me = lwip_ntohl(info.ip.addr), mask = lwip_ntohl(info.netmask.addr);
    uint32_t lo = (uint32_t)first[0] << 24 | first[1] << 16 | first[2] << 8 | first[3];
    uint32_t hi = (uint32_t)last[0] << 24 | last[1] << 16 | last[2] << 8 | last[3];
    return lo < hi && hi - lo + 1 <= DHCPS_MAX_LEASE && (lo & mask) == (me & mask)
           && (hi & mask) == (me & mask) && !(lo <= me && me <= hi);
}

/* The options can only be set while the server is stopped
 * (ESP_ERR_ESP_NETIF_DHCP_ALREADY_STARTED otherwise). Without OFFER_DNS the server hands
 * out its own address as the DNS server, and nothing answers there. The boards serve
 * DHCP themselves (the router's server) and only ever stop this one. */
void natlink_mp_dhcps(mp_obj_t nic, bool enabled, const uint8_t dns[4], const uint8_t first[4],
    const uint8_t last[4], uint32_t lease_s) {
    base_if_obj_t *b = network_object(nic);
    if (b->if_id != ESP_IF_WIFI_AP) {
        mp_raise_ValueError(MP_ERROR_TEXT("natlink.dhcps: only an access point (WLAN(IF_AP)) serves DHCP"));
    }
    esp_netif_t *en = b->netif;
    if (enabled && !pool_taken(en, first, last)) {
        mp_raise_ValueError(MP_ERROR_TEXT("natlink.dhcps: ESP-IDF takes first < last, at most DHCPS_MAX_LEASE addresses in the AP's subnet, not its own"));
    }
    esp_err_t e = esp_netif_dhcps_stop(en);
    if (e != ESP_OK && e != ESP_ERR_ESP_NETIF_DHCP_ALREADY_STOPPED) {
        check(e, "esp_netif_dhcps_stop");
    }
    if (!enabled) {
        return;
    }
    dhcps_lease_t pool;
    memset(&pool, 0, sizeof pool);
    pool.enable = true;
    memcpy(&pool.start_ip.addr, first, 4);
    memcpy(&pool.end_ip.addr, last, 4);
    check(esp_netif_dhcps_option(en, ESP_NETIF_OP_SET, ESP_NETIF_REQUESTED_IP_ADDRESS, &pool, sizeof pool),
        "the address pool");
    dhcps_time_t units = (dhcps_time_t)((lease_s + DHCPS_LEASE_UNIT - 1) / DHCPS_LEASE_UNIT);
    check(esp_netif_dhcps_option(en, ESP_NETIF_OP_SET, ESP_NETIF_IP_ADDRESS_LEASE_TIME, &units, sizeof units),
        "the lease time");
    dhcps_offer_t offer = OFFER_DNS;
    check(esp_netif_dhcps_option(en, ESP_NETIF_OP_SET, ESP_NETIF_DOMAIN_NAME_SERVER, &offer, sizeof offer),
        "the DNS offer");
    esp_netif_dns_info_t d;
    memset(&d, 0, sizeof d);
    d.ip.type = ESP_IPADDR_TYPE_V4;
    memcpy(&d.ip.u_addr.ip4.addr, dns, 4);
    check(esp_netif_set_dns_info(en, ESP_NETIF_DNS_MAIN, &d), "the DNS server");
    check(esp_netif_dhcps_start(en), "esp_netif_dhcps_start");
}
