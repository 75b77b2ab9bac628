# What the datapath (datapath.py) and the slow path (slowpath.py) share: the packet being
# handled, the counters, the flow table, the links and the router's own addresses. Named
# here once; the Router (router.py) makes one and hands it to both.

from compat import const, zeros
import nat
from .counters import NAMES as COUNTER_NAMES

LAN = const(0)   # a side: the link a packet came in on or leaves by, an index into links
WAN = const(1)


def flow_table(cfg, clock=None, table=None):
    """cfg's flow table: `table` emptied, at cfg's sizes, and given cfg's timeouts and
    share when its arrays hold cfg's sizes (holds()) (a restart keeps them: no new allocation, no
    fragmentation), else a new one."""
    t, n = cfg["table"], cfg["nat"]
    if holds(table, cfg):
        table.reshape(t["tcp"], t["udp"], t["icmp"])
        table.set_timeouts(**n["timeouts"])
        table.set_share(n["share"])
        return table
    return nat.Table(tcp=t["tcp"], udp=t["udp"], icmp=t["icmp"], clock=clock,
                     timeouts=n["timeouts"], share=n["share"])


def holds(table, cfg):
    """Whether the flow table (or None) can be reshaped to cfg's sizes in its own arrays."""
    t = cfg["table"]
    return table is not None and table.holds(t["tcp"], t["udp"], t["icmp"])


class Shared:
    def __init__(self, cfg, lan, wan, buf, clock=None, table=None):
        self.cfg = cfg            # the validated configuration in force (manage/config.py)
        self.links = (lan, wan)   # the board's links (boards/README.md), by side
        self.recvs = (lan.recv_into, wan.recv_into)  # bound once: a bound method allocates
        self.sends = (lan.send, wan.send)
        self.mtus = (lan.mtu, wan.mtu)
        self.table = flow_table(cfg, clock, table)
        # The receive buffer: every packet is handled in place in it.
        size = max(lan.mtu, wan.mtu)
        if buf is None:
            buf = bytearray(size)
        elif len(buf) < size:
            raise ValueError("receive buffer of %d bytes for an MTU of %d" % (len(buf), size))
        self.buf = buf
        self.packet = nat.Packet()          # parsed from buf: the slow path's view of it
        self.packet.bind(buf)
        self.fields = self.packet.fields    # ... and the words the datapath reads
        self.counters = zeros("I", len(COUNTER_NAMES))  # counters.py
        # The router's addresses: 16-bit halves for the per-packet checks (a whole
        # address is a heap int on 32-bit MicroPython), ints for the slow path.
        la, wa = cfg["lan"]["addr_int"], cfg["wan"]["addr_int"]
        self.lan_addr = la
        self.wan_addr = wa
        self.halves = ((la >> 16, la & 0xFFFF), (wa >> 16, wa & 0xFFFF))  # by side
        self.last_error = None    # repr of the latest exception the loop survived
