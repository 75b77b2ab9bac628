# The forwarding path: router.py (the loop) over datapath.py (per packet: screen and
# translate) and slowpath.py (what the datapath hands on); README.md walks one packet.
