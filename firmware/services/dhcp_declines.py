# The addresses a DHCP server sets aside after DHCPDECLINE (RFC 2131 4.3.3: the client
# found the address in use), for services/dhcp_leases.py's Pool: at most `n` of them,
# DECLINE_PER_CLIENT by one client (its next decline frees its oldest), the oldest going
# back first when every place is taken. 10 bytes a place, made once.

from compat import const, zeros

DECLINE_MAX = const(8)         # places at most (a Pool takes at most a quarter of its pool)
DECLINE_PER_CLIENT = const(2)
NOBODY = const(-1)             # who: the client was forgotten since
_UNUSED = const(-2)            # who: a free place


class Declines:
    def __init__(self, n):
        self.n = n
        self.host = zeros("I", n)
        self.exp = zeros("i", n)
        self.who = zeros("h", n, _UNUSED)  # the table entry of the client who declined

    def used(self, d):
        return self.who[d] != _UNUSED

    def find(self, h):
        """The place of address h, or -1: it is not set aside."""
        for d in range(self.n):
            if self.who[d] != _UNUSED and self.host[d] == h:
                return d
        return -1

    def add(self, h, who, exp):
        """Set h aside until exp for the client of entry `who`."""
        mine = spare = oldest = -1
        n = 0
        w, e = self.who, self.exp
        for d in range(self.n):
            if w[d] == _UNUSED:
                spare = d
                continue
            if w[d] == who:
                n += 1
                if mine < 0 or e[d] - e[mine] < 0:
                    mine = d
            if oldest < 0 or e[d] - e[oldest] < 0:
                oldest = d
        d = mine if n >= DECLINE_PER_CLIENT else spare if spare >= 0 else oldest
        self.host[d] = h
        self.exp[d] = exp
        w[d] = who

    def disown(self, who):
        """The client of entry `who` is forgotten: its addresses stay aside, nobody's."""
        for d in range(self.n):
            if self.who[d] == who:
                self.who[d] = NOBODY

    def expire(self, now):
        for d in range(self.n):
            if self.who[d] != _UNUSED and self.exp[d] - now <= 0:
                self.who[d] = _UNUSED
