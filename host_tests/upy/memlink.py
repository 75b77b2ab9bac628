# An in-memory link (the Link of boards/README.md) for tests on CPython and MicroPython: two rings
# of preallocated bytearrays, so the router's per-packet path can be checked under
# heap_lock with it.

class MemoryLink:
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
