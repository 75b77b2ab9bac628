# Boot entry: runs the router on its own thread and leaves the REPL free.
#   import nr; nr.help()
import board
from manage.runner import runner

runner.start(board)
