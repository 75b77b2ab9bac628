# natlink as a MicroPython user C module for the ESP32 port (CMake):
#
#   make -C <micropython>/ports/esp32 BOARD_DIR=<natrouter>/boards/WT32_ETH01 \
#        USER_C_MODULES=<natrouter>/boards/natlink/micropython.cmake
#
# (tools/build.py runs exactly that.) The core (natlink.c) is the one the host tests
# run against Debian's lwIP; the port file supplies FreeRTOS and esp_netif.
add_library(usermod_natlink INTERFACE)

target_sources(usermod_natlink INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/natlink.c
    ${CMAKE_CURRENT_LIST_DIR}/modnatlink.c
    ${CMAKE_CURRENT_LIST_DIR}/esp32/natlink_port_freertos.c
)

target_include_directories(usermod_natlink INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}
)

# Rings and TX slots live in one static natlink_t (README.md, "Memory"): 8 + 8 packets
# per link and 8 TX slots are ~36 KB of internal RAM on an ESP32 without PSRAM. A
# board may override them (e.g. -DNATLINK_RX_SLOTS=16 with PSRAM).
if(NOT NATLINK_RX_SLOTS)
    set(NATLINK_RX_SLOTS 8)
endif()
if(NOT NATLINK_TX_SLOTS)
    set(NATLINK_TX_SLOTS 8)
endif()
target_compile_definitions(usermod_natlink INTERFACE
    NATLINK_RX_SLOTS=${NATLINK_RX_SLOTS}
    NATLINK_TX_SLOTS=${NATLINK_TX_SLOTS}
)

target_link_libraries(usermod INTERFACE usermod_natlink)

# The ESP-IDF heap MicroPython's own may not take (esp32/natlink_heap.c): a board may
# set NATLINK_IDF_RESERVE (bytes) from what its Wi-Fi, Ethernet and lwIP need.
target_sources(usermod_natlink INTERFACE ${CMAKE_CURRENT_LIST_DIR}/esp32/natlink_heap.c)
target_link_libraries(usermod_natlink INTERFACE "-Wl,--wrap=gc_get_max_new_split")
if(NATLINK_IDF_RESERVE)   # else natlink_heap.c's default; natlink.IDF_RESERVE says which
    target_compile_definitions(usermod_natlink INTERFACE NATLINK_IDF_RESERVE=${NATLINK_IDF_RESERVE})
endif()

# The emulated board (boards/ESP32_QEMU sets NATLINK_QEMU): QEMU's OpenCores NIC behind
# network.LAN, and lwIP's IPv4 input hook for its PPP LAN (esp32/natlink_qemu.c).
if(NATLINK_QEMU)
    target_sources(usermod_natlink INTERFACE ${CMAKE_CURRENT_LIST_DIR}/esp32/natlink_qemu.c)
    target_link_libraries(usermod_natlink INTERFACE "-Wl,--wrap=esp_eth_mac_new_esp32")
    idf_component_get_property(natlink_lwip lwip COMPONENT_LIB)
    target_include_directories(${natlink_lwip} PRIVATE ${CMAKE_CURRENT_LIST_DIR}/esp32)
    target_compile_definitions(${natlink_lwip} PRIVATE
        "ESP_IDF_LWIP_HOOK_FILENAME=\"natlink_lwip_hook.h\"")
endif()
