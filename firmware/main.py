# Boot entry: runs the router in the background and leaves the REPL free.
#   import router; router.running.counters()
import board
import router

router.start(board)
