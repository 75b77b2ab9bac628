# Boot entry: runs the router on its own thread and leaves the REPL free.
#   import nr; nr.help()
import board
from manage.runner import runner

runner.start(board)

import web  # noqa: E402  the page on the LAN address and MQTT, beside the router (web/)

web.start(board)
