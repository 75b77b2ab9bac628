# WT32-ETH01 (Wireless-Tag): an ESP32-D0WD with a LAN8720 Ethernet PHY. The Ethernet
# port is the WAN, the Wi-Fi access point the LAN. The board interface
# (boards/README.md) is esp32board's (boards/esp32_common/, frozen into this board's
# firmware with everything else); this file names the hardware and the defaults.
#
# LAN8720 at PHY address 1 (MDC GPIO23, MDIO GPIO18). Its 50 MHz RMII clock comes from
# an oscillator into GPIO0, a strapping pin: running at reset it could put the chip in
# its download mode, so on revision 1.4 GPIO16 enables the oscillator, which
# network.LAN(power=...) drives high only once the firmware is up. (Where GPIO16 is not
# wired to it, driving it does nothing.)
#
# No factory-reset button: the board's only free button-like pin, GPIO0, carries that
# clock. Back to the defaults over the serial port: import nr; nr.reset().
from esp32board import AccessPoint, Ethernet, setup
from esp32board import (LAN_DHCP, boot, counters, open_links, reconfigure,  # noqa: F401
                        start, wait, memory, heap_room)  # the board interface
from esp32board import WEB_STACK, lan_hosts, lan_only  # noqa: F401  (the page's: web/)

setup("WT32-ETH01",
      wan=Ethernet(mdc=23, mdio=18, phy_addr=1, power=16, ref_clk=0, ref_clk_out=False),
      lan=AccessPoint(),
      # flows that fit the heap with Ethernet and Wi-Fi up (README: the router's heap at
      # these sizes, measured on the 32-bit WASI MicroPython)
      table={"tcp": 192, "udp": 96, "icmp": 32})
