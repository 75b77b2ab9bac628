// natrouter's Olimex ESP32-POE (boards/OLIMEX_ESP32_POE/board.py): MicroPython's ESP32
// port, no Bluetooth (its controller's DRAM goes to the heap), no mDNS (its task and
// buffers too; the router needs no .local name). natlink comes in as a user C module
// (boards/natlink/).
#define MICROPY_HW_BOARD_NAME "Olimex ESP32-POE (natrouter)"
#define MICROPY_HW_MCU_NAME "ESP32"

#define MICROPY_PY_BLUETOOTH (0)
#define MICROPY_HW_ENABLE_MDNS_QUERIES (0)
#define MICROPY_HW_ENABLE_MDNS_RESPONDER (0)

// The name the board gives the upstream DHCP server (option 12). MicroPython hands it to
// the WAN interface itself (esp_netif_set_hostname: network_lan.c when the interface
// starts, network_wlan.c at connect), over ESP-IDF's CONFIG_LWIP_LOCAL_HOSTNAME.
#define MICROPY_PY_NETWORK_HOSTNAME_DEFAULT "natrouter"
