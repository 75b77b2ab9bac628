# natrouter's emulated board: MicroPython's ESP32 port for QEMU's esp32 machine (-M esp32),
# an out-of-tree board as the real ones are (tools/build.py ESP32_QEMU); tools/qemu.py
# runs it. No radio in QEMU (and no Wi-Fi libraries offline): the WAN is QEMU's OpenCores
# Ethernet NIC behind network.LAN, the LAN is PPP over UART2 (board.py).
set(IDF_TARGET esp32)

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${MICROPY_BOARD_DIR}/sdkconfig.board
)
# A builder's own ESP-IDF settings, last (e.g. what an offline SDK substitutes).
if(DEFINED ENV{NATROUTER_SDKCONFIG_EXTRA})
    list(APPEND SDKCONFIG_DEFAULTS $ENV{NATROUTER_SDKCONFIG_EXTRA})
endif()

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)

# natlink's C for QEMU: the OpenCores MAC behind network.LAN, lwIP's IPv4 input hook for
# the PPP LAN (boards/natlink/esp32/natlink_qemu.c).
set(NATLINK_QEMU 1)

# No radio: the ESP-IDF heap kept from MicroPython's is lwIP's pbufs, PPP's and the
# NIC's buffers and natlink's messages (the real boards keep 48 KB for Wi-Fi's too).
set(NATLINK_IDF_RESERVE 24576)
