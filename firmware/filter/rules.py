# The firewall's compiled rules (issue 21): ordered, first match wins, then the default
# policy. Stateful: the slow path asks decide() once, when a flow would be made (a LAN
# host's new flow, a port forward's or a mapping's inbound one: forward/slowpath.py); a
# known flow's packets never come here, so established traffic pays nothing and the
# replies of an allowed flow always pass. When the rules change, flows the new rules
# would not allow end at once (refuses_flow(), over the table's flows).
#
# Memory is fixed and made in the constructor: the blocked hosts then the rules as
# words of one array('I'), their hit counters in another (a hit: a packet that would
# have opened a flow and met the rule). Slow path only: it may build ints.
from array import array

import nat
from .ruleconfig import RULES_MAX, BLOCKED_MAX, ACTIONS, DIRECTIONS, subnet

ALLOW = 0
DROP = 1
REJECT = 2
OUT = 0             # a LAN host opening a flow
IN = 1              # a remote host opening one to a port forward (or an admitted mapping)
_ANY_DIR = 2
_ANY_PROTO = 0
SLOTS = BLOCKED_MAX + RULES_MAX
# A compiled rule's words
_DIR = 0
_PROTO = 1
_LAN_NET = 2
_LAN_MASK = 3
_REMOTE_NET = 4
_REMOTE_MASK = 5
_PORT_FIRST = 6
_PORT_LAST = 7
_ACTION = 8
_WORDS = 9
_PROTO_NUM = {"any": _ANY_PROTO, "tcp": nat.TCP, "udp": nat.UDP, "icmp": nat.ICMP}
_ECHO_REQUEST = 8   # what an ICMP query flow in the table is taken to be (see refuses_flow)


def bytes_used():
    """The compiled rules' and counters' bytes (the arrays' items; the note's figure)."""
    return 4 * (SLOTS * _WORDS + SLOTS + 1)


class Firewall:
    def __init__(self):
        self._words = array("I", bytes(4 * SLOTS * _WORDS))
        self._hits = array("I", bytes(4 * (SLOTS + 1)))   # the default's last
        self._keys = []      # what each slot was compiled from: hits follow a moved rule
        self._used = 0
        self._default = ALLOW
        self._section = None

    def load(self, section):
        """Compile a validated "firewall" section (ruleconfig.validate). Returns True
        when it differs from the one in force (the caller ends the flows it refuses).
        A rule kept (same keys, anywhere in the list) keeps its hit count."""
        if section == self._section:
            return False
        keys = section["blocked"] + section["rules"]   # hosts (str), then rules (dict)
        old_keys, old_hits = self._keys, list(self._hits)
        w = self._words
        for i, key in enumerate(keys):
            at = i * _WORDS
            if isinstance(key, str):
                row = (_ANY_DIR, _ANY_PROTO, nat.ip(key), 0xFFFFFFFF, 0, 0, 0, 0xFFFF, REJECT)
            else:
                r = key
                port = r["port"]
                first, last = ((0, 0xFFFF) if port == "any" else port if isinstance(port, list)
                               else (port, port))
                row = ((DIRECTIONS.index(r["dir"]), _PROTO_NUM[r["proto"]])
                       + subnet(r["lan"], "lan") + subnet(r["remote"], "remote")
                       + (first, last, ACTIONS.index(r["action"])))
            for j in range(_WORDS):
                w[at + j] = row[j]
            self._hits[i] = old_hits[old_keys.index(key)] if key in old_keys else 0
        self._used = len(keys)
        self._keys = keys
        if section["default"] != (self._section or {}).get("default"):
            self._hits[SLOTS] = 0
        self._default = ACTIONS.index(section["default"])
        self._section = section
        return True

    def _match(self, direction, proto, lan, remote, port):
        """The slot of the first rule that matches, or SLOTS (the default)."""
        w = self._words
        for i in range(self._used):
            at = i * _WORDS
            d = w[at + _DIR]
            p = w[at + _PROTO]
            if ((d == _ANY_DIR or d == direction) and (p == _ANY_PROTO or p == proto)
                    and lan & w[at + _LAN_MASK] == w[at + _LAN_NET]
                    and remote & w[at + _REMOTE_MASK] == w[at + _REMOTE_NET]
                    and w[at + _PORT_FIRST] <= port <= w[at + _PORT_LAST]):
                return i
        return SLOTS

    def decide(self, direction, proto, lan, remote, port):
        """ALLOW, DROP or REJECT for a flow about to be opened (counted as a hit). lan:
        the LAN host (an int), remote: the other end, port: the remote's port (for IN
        the WAN port opened; for ICMP the type)."""
        i = self._match(direction, proto, lan, remote, port)
        self._hits[i] += 1
        return self._default if i == SLOTS else self._words[i * _WORDS + _ACTION]

    def refuses_flow(self, flow, lan_net, lan_mask):
        """Whether the rules would not have let this flow of Table.flows() open (its
        proto, src, sport, dst, dport, xl_host, xl_port, final, final_port, idle): a
        NAT flow is the LAN host's outbound one; a REDIRECT flow from a remote host an
        inbound one (hairpinned flows, LAN to LAN, are not filtered). An ICMP query is
        judged as an echo request. Counts no hit."""
        proto, src, _, dst, dport, _, _, final, final_port, _ = flow
        if final == dst and final_port == dport:
            direction, lan, remote = OUT, src, dst
        elif src & lan_mask == lan_net:
            return False
        else:
            direction, lan, remote = IN, final, src
        port = _ECHO_REQUEST if proto == nat.ICMP else dport
        i = self._match(direction, proto, lan, remote, port)
        return (self._default if i == SLOTS else self._words[i * _WORDS + _ACTION]) != ALLOW

    def hits(self):
        """({"blocked": [n per host], "rules": [n per rule], "default": n})."""
        h = self._hits
        nb = len([k for k in self._keys if isinstance(k, str)])
        return {"blocked": [h[i] for i in range(nb)],
                "rules": [h[i] for i in range(nb, self._used)], "default": h[SLOTS]}

