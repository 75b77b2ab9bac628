// natrouter's emulated board (boards/ESP32_QEMU/board.py): MicroPython's ESP32 port with
// no radio (QEMU emulates none), no mDNS; natlink comes in as a user C module with its
// QEMU part (boards/natlink/esp32/natlink_qemu.c).
#define MICROPY_HW_BOARD_NAME "ESP32 in QEMU (natrouter)"
#define MICROPY_HW_MCU_NAME "ESP32"

#define MICROPY_PY_NETWORK_WLAN (0)
#define MICROPY_PY_BLUETOOTH (0)
#define MICROPY_PY_ESPNOW (0)
#define MICROPY_HW_ENABLE_MDNS_QUERIES (0)
#define MICROPY_HW_ENABLE_MDNS_RESPONDER (0)
