# natrouter in QEMU (Espressif's esp32 machine): the firmware as on the real boards,
# frozen into the image, natlink between lwIP and the router. QEMU has no radio: the WAN
# is its OpenCores Ethernet NIC, which network.LAN drives as a DP83848 PHY (natlink's
# QEMU part puts the OpenCores MAC behind it), taking a DHCP lease; the LAN is PPP over
# UART2 (ppplan.py) to a Linux host's pppd. tools/qemu.py runs it between network
# namespaces; the board interface (boards/README.md) is esp32board's.
from esp32board import Ethernet, setup
from esp32board import (boot, counters, open_links, reconfigure,  # noqa: F401
                        start, wait, memory, heap_room)  # the board interface
from ppplan import PppLan

LAN_DHCP = False  # a PPP peer is given its address by IPCP: no DHCP on this LAN

setup("ESP32 in QEMU",
      wan=Ethernet(mdc=23, mdio=18, phy_addr=1, phy="DP83848"),
      lan=PppLan(uart=2, tx=17, rx=16),
      # the real boards' sizes: what the emulated heap is measured with
      table={"tcp": 192, "udp": 96, "icmp": 32})
