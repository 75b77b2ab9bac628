# natrouter's Wi-Fi-only ESP32 (any ESP32 module), an out-of-tree board of
# MicroPython's ESP32 port (v1.28):
#   make -C <micropython>/ports/esp32 BOARD_DIR=<natrouter>/boards/ESP32_GENERIC \
#        USER_C_MODULES=<natrouter>/boards/natlink/micropython.cmake
# (tools/build.py ESP32_GENERIC runs it). No Bluetooth: without sdkconfig.ble the BT
# controller's reserved DRAM is left to the heap.
set(IDF_TARGET esp32)

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${MICROPY_BOARD_DIR}/../esp32_common/sdkconfig.memory
    ${MICROPY_BOARD_DIR}/sdkconfig.board
)
# A builder's own ESP-IDF settings, last (e.g. what an offline SDK substitutes).
if(DEFINED ENV{NATROUTER_SDKCONFIG_EXTRA})
    list(APPEND SDKCONFIG_DEFAULTS $ENV{NATROUTER_SDKCONFIG_EXTRA})
endif()

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
