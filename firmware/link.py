# The router's view of a network interface: whole IPv4 packets in and out, nothing else.
# Boards implement Link (ARP, framing, sockets, waiting); host_tests/upy/memlink.py has
# the in-memory link the tests and the heap_lock checks use.


class Link:
    """One IPv4 interface, as the router sees it (boards/README.md).

    name: "lan" or "wan".
    mtu:  the largest IPv4 packet the link carries; the router's receive buffer is at
          least this long.

    Both methods run on the router's per-packet path: they must not block and should
    not allocate (e.g. `sock.write(buf, 0, n)` rather than `sock.send(buf[:n])`).
    Non-IPv4 traffic (ARP, ...) is the board's business and never reaches the router.
    Waiting for traffic is the board's job too (`board.wait`), not the link's."""

    name = "link"
    mtu = 1500

    def recv_into(self, buf):
        """Copy one whole pending IPv4 packet into buf; return its length, 0 if none."""
        raise NotImplementedError

    def send(self, buf, n):
        """Send buf[0:n], an IPv4 packet, towards its destination: directly when the
        destination is on the link's subnet, else via the link's gateway. The board
        resolves the next hop and frames it; it must not keep a reference to buf."""
        raise NotImplementedError
