# Any ESP32 module (ESP32-WROOM-32, DevKitC...): Wi-Fi only. The station is the WAN
# (wifi.sta_ssid, wifi.sta_key, then wifi.sta_networks in order; wifi.sta_mac), the
# access point the LAN, on one radio. The board interface (boards/README.md) is
# esp32board's (boards/esp32_common/, frozen into this board's firmware with everything
# else); this file names the hardware and the defaults.
#
# One radio for both: once the station has joined, the access point moves to the
# upstream network's channel (wifi.ap_channel only holds until then) and clients that
# were on another channel reconnect; every forwarded packet crosses the air twice, so
# the throughput is at most half of one link's, less than that with retries; power
# saving is off (it would hold packets until the next beacon).
#
# The BOOT button (GPIO0, low while pressed) resets natrouter.json to the defaults
# (esp32reset.py): GPIO0 is a strapping pin, held at power-up it starts the download
# mode, so press it within 3 s after powering up, and hold it.
from esp32board import AccessPoint, Button, Station, setup
from esp32board import (LAN_DHCP, boot, counters, open_links, reconfigure,  # noqa: F401
                        start, wait, memory, heap_room)  # the board interface
from esp32board import WEB_STACK, lan_hosts, lan_only  # noqa: F401  (the page's: web/)

setup("ESP32 (Wi-Fi)",
      wan=Station(),
      lan=AccessPoint(),
      # flows that fit the heap with the station and the access point up, no Ethernet
      # DMA buffers (README: the router's heap at these sizes, measured on the 32-bit
      # WASI MicroPython)
      table={"tcp": 224, "udp": 112, "icmp": 32},
      button=Button(0, "BOOT", pull="up", window_ms=3000))
