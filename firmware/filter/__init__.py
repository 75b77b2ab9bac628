# The firewall's room: which LAN host may open what (rules.py, the compiled rules the
# slow path asks; ruleconfig.py, the "firewall" section of natrouter.json) and the
# refusals it answers with (reject.py); and the packet capture (capture.py: a ring of
# pcap records the links' taps fill). Never imports network, socket or machine.
