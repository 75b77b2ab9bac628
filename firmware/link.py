# The router's view of a network interface: whole IPv4 packets in and out, nothing else.
# Boards implement Link (ARP, framing, sockets, waiting); MemoryLink is the in-memory
# link the host tests and the heap_lock checks use.


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


class MemoryLink(Link):
    """A link backed by two rings of preallocated bytearrays (no deque, no per-packet
    allocation): `inject()` queues a packet for the router to receive, the router's
    `send()` queues it for the test to `take()`. A full ring drops the newest packet
    and counts it, as a real NIC would."""

    def __init__(self, name, mtu=1500, slots=8):
        self.name = name
        self.mtu = mtu
        self.rx = _Ring(slots, mtu)   # towards the router
        self.tx = _Ring(slots, mtu)   # sent by the router

    # Link interface (router side)
    def recv_into(self, buf):
        return self.rx.get_into(buf)

    def send(self, buf, n):
        self.tx.put(buf, n)

    # Test side (may allocate)
    def inject(self, pkt):
        """Queue bytes for the router; False when the ring was full (dropped)."""
        return self.rx.put(pkt, len(pkt))

    def take(self):
        """The oldest packet the router sent, as bytes, or None."""
        return self.tx.get()

    def take_all(self):
        out = []
        while True:
            p = self.tx.get()
            if p is None:
                return out
            out.append(p)

    def pending(self):
        """Packets queued for the router and not yet received."""
        return self.rx.count


class _Ring:
    def __init__(self, slots, size):
        self.bufs = [bytearray(size) for _ in range(slots)]
        self.lens = [0] * slots
        self.head = 0    # next to read
        self.count = 0
        self.dropped = 0

    def put(self, src, n):
        slots = len(self.bufs)
        if self.count == slots or n > len(self.bufs[0]):
            self.dropped += 1
            return False
        i = self.head + self.count
        if i >= slots:
            i -= slots
        dst = self.bufs[i]
        for j in range(n):  # a slice copy would allocate a memoryview on MicroPython
            dst[j] = src[j]
        self.lens[i] = n
        self.count += 1
        return True

    def get_into(self, buf):
        if not self.count:
            return 0
        i = self.head
        src = self.bufs[i]
        n = self.lens[i]
        for j in range(n):
            buf[j] = src[j]
        self._pop()
        return n

    def get(self):
        if not self.count:
            return None
        i = self.head
        pkt = bytes(self.bufs[i][:self.lens[i]])
        self._pop()
        return pkt

    def _pop(self):
        self.head += 1
        if self.head == len(self.bufs):
            self.head = 0
        self.count -= 1
