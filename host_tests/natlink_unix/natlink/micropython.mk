# The natlink binding (boards/natlink/modnatlink.c) in MicroPython's unix port, for
# host_tests/test_esp32_boards.py: the core and the binding as the ESP32 builds them,
# this directory's pthread port in place of FreeRTOS, and _lwipsim (in-memory lwIP
# netifs over Debian's liblwip) in place of network.LAN/WLAN.
#
#   make -C <micropython>/ports/unix USER_C_MODULES=<natrouter>/host_tests/natlink_unix
NATLINK_DIR := $(abspath $(USERMOD_DIR)/../../../boards/natlink)
LWIP_INC ?= /usr/include/lwip

SRC_USERMOD_C += $(NATLINK_DIR)/natlink.c $(NATLINK_DIR)/modnatlink.c \
	$(USERMOD_DIR)/natlink_port_unix.c $(USERMOD_DIR)/lwipsim.c
CFLAGS_USERMOD += -I$(NATLINK_DIR) -I$(LWIP_INC) -Wall -Wextra -Wno-unused-parameter \
	-Wno-missing-field-initializers -DNATLINK_RX_SLOTS=8 -DNATLINK_TX_SLOTS=8
LDFLAGS_USERMOD += -llwip -lpthread
