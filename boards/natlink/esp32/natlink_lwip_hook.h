/* lwIP's IPv4 input hook for the emulated board (natlink_qemu.c says why): included into
 * every lwIP source through ESP-IDF's ESP_IDF_LWIP_HOOK_FILENAME (micropython.cmake). */
#pragma once

struct pbuf;
struct netif;

int natlink_ip4_input(struct pbuf *p, struct netif *inp);

#define LWIP_HOOK_IP4_INPUT(p, inp) natlink_ip4_input((p), (inp))
