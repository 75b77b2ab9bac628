# Olimex ESP32-POE (and ESP32-POE-ISO): an ESP32-WROOM-32 with a LAN8720 Ethernet PHY
# and 802.3af PoE. The Ethernet port is the WAN, the Wi-Fi access point the LAN. The
# board interface (boards/README.md) is esp32board's (boards/esp32_common/, frozen
# into this board's firmware with everything else); this file names the hardware and
# the defaults.
#
# LAN8720 at PHY address 0 (MDC GPIO23, MDIO GPIO18), powered through GPIO12 (a
# strapping pin: it must be low at reset, so the PHY is switched on by the firmware);
# the ESP32 drives the 50 MHz RMII clock out on GPIO17. The user button BUT1 (GPIO34,
# input only, pulled up on the board, low while pressed), held while the board powers
# up, resets natrouter.json to the defaults (esp32reset.py).
from esp32board import AccessPoint, Button, Ethernet, setup
from esp32board import (LAN_DHCP, boot, counters, open_links, reconfigure,  # noqa: F401
                        start, wait, memory, heap_room)  # the board interface
from esp32board import WEB_STACK, lan_hosts, lan_only  # noqa: F401  (the page's: web/)

setup("Olimex ESP32-POE",
      wan=Ethernet(mdc=23, mdio=18, phy_addr=0, power=12, ref_clk=17, ref_clk_out=True),
      lan=AccessPoint(),
      # flows that fit the heap with Ethernet and Wi-Fi up (README: the router's heap at
      # these sizes, measured on the 32-bit WASI MicroPython)
      table={"tcp": 192, "udp": 96, "icmp": 32},
      button=Button(34, "BUT1"))
