# Olimex ESP32-POE (and ESP32-POE-ISO): an ESP32-WROOM-32 with a LAN8720 Ethernet PHY
# and 802.3af PoE. The Ethernet port is the WAN, the Wi-Fi access point the LAN. The
# board interface (boards/README.md) is esp32board's (boards/esp32_common/, frozen
# into this board's firmware with everything else); this file names the hardware and
# the defaults.
#
# LAN8720 at PHY address 0 (MDC GPIO23, MDIO GPIO18), powered through GPIO12 (a
# strapping pin: it must be low at reset, so the PHY is switched on by the firmware);
# the ESP32 drives the 50 MHz RMII clock out on GPIO17.
from esp32board import AccessPoint, Ethernet, setup
from esp32board import LAN_DHCP, counters, open_links, start, wait  # noqa: F401  the board interface

setup("Olimex ESP32-POE",
      wan=Ethernet(mdc=23, mdio=18, phy_addr=0, power=12, ref_clk=17, ref_clk_out=True),
      lan=AccessPoint(),
      # flows that fit the heap with Ethernet and Wi-Fi up (README: the router's heap at
      # these sizes, measured on the 32-bit WASI MicroPython)
      table={"tcp": 192, "udp": 96, "icmp": 32})
