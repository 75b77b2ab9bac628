/* What the emulated board (boards/ESP32_QEMU) needs in C, built only for it
 * (micropython.cmake: NATLINK_QEMU, which that board's mpconfigboard.cmake sets).
 *
 * - QEMU's esp32 machine has an OpenCores Ethernet MAC where the ESP32's EMAC would be,
 *   and no EMAC. network.LAN asks ESP-IDF for the EMAC driver (esp_eth_mac_new_esp32);
 *   the linker's --wrap hands it the OpenCores driver instead, so network.LAN, its
 *   events, its DHCP client and ipconfig run unchanged, on QEMU's DP83848 PHY.
 * - The LAN is PPP (network.PPP over a UART), whose packets reach lwIP through
 *   ip4_input() directly, never through netif->input: lwIP's IPv4 input hook
 *   (natlink_lwip_hook.h, compiled into lwIP) lets natlink see them first. */
#include "esp_eth_mac_esp.h"
#include "esp_eth_mac_openeth.h"

esp_eth_mac_t *__wrap_esp_eth_mac_new_esp32(const eth_esp32_emac_config_t *esp32_config,
    const eth_mac_config_t *config);

esp_eth_mac_t *__wrap_esp_eth_mac_new_esp32(const eth_esp32_emac_config_t *esp32_config,
    const eth_mac_config_t *config) {
    (void)esp32_config;         /* pins and RMII clock: the emulated MAC has none */
    return esp_eth_mac_new_openeth(config);
}
