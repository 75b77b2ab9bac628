# What a board runs of natrouter's firmware, as a MicroPython manifest: the ESP32 boards
# freeze it into their images (boards/esp32_common/manifest.py includes this file), and
# tools/deploy.py copies the same files onto a board that runs from its filesystem
# (tools/hostenv.py reads this list). Not main.py: a frozen main.py would run at every
# boot before the filesystem's, so it goes onto the filesystem (tools/deploy.py).
metadata(description="natrouter: a NAT router for MicroPython boards", version="0.16.0")

module("compat.py")     # the one module that knows which runtime it is on
module("nr.py")         # the REPL's commands: import nr; nr.help()
package("nat")          # the translation engine
package("forward")      # the forwarding path
package("filter")       # the firewall: rules, rejects
package("services")     # what the router serves its LAN (DHCP)
package("manage")       # configuration, the management API, the router's life
package("web")          # the page on the LAN address, its JSON API, MQTT

# microdot 2.7.0, its core module only: third-party, pure Python, placed in build/upylib
# by `make upylib` (tools/upylib.py) from its pinned PyPI release, never committed. (The
# MQTT publisher's umqtt.simple is micropython-lib's: the ESP32 port freezes it already;
# the virtual boards take PyPI's 1.3.4 from build/upylib, on their MICROPYPATH.)
package("microdot", base_path="../build/upylib")
