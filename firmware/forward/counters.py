# The router's counters: one array('I') slot each, bumped on the per-packet path (the
# datapath) and the slow path, read as a dict by Router.counters(). NAMES gives the
# order; each one's index, C_<NAME>, is written below from it (tools/layout.py), and the
# fast modules copy the indices they use the same way.
from compat import const

NAMES = (
    "rx_lan",                   # packets received on the LAN link
    "rx_wan",                   # ... on the WAN link
    "translated_out",           # LAN -> WAN, sent
    "translated_in",            # WAN -> LAN, sent
    "flows_added",              # new flows: outbound NAT and port-forward flows
    "forwards_hit",             # new flows made by a port forward
    "echo_replies",             # pings of the router's own addresses answered
    "dropped_malformed",        # failed to parse: bad header, lengths, checksum (RFC 1812 5.2.2)
    "dropped_to_router",        # to the router's addresses, not an echo request
    "dropped_lan_local",        # LAN packets to the LAN subnet, broadcast or multicast
    "dropped_bad_source",       # LAN source off the LAN subnet, or WAN source on it
    "dropped_martian",          # impossible sources (RFC 1812 5.3.7): 0/8, 127/8, 169.254/16,
                                # 224/4, 240/4, a subnet's network or broadcast address, the
                                # router's own addresses
    "dropped_source_route",     # loose or strict source route option (RFC 7126 4.3, 4.4)
    "dropped_port_zero",        # TCP or UDP to or from port 0
    "dropped_icmp_error",       # ICMP errors about no flow, or not sent back to the quoted source
    "dropped_unsolicited",      # WAN packets of no flow and no port forward
    "dropped_cannot_nat",       # protocol or addresses the engine never translates
    "dropped_overlap",          # no free translated port
    "dropped_too_big",          # longer than the outgoing link's MTU
    "ttl_exceeded_sent",        # ICMP Time Exceeded sent
    "ttl_exceeded_rate_limited",  # ... not sent: over the rate limit
    "ttl_exceeded_silent",      # ... not sent: about an ICMP error, a fragment, broadcast
    "frag_needed_sent",         # ICMP Fragmentation Needed sent (DF set, too big)
    "errors",                   # exceptions caught by run() (last_error has the latest)
    "hairpinned",               # LAN -> WAN address -> LAN, sent (RFC 4787 REQ-9)
    "filtered_in",              # new inbound flows to a mapping the filtering admits
    "dropped_filtered",         # inbound to a mapping the filtering refuses (RFC 4787 REQ-8)
    "dropped_table_full",       # no room for a new flow under the fairness rules (nat/room.py)
    "fragmented",               # packets sent as fragments: too long for the link, DF clear
    "dropped_firewall",         # would have opened a flow the firewall refuses (filter/rules.py)
    "firewall_rejects_sent",    # ... answered (reject): a TCP RST or ICMP 3/13, within the rate limit
)

# ---- counter indices: written by tools/layout.py from NAMES; do not edit
C_RX_LAN = const(0)
C_RX_WAN = const(1)
C_TRANSLATED_OUT = const(2)
C_TRANSLATED_IN = const(3)
C_FLOWS_ADDED = const(4)
C_FORWARDS_HIT = const(5)
C_ECHO_REPLIES = const(6)
C_DROPPED_MALFORMED = const(7)
C_DROPPED_TO_ROUTER = const(8)
C_DROPPED_LAN_LOCAL = const(9)
C_DROPPED_BAD_SOURCE = const(10)
C_DROPPED_MARTIAN = const(11)
C_DROPPED_SOURCE_ROUTE = const(12)
C_DROPPED_PORT_ZERO = const(13)
C_DROPPED_ICMP_ERROR = const(14)
C_DROPPED_UNSOLICITED = const(15)
C_DROPPED_CANNOT_NAT = const(16)
C_DROPPED_OVERLAP = const(17)
C_DROPPED_TOO_BIG = const(18)
C_TTL_EXCEEDED_SENT = const(19)
C_TTL_EXCEEDED_RATE_LIMITED = const(20)
C_TTL_EXCEEDED_SILENT = const(21)
C_FRAG_NEEDED_SENT = const(22)
C_ERRORS = const(23)
C_HAIRPINNED = const(24)
C_FILTERED_IN = const(25)
C_DROPPED_FILTERED = const(26)
C_DROPPED_TABLE_FULL = const(27)
C_FRAGMENTED = const(28)
C_DROPPED_FIREWALL = const(29)
C_FIREWALL_REJECTS_SENT = const(30)
# ---- end of layout
