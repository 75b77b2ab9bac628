# Services the router offers its LAN: the DHCP server (dhcp.py over dhcp_msg.py,
# dhcp_leases.py and dhcp_config.py).
