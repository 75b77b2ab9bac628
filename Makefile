# natrouter host tasks. `make test` is what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 procps iputils-ping traceroute iperf3 ethtool socat tcpdump nftables gcc libc6-dev liblwip-dev busybox coturn dnsmasq-base mosquitto mosquitto-clients chromium chromium-driver

.PHONY: setup test lint layout natlink lwip-host upylib demo bench bench-net clean

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Debian tools for the virtual board's network tests; only as root, only if missing.
setup: $(VENV)/.installed
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	else echo "not root: skipping Debian packages ($(APT_PACKAGES)); network tests will be skipped"; fi

# ruff first (pyproject.toml), then every suite; tools/layout.py's copies are checked
# by host_tests/test_engine_layout.py.
test: setup natlink lwip-host upylib
	$(VENV)/bin/ruff check .
	$(PY) -m pytest host_tests -q

# The natlink C core (boards/natlink/) with its host harness, against Debian's lwIP
# (liblwip-dev: built with its own lwipopts.h, which the struct layouts depend on).
NATLINK_SRC := boards/natlink/natlink.c boards/natlink/host/natlink_port_posix.c boards/natlink/host/harness.c
NATLINK_SO := build/natlink/libnatlink_host.so
LWIP_INC ?= /usr/include/lwip

# Without liblwip-dev (not root), nothing is built and its tests are skipped.
natlink: setup
	@if [ -f $(LWIP_INC)/lwipopts.h ]; then $(MAKE) --no-print-directory $(NATLINK_SO); \
	else echo "liblwip-dev missing: natlink not built; its tests will be skipped"; fi

$(NATLINK_SO): $(NATLINK_SRC) boards/natlink/natlink.h boards/natlink/host/natlink_port_posix.h
	mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -fPIC -shared -Wl,--no-undefined -I$(LWIP_INC) -Iboards/natlink \
	  -Iboards/natlink/host -o $@ $(NATLINK_SRC) -llwip -lpthread

# The lwIP host board's host program (boards/lwip_host/host/): the natlink core and
# Debian's lwIP with two TAP netifs, talking to the firmware over Unix datagram sockets.
LWIP_HOST_SRC := boards/lwip_host/host/lwip_host.c boards/lwip_host/host/localstack.c boards/natlink/natlink.c boards/natlink/host/natlink_port_posix.c
LWIP_HOST_BIN := build/lwip_host/lwip_host
# Rings deeper than natlink's default 16: here the consumer is two processes sharing a CPU
# with the TAP readers, and a TCP burst overflowing 16 slots cut throughput by 3x
# (boards/lwip_host/README.md).
LWIP_HOST_SLOTS ?= -DNATLINK_RX_SLOTS=64 -DNATLINK_TX_SLOTS=64

# Without liblwip-dev (not root), nothing is built and the lwip_host tests are skipped.
lwip-host: setup
	@if [ -f $(LWIP_INC)/lwipopts.h ]; then $(MAKE) --no-print-directory $(LWIP_HOST_BIN); \
	else echo "liblwip-dev missing: the lwIP host program not built; its tests will be skipped"; fi

$(LWIP_HOST_BIN): $(LWIP_HOST_SRC) boards/natlink/natlink.h boards/natlink/host/natlink_port_posix.h boards/lwip_host/host/localstack.h
	mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra $(LWIP_HOST_SLOTS) -I$(LWIP_INC) -Iboards/natlink \
	  -Iboards/natlink/host -Iboards/lwip_host/host -o $@ $(LWIP_HOST_SRC) -llwip -lpthread

# The firmware's third-party MicroPython code into build/upylib, from pinned PyPI releases
# (tools/upylib.py): microdot (frozen into the ESP32 images, copied onto the virtual
# boards) and umqtt.simple (the virtual boards' MQTT). Never committed.
upylib: setup
	$(PY) tools/upylib.py

lint: setup
	$(VENV)/bin/ruff check .

# Rewrite the layout constants the fast modules copy (tools/layout.py).
layout: setup
	$(PY) tools/layout.py

demo: setup upylib
	$(PY) tools/vboard.py demo

bench: setup
	$(PY) tools/bench.py

# Throughput through the virtual board and the lwIP host board vs a bare forwarder and
# the kernel's NAT (root).
bench-net: setup lwip-host upylib
	$(PY) tools/bench_net.py

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
