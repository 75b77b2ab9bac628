# natrouter's WT32-ETH01, an out-of-tree board of MicroPython's ESP32 port (v1.28):
#   make -C <micropython>/ports/esp32 BOARD_DIR=<natrouter>/boards/WT32_ETH01 \
#        USER_C_MODULES=<natrouter>/boards/natlink/micropython.cmake
# (tools/build.py WT32_ETH01 runs it). No Bluetooth: without sdkconfig.ble the BT
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
