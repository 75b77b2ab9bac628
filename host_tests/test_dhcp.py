"""The LAN's DHCP server (firmware/services/dhcp.py, RFC 2131/2132), with scapy as the
independent oracle: every request is built by scapy's BOOTP()/DHCP() layers and every
reply parsed by them.

- the exchanges: DORA, renew, rebind, init-reboot, release, decline, inform, static and
  client-id leases, requested addresses, exhaustion, timeouts (a fake clock), restarts
  through LeaseFile, reply_dst per RFC 2131 4.1, option encoding and order;
- validation of the config section, key by key;
- hostile input (hypothesis): handle() never raises, never writes past out, and answers
  with nothing or a valid BOOTREPLY;
- the same module on the MicroPython unix port and the 32-bit WASI build
  (upy/dhcp_cases.py: asserts, and a transcript compared with CPython's byte for byte).
"""
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from services import dhcp, dhcp_config
from runtimes import MicroPythonError, run_unix, run_wasi

import dhcp_cases
from dhcp_cases import LAN, MASK, MAC1, MAC2, MAC3, Clock

BCAST = "255.255.255.255"
TYPES = {"offer": 2, "ack": 5, "nak": 6}


def make(cfg=None, store=None, t=1000):
    c = {"first": "192.168.4.100", "last": "192.168.4.109"}
    c.update(cfg or {})
    dns = c.pop("dns", ())  # the configuration's top-level "dns"
    clock = Clock(t)
    srv = dhcp.DhcpServer(c, LAN, MASK, dns=dns, store=store, clock=clock)
    assert srv.problems == []
    return srv, clock


def request(mtype, mac=MAC1, ciaddr="0.0.0.0", giaddr="0.0.0.0", flags=0, xid=0x1234,
            **opts):
    """A client message built by scapy; opts are scapy's option names."""
    options = [("message-type", mtype)] + list(opts.items()) + ["end"]
    return bytes(BOOTP(op=1, htype=1, hlen=6, xid=xid, flags=flags, ciaddr=ciaddr,
                       giaddr=giaddr, chaddr=mac + bytes(10)) / DHCP(options=options))


def exchange(srv, msg, out_len=576, limit=548):
    """scapy's parse of the reply (or None); checks it is a valid BOOTREPLY that fits
    out and the client's limit (default: a 576-byte datagram less IP and UDP headers)."""
    out = bytearray(out_len)
    n = srv.handle(msg, len(msg), out)
    assert len(out) == out_len
    assert srv.counters()["errors"] == 0, srv.last_error
    if n == 0:
        assert srv.reply_dst is None
        return None
    assert 300 <= n <= min(out_len, limit)
    return check_reply(bytes(out[:n]), msg)


def check_reply(data, msg):
    r = BOOTP(data)
    assert r.op == 2 and r.htype == 1 and r.hlen == 6 and r.hops == 0
    assert r.xid == BOOTP(msg).xid and r.chaddr == BOOTP(msg).chaddr
    assert r.options == b"\x63\x82\x53\x63" and r.haslayer(DHCP)
    opts = r[DHCP].options
    assert "end" in opts and all(o == "end" or o == "pad" or isinstance(o, tuple)
                                 for o in opts), opts
    assert opts.index("end") == len(opts) - 1 or set(opts[opts.index("end") + 1:]) == {"pad"}
    assert dict(o for o in opts if isinstance(o, tuple) and len(o) == 2)["message-type"] in (
        2, 5, 6)
    return r


def options(r):
    """{name: value} of a reply's options (a tuple for several values)."""
    out = {}
    for o in r[DHCP].options:
        if isinstance(o, tuple):
            out[o[0]] = o[1] if len(o) == 2 else o[1:]
    return out


def codes(r):
    """The option codes in the order the raw reply holds them."""
    raw = bytes(r)[240:]
    i, out = 0, []
    while raw[i] != 255:
        if raw[i] == 0:
            i += 1
            continue
        out.append(raw[i])
        i += 2 + raw[i + 1]
    return out


def mtype(r):
    return options(r)["message-type"]


def dora(srv, mac=MAC1, server_id=LAN, **opts):
    offer = exchange(srv, request("discover", mac, **opts))
    assert mtype(offer) == TYPES["offer"]
    opts["requested_addr"] = offer.yiaddr  # the DHCPREQUEST names the offered one
    ack = exchange(srv, request("request", mac, server_id=server_id, **opts))
    assert mtype(ack) == TYPES["ack"] and ack.yiaddr == offer.yiaddr
    return ack.yiaddr


# ---- the exchanges


def test_dora_and_every_option():
    srv, _ = make({"dns": ["192.0.2.53", "192.0.2.54"], "lease_s": 7200})
    offer = exchange(srv, request("discover", param_req_list=[6, 3, 1]))
    assert offer.yiaddr == "192.168.4.100" and offer.ciaddr == "0.0.0.0"
    assert offer.siaddr == "0.0.0.0" and offer.giaddr == "0.0.0.0" and offer.flags == 0
    assert srv.reply_dst == ("192.168.4.100", 68, False, MAC1)
    o = options(offer)
    assert o == {"message-type": 2, "server_id": LAN, "lease_time": 7200,
                 "renewal_time": 3600, "rebinding_time": 6300, "subnet_mask": MASK,
                 "router": LAN, "name_server": ("192.0.2.53", "192.0.2.54")}
    # 53 and 54 first, the lease times, then the parameters in the client's order.
    assert codes(offer) == [53, 54, 51, 58, 59, 6, 3, 1]
    ack = exchange(srv, request("request", server_id=LAN, requested_addr="192.168.4.100",
                                param_req_list=[1, 3]))
    assert ack.yiaddr == "192.168.4.100" and mtype(ack) == 5
    assert codes(ack) == [53, 54, 51, 58, 59, 1, 3, 6]
    assert options(ack)["lease_time"] == 7200
    assert srv.reply_dst == ("192.168.4.100", 68, False, MAC1)
    assert srv.leases() == [{"mac": "02:00:00:00:00:01", "addr": "192.168.4.100",
                             "remaining": 7200, "static": False, "state": "bound"}]
    c = srv.counters()
    assert (c["received"], c["offers"], c["acks"], c["naks"]) == (2, 1, 1, 0)


def test_default_dns_is_the_router_and_broadcast_flag_broadcasts():
    srv, _ = make()
    offer = exchange(srv, request("discover", flags=0x8000))
    assert options(offer)["name_server"] == LAN
    assert offer.flags == 0x8000  # copied (RFC 2131 table 3)
    assert srv.reply_dst == (BCAST, 68, True, None)


def test_renew_and_rebind():
    store = dhcp_cases.MemStore()
    srv, clock = make(store=store)
    addr = dora(srv)
    assert store.saves == 1
    clock.t += 1801  # T1: RENEWING, unicast to us
    ack = exchange(srv, request("request", ciaddr=addr))
    assert mtype(ack) == 5 and ack.ciaddr == addr and ack.yiaddr == addr
    assert srv.reply_dst == (addr, 68, False, None)
    assert srv.leases()[0]["remaining"] == 3600
    clock.t += 3200  # past T2 of the renewed lease: REBINDING, broadcast
    ack = exchange(srv, request("request", ciaddr=addr, flags=0x8000))
    assert mtype(ack) == 5 and srv.reply_dst == (addr, 68, False, None)  # ciaddr wins
    assert store.saves == 1  # a renewal is not saved: flash wear
    # Someone else's address, or one off the LAN: NAK, broadcast (4.1).
    dora(srv, MAC2)
    assert mtype(exchange(srv, request("request", MAC2, ciaddr=addr))) == 6
    assert srv.reply_dst == (BCAST, 68, True, None)
    assert mtype(exchange(srv, request("request", ciaddr="10.0.0.5"))) == 6


def test_renew_without_record_rebinds_a_free_address():
    # E.g. the lease file lost its last renewal: the client keeps its address.
    store = dhcp_cases.MemStore()
    srv, _ = make(store=store)
    ack = exchange(srv, request("request", MAC2, ciaddr="192.168.4.105"))
    assert mtype(ack) == 5 and ack.yiaddr == "192.168.4.105"
    assert store.saves == 1  # a new binding
    ack = exchange(srv, request("request", MAC3, ciaddr="192.168.4.20"))  # not in the pool
    assert mtype(ack) == 6


def test_init_reboot():
    srv, _ = make()
    addr = dora(srv)
    ack = exchange(srv, request("request", requested_addr=addr))
    assert mtype(ack) == 5 and ack.yiaddr == addr and ack.ciaddr == "0.0.0.0"
    assert srv.reply_dst == (addr, 68, False, MAC1)
    nak = exchange(srv, request("request", requested_addr="192.168.4.103"))
    assert mtype(nak) == 6 and nak.yiaddr == "0.0.0.0" and nak.flags == 0  # as sent
    assert options(nak) == {"message-type": 6, "server_id": LAN}
    assert srv.reply_dst == (BCAST, 68, True, None)
    # The wrong network: NAK even without a record; no record on ours: silent.
    assert mtype(exchange(srv, request("request", MAC2, requested_addr="10.1.1.1"))) == 6
    assert exchange(srv, request("request", MAC2, requested_addr="192.168.4.104")) is None
    assert srv.counters()["naks"] == 2 and srv.counters()["ignored"] == 1
    # After a release the client is still known: the same address is ACKed.
    exchange(srv, request("release", ciaddr=addr, server_id=LAN))
    assert mtype(exchange(srv, request("request", requested_addr=addr))) == 5


def test_selecting_another_server_frees_our_offer():
    srv, clock = make({"last": "192.168.4.101"})
    assert exchange(srv, request("discover", MAC2)).yiaddr == "192.168.4.100"
    clock.t += 1
    assert exchange(srv, request("discover")).yiaddr == "192.168.4.101"
    assert exchange(srv, request("request", server_id="192.168.4.254",
                                 requested_addr="192.0.2.9")) is None
    assert srv.counters()["dropped_other_server"] == 1
    # MAC1's offer ended: its address goes before MAC2's older offer, still held.
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.101"
    assert srv.counters()["taken_free"] == 1 and srv.counters()["taken_offers"] == 0


def test_selecting_an_expired_offer_still_binds_if_free():
    srv, clock = make()
    exchange(srv, request("discover"))
    clock.t += dhcp.OFFER_S + 5
    ack = exchange(srv, request("request", server_id=LAN, requested_addr="192.168.4.100"))
    assert mtype(ack) == 5


def test_release_then_discover():
    store = dhcp_cases.MemStore()
    srv, clock = make(store=store)
    addr = dora(srv)
    assert exchange(srv, request("release", ciaddr=addr, server_id=LAN)) is None
    assert srv.leases() == [] and srv.counters()["releases"] == 1
    assert store.saves == 1 and store.data["leases"] != []  # written with the next batch
    clock.t += dhcp.SAVE_S
    srv.tick()
    assert store.data["leases"] == [] and store.saves == 2
    assert dora(srv, MAC2) == "192.168.4.101"  # the released one stays MAC1's if possible
    assert exchange(srv, request("discover")).yiaddr == addr
    # A release of an address the client does not hold, or to another server: ignored.
    exchange(srv, request("release", MAC2, ciaddr=addr))
    exchange(srv, request("release", MAC2, ciaddr="192.168.4.101", server_id="10.0.0.1"))
    c = srv.counters()
    assert (c["releases"], c["ignored"], c["dropped_other_server"]) == (1, 1, 1)
    assert [x["addr"] for x in srv.leases() if x["state"] == "bound"] == ["192.168.4.101"]


def test_decline_sets_the_address_aside():
    store = dhcp_cases.MemStore()
    srv, clock = make({"last": "192.168.4.101"}, store=store)
    addr = dora(srv)
    assert exchange(srv, request("decline", requested_addr=addr, server_id=LAN)) is None
    assert srv.counters()["declines"] == 1 and store.saves == 1
    assert [(x["state"], x["mac"]) for x in srv.leases()] == [("declined", "02:00:00:00:00:01")]
    clock.t += dhcp.SAVE_S
    srv.tick()
    assert store.saves == 2 and store.data["leases"] == []  # the binding ended
    assert exchange(srv, request("discover")).yiaddr == "192.168.4.101"
    # .100 declined: MAC1's offer is the only address left, and MAC2 takes it.
    assert exchange(srv, request("discover", MAC2)).yiaddr == "192.168.4.101"
    assert mtype(exchange(srv, request("request", MAC2, server_id=LAN,
                                       requested_addr=addr))) == 6
    clock.t += dhcp.DECLINE_S + 1
    assert exchange(srv, request("discover", MAC2)).yiaddr == "192.168.4.101"  # its own
    assert exchange(srv, request("discover", MAC3)).yiaddr == addr
    # Without the address (RFC 2131 4.4.1 requires it): malformed.
    before = srv.counters()["dropped_malformed"]
    exchange(srv, request("decline", MAC2))
    assert srv.counters()["dropped_malformed"] == before + 1


def test_inform():
    srv, _ = make()
    ack = exchange(srv, request("inform", MAC2, ciaddr="192.168.4.20", param_req_list=[3]))
    assert mtype(ack) == 5 and ack.yiaddr == "0.0.0.0" and ack.ciaddr == "192.168.4.20"
    o = options(ack)
    assert "lease_time" not in o and "renewal_time" not in o and "rebinding_time" not in o
    assert o["router"] == LAN and o["subnet_mask"] == MASK and o["name_server"] == LAN
    assert codes(ack)[2] == 3
    assert srv.reply_dst == ("192.168.4.20", 68, False, None)
    assert srv.leases() == [] and srv.counters()["informs"] == 1
    assert exchange(srv, request("inform", MAC2)) is None  # no ciaddr
    assert exchange(srv, request("inform", MAC2, ciaddr="10.0.0.2")) is None  # not ours


def test_static_lease_by_mac():
    cfg = {"static": [{"mac": "02:00:00:00:00:03", "addr": "192.168.4.100"},
                      {"mac": "02:00:00:00:00:02", "addr": "192.168.4.30"}]}
    srv, _ = make(cfg)
    assert dora(srv, MAC1, requested_addr="192.168.4.100") == "192.168.4.101"
    assert dora(srv, MAC3, requested_addr="192.168.4.105") == "192.168.4.100"
    # Keyed by MAC even when the client sends a client identifier.
    assert dora(srv, MAC2, client_id=b"\x01whoever") == "192.168.4.30"
    assert mtype(exchange(srv, request("request", MAC3, requested_addr="192.168.4.101"))) == 6
    assert mtype(exchange(srv, request("request", MAC3, ciaddr="192.168.4.100"))) == 5
    static = sorted((x["mac"], x["addr"], x["state"]) for x in srv.leases() if x["static"])
    assert static == [("02:00:00:00:00:02", "192.168.4.30", "bound"),
                      ("02:00:00:00:00:03", "192.168.4.100", "bound")]
    exchange(srv, request("release", MAC3, ciaddr="192.168.4.101"))  # not its address
    exchange(srv, request("decline", MAC3, requested_addr="192.168.4.100"))
    assert srv.counters()["ignored"] == 2
    assert [x["state"] for x in srv.leases() if x["mac"].endswith("03")] == ["bound"]
    exchange(srv, request("release", MAC3, ciaddr="192.168.4.100"))
    assert [x["state"] for x in srv.leases() if x["mac"].endswith("03")] == ["reserved"]
    assert srv.counters()["releases"] == 1


def test_client_id_keys_the_lease():
    srv, _ = make()
    a = dora(srv, MAC1, client_id=b"\x01laptop")
    # The same identifier from another NIC: the same lease; the reply echoes it (RFC 6842).
    offer = exchange(srv, request("discover", MAC2, client_id=b"\x01laptop"))
    assert offer.yiaddr == a and options(offer)["client_id"] == b"\x01laptop"
    # The same NIC with another identifier (or none): another client.
    assert dora(srv, MAC1, client_id=b"\x01phone") != a
    assert dora(srv, MAC1) not in (a,)
    # Long identifiers (RFC 4361 DUIDs) are told apart beyond the first bytes.
    duid1 = b"\xff" + bytes(range(40))
    duid2 = b"\xff" + bytes(range(39)) + b"\x99"
    b1, b2 = dora(srv, MAC3, client_id=duid1), dora(srv, MAC3, client_id=duid2)
    assert b1 != b2 and exchange(srv, request("discover", MAC2, client_id=duid1)).yiaddr == b1


def test_requested_address_honoured_if_free():
    srv, _ = make()
    assert exchange(srv, request("discover", requested_addr="192.168.4.107")).yiaddr == \
        "192.168.4.107"
    # Held by MAC1's offer, out of the pool, the router, off the LAN: a pool address.
    for want in ("192.168.4.107", "192.168.4.20", LAN, "10.0.0.7"):
        assert exchange(srv, request("discover", MAC2, requested_addr=want)).yiaddr == \
            "192.168.4.100"


def test_previous_address_before_the_requested_one():
    # RFC 2131 4.3.1: the current or previous binding, else the requested address.
    srv, _ = make()
    addr = dora(srv)
    assert exchange(srv, request("discover", requested_addr="192.168.4.105")).yiaddr == addr
    exchange(srv, request("release", ciaddr=addr))
    assert exchange(srv, request("discover", requested_addr="192.168.4.105")).yiaddr == addr
    # A previous address now held by another client: the requested one.
    srv, clock = make({"lease_s": 120})
    dora(srv, MAC1)
    clock.t += 121
    dora(srv, MAC2, requested_addr=addr)
    assert exchange(srv, request("discover", requested_addr="192.168.4.105")).yiaddr == \
        "192.168.4.105"


def test_pool_exhaustion():
    srv, _ = make({"last": "192.168.4.101"})
    dora(srv, MAC1)
    dora(srv, MAC2)
    assert exchange(srv, request("discover", MAC3)) is None  # RFC 2131 4.3.1
    assert srv.counters()["no_address"] == 1
    nak = exchange(srv, request("request", MAC3, server_id=LAN,
                                requested_addr="192.168.4.101"))
    assert mtype(nak) == 6 and srv.reply_dst == (BCAST, 68, True, None)


def test_table_capacity_exhaustion():
    srv, _ = make({"capacity": 2, "last": "192.168.4.200"})
    dora(srv, MAC1)
    dora(srv, MAC2)
    assert exchange(srv, request("discover", MAC3)) is None
    assert mtype(exchange(srv, request("request", MAC3, ciaddr="192.168.4.150"))) == 6
    # A release frees an entry; the newcomer takes it (and MAC1 is forgotten).
    exchange(srv, request("release", MAC1, ciaddr="192.168.4.100"))
    assert dora(srv, MAC3) == "192.168.4.102"
    assert exchange(srv, request("discover", MAC1)) is None


def test_full_table_reuses_the_entry_free_longest():
    srv, clock = make({"capacity": 2, "lease_s": 600})
    assert dora(srv, MAC1) == "192.168.4.100"       # until 1600
    clock.t += 10
    assert dora(srv, MAC2) == "192.168.4.101"       # until 1610
    clock.t += 290
    exchange(srv, request("request", ciaddr="192.168.4.100"))  # MAC1: until 1900
    clock.t += 601  # both ended, MAC2's first: its entry, and so its memory, goes
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.102"
    assert exchange(srv, request("discover", MAC1)).yiaddr == "192.168.4.100"
    # No entry is left but offers: the oldest (MAC3's) gives way, with its entry.
    assert exchange(srv, request("discover", MAC2)).yiaddr == "192.168.4.101"
    assert srv.counters()["taken_offers"] == 1


def test_remembered_address_taken_by_another_is_not_reused():
    # Every pool address is held or remembered. The entry free longest remembers an
    # address someone else has taken since: the next one's address goes instead.
    srv, clock = make({"last": "192.168.4.101", "lease_s": 120})
    dora(srv, MAC1)                                   # .100, ends at 1120
    clock.t += 121
    dora(srv, MAC2, requested_addr="192.168.4.100")   # MAC2 takes .100
    mac4 = b"\x02\x00\x00\x00\x00\x04"
    dora(srv, mac4)                                   # .101, ends at 1241
    clock.t += 60
    exchange(srv, request("request", MAC2, ciaddr="192.168.4.100"))  # until 1301
    clock.t += 61                                     # 1242: MAC1's and mac4's ended
    srv.tick()
    assert [x["addr"] for x in srv.leases()] == ["192.168.4.100"]
    offer = exchange(srv, request("discover", MAC3))
    assert offer.yiaddr == "192.168.4.101"  # never .100: MAC2 holds it


def test_client_keys():
    from services.dhcp_leases import client_key
    by_mac = client_key(MAC1)
    assert len(by_mac) == 16 and by_mac[0] == 0xFE and by_mac[1:7] == MAC1
    short = client_key(MAC1, b"\x01" + MAC1)
    assert short[0] == 7 and short[1:8] == b"\x01" + MAC1 and short != by_mac
    assert client_key(MAC2, b"\x01" + MAC1) == short  # the id decides, not the NIC
    duid = b"\xff" + bytes(range(30))
    long_key = client_key(MAC1, duid)
    assert long_key[0] == 0xFF and long_key[1:12] == duid[-11:]
    # Differences anywhere count: in the first bytes, the middle, the length.
    for other in (b"\xfe" + duid[1:], duid[:15] + b"\x99" + duid[16:], duid + b"\x00",
                  duid[:-12] + duid[-11:]):
        assert client_key(MAC1, other) != long_key, other


def test_offers_cost_nothing_to_hold():
    # RFC 2131 3.1: an offered address need not be reserved. Another client that needs
    # one takes the oldest offer when nothing cheaper is left; the first to REQUEST wins.
    srv, clock = make({"last": "192.168.4.101"})
    assert exchange(srv, request("discover")).yiaddr == "192.168.4.100"
    clock.t += 1
    assert exchange(srv, request("discover", MAC2)).yiaddr == "192.168.4.101"
    clock.t += 1
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.100"
    assert srv.counters()["taken_offers"] == 1 and srv.counters()["no_address"] == 0
    ack = exchange(srv, request("request", server_id=LAN, requested_addr="192.168.4.100"))
    assert mtype(ack) == 5  # MAC1 asked first: MAC3's offer gives way
    assert mtype(exchange(srv, request("request", MAC3, server_id=LAN,
                                       requested_addr="192.168.4.100"))) == 6
    # A binding is not an offer: MAC3 takes MAC2's offer.
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.101"
    assert [(x["addr"], x["state"]) for x in srv.leases()] == [
        ("192.168.4.100", "bound"), ("192.168.4.101", "offered")]


def test_an_offer_is_held_a_while_unless_needed():
    srv, clock = make({"last": "192.168.4.102"})
    mac4, mac5 = b"\x02\x00\x00\x00\x00\x04", b"\x02\x00\x00\x00\x00\x05"
    dora(srv, MAC3)
    assert exchange(srv, request("discover")).yiaddr == "192.168.4.101"
    clock.t += 2
    assert exchange(srv, request("discover", MAC2)).yiaddr == "192.168.4.102"
    clock.t += dhcp.OFFER_S - 2  # MAC1's offer has ended, MAC2's is held
    srv.tick()
    assert [(x["addr"], x["state"], x["remaining"]) for x in srv.leases()] == [
        ("192.168.4.100", "bound", 3600 - dhcp.OFFER_S), ("192.168.4.102", "offered", 2)]
    # The ended offer (remembered for MAC1) goes before the one still held.
    assert exchange(srv, request("discover", mac4)).yiaddr == "192.168.4.101"
    assert exchange(srv, request("discover", mac5)).yiaddr == "192.168.4.102"
    c = srv.counters()
    assert (c["taken_free"], c["taken_offers"], c["no_address"]) == (1, 1, 0)
    # The client whose offer ran out may still take it if nobody else holds it.
    clock.t += dhcp.OFFER_S
    ack = exchange(srv, request("request", mac4, server_id=LAN, requested_addr="192.168.4.101"))
    assert mtype(ack) == 5


def test_stale_bindings_go_to_new_clients_longest_idle_first():
    # A pool full of bindings: a new client gets the one whose client has not been heard
    # from for 5/8 of the lease (a live client renews at half of it), longest idle
    # first. Until one is stale: no answer to a DISCOVER, a NAK to a REQUEST.
    srv, clock = make({"last": "192.168.4.101", "lease_s": 600})  # stale after 375 s
    assert dora(srv, MAC1) == "192.168.4.100"       # t=1000, until 1600
    clock.t += 10
    assert dora(srv, MAC2) == "192.168.4.101"       # until 1610
    clock.t += 290
    exchange(srv, request("request", ciaddr="192.168.4.100"))  # MAC1 renews: until 1900
    clock.t += 74                                   # MAC2 idle 364 s
    assert exchange(srv, request("discover", MAC3)) is None
    assert mtype(exchange(srv, request("request", MAC3, server_id=LAN,
                                       requested_addr="192.168.4.101"))) == 6
    assert srv.counters()["no_address"] == 1
    clock.t += 11                                   # t=1385: MAC2 idle 375 s
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.101"
    assert srv.counters()["taken_stale"] == 1
    # MAC2 renews before MAC3 requests: it was alive after all, and keeps its address.
    assert mtype(exchange(srv, request("request", MAC2, ciaddr="192.168.4.101"))) == 5
    assert mtype(exchange(srv, request("request", MAC3, server_id=LAN,
                                       requested_addr="192.168.4.101"))) == 6
    clock.t += 516  # t=1901: MAC1's lease ended; MAC2's runs, idle 516 s
    srv.tick()
    assert [x["addr"] for x in srv.leases()] == ["192.168.4.101"]
    # An ended lease goes before a stale one, and an offer before a stale binding.
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.100"
    assert exchange(srv, request("discover", MAC1)).yiaddr == "192.168.4.100"
    assert exchange(srv, request("discover", MAC3)).yiaddr == "192.168.4.100"
    c = srv.counters()  # offers taken: by MAC2's REQUEST, by MAC1, by MAC3
    assert (c["taken_free"], c["taken_offers"], c["taken_stale"]) == (1, 3, 1)
    assert [(x["addr"], x["state"]) for x in srv.leases()] == [
        ("192.168.4.100", "offered"), ("192.168.4.101", "bound")]


def test_leases_survive_a_restart(tmp_path):
    path = str(tmp_path / "leases.json")
    srv, clock = make(store=dhcp.LeaseFile(path), t=50000)
    a1 = dora(srv, MAC1)
    clock.t += 1000
    exchange(srv, request("discover", MAC3))  # an offer: not saved
    a2 = dora(srv, MAC2, client_id=b"\x01two")
    assert not (tmp_path / "leases.json.tmp").exists()
    saved = json.loads((tmp_path / "leases.json").read_text())
    assert sorted(x["addr"] for x in saved["leases"]) == [a1, a2]
    srv2, clock2 = make(store=dhcp.LeaseFile(path), t=3)  # the clock starts over
    assert sorted((x["addr"], x["remaining"]) for x in srv2.leases()) == [(a1, 2600),
                                                                          (a2, 3600)]
    assert (a1, a2) == ("192.168.4.100", "192.168.4.102")
    assert exchange(srv2, request("discover", MAC3)).yiaddr == "192.168.4.101"
    ack = exchange(srv2, request("request", MAC2, ciaddr=a2, client_id=b"\x01two"))
    assert mtype(ack) == 5
    # INIT-REBOOT without the client id: another client, of whom there is no record.
    assert exchange(srv2, request("request", MAC2, requested_addr=a2)) is None
    clock2.t += 2601
    assert len(srv2.leases()) == 3  # leases() only reads: as of the last message or tick
    srv2.tick()
    assert [x["addr"] for x in srv2.leases()] == [a2]


@pytest.mark.parametrize("content", [b"", b"{\"version\": 1, \"leases\": [{\"key\"", b"\xff\xfe",
                                     b"[1, 2]", b"{\"version\": 2, \"leases\": []}",
                                     b"{\"version\": 1, \"leases\": 5}", None])
def test_corrupt_lease_file_loads_empty(tmp_path, content):
    path = tmp_path / "leases.json"
    if content is not None:
        path.write_bytes(content)
    srv, _ = make(store=dhcp.LeaseFile(str(path)))
    assert srv.leases() == [] and srv.last_error is None
    assert dora(srv) == "192.168.4.100"
    assert json.loads(path.read_text())["leases"][0]["addr"] == "192.168.4.100"


def test_restore_leaves_out_bad_and_clashing_entries():
    good = {"key": "fe" + "020000000001" + "00" * 9, "mac": "02:00:00:00:00:01",
            "addr": "192.168.4.104", "remaining": 100}
    bad = [dict(good, key="zz"), dict(good, key="00" * 16), dict(good, mac="ff:ff:ff:ff:ff:ff"),
           dict(good, addr="192.168.4.50"), dict(good, addr="10.0.0.1"),
           dict(good, remaining=-5), dict(good, remaining="9"), "junk",
           dict(good, addr="192.168.4.108"),  # a static address now
           dict(good, addr="192.168.4.105")]  # a duplicate key (good comes first)
    store = dhcp_cases.MemStore({"version": 1, "leases": [dict(good, remaining=10 ** 6)] + bad})
    srv, _ = make({"static": [{"mac": "02:00:00:00:00:09", "addr": "192.168.4.108"}]},
                  store=store)
    got = [(x["addr"], x["remaining"]) for x in srv.leases() if not x["static"]]
    assert got == [("192.168.4.104", 3600)]  # capped at the configured lease


def test_store_failures_are_counted(tmp_path):
    class Broken:
        def load(self):
            raise OSError("flash gone")

        def save(self, data):
            raise OSError("flash full")

    srv, _ = make(store=Broken())
    assert "flash gone" in srv.last_error
    assert dora(srv) == "192.168.4.100"
    c = srv.counters()
    assert (c["saves"], c["save_errors"], c["errors"]) == (0, 1, 0)


def test_lease_file_writes_atomically(tmp_path):
    path = tmp_path / "leases.json"
    path.write_text("old")
    (tmp_path / "leases.json.tmp").write_text("half a file from a power cut")
    dhcp.LeaseFile(str(path)).save({"version": 1, "leases": []})
    assert json.loads(path.read_text()) == {"version": 1, "leases": []}
    assert not (tmp_path / "leases.json.tmp").exists()


# ---- where replies go (RFC 2131 4.1)


def test_reply_dst_relay_agent():
    srv, _ = make()
    offer = exchange(srv, request("discover", giaddr="192.168.4.2", flags=0x8000))
    assert offer.giaddr == "192.168.4.2" and offer.flags == 0x8000
    assert srv.reply_dst == ("192.168.4.2", 67, False, None)
    nak = exchange(srv, request("request", giaddr="192.168.4.2", requested_addr="10.0.0.1"))
    assert mtype(nak) == 6 and nak.flags == 0x8000  # 4.3.2: broadcast bit for the relay
    assert srv.reply_dst == ("192.168.4.2", 67, False, None)
    # A relay from another subnet: we have no pool for it.
    assert exchange(srv, request("discover", giaddr="10.9.9.1")) is None
    assert srv.counters()["ignored"] == 1


@pytest.mark.parametrize("ciaddr,flags,want", [
    ("0.0.0.0", 0, ("192.168.4.100", 68, False, MAC1)),
    ("0.0.0.0", 0x8000, (BCAST, 68, True, None)),
    ("192.168.4.100", 0, ("192.168.4.100", 68, False, None)),
    ("192.168.4.100", 0x8000, ("192.168.4.100", 68, False, None)),
])
def test_reply_dst_ack(ciaddr, flags, want):
    srv, _ = make()
    dora(srv)
    if ciaddr == "0.0.0.0":
        r = exchange(srv, request("request", flags=flags, server_id=LAN,
                                  requested_addr="192.168.4.100"))
    else:
        r = exchange(srv, request("request", flags=flags, ciaddr=ciaddr))
    assert mtype(r) == 5 and srv.reply_dst == want


# ---- the reply's size


def test_reply_fits_the_clients_maximum():
    dns = ["192.0.2.%d" % i for i in range(1, 9)]
    srv, _ = make({"dns": dns})
    cid = b"\x00" + bytes(range(254))
    # Default (576 bytes of IP datagram): the DNS option no longer fits; 61 is echoed.
    offer = exchange(srv, request("discover", client_id=cid))
    assert len(bytes(offer)) <= 548 and options(offer)["client_id"] == cid
    assert "name_server" not in options(offer) and "router" in options(offer)
    # A client that takes 1500 and a buffer that holds it: everything.
    offer = exchange(srv, request("discover", client_id=cid, max_dhcp_size=1500), 1500, 1472)
    assert options(offer)["name_server"] == tuple(dns)
    assert len(bytes(offer)) > 548
    # Below 576 the option means nothing (RFC 2132 9.10).
    offer = exchange(srv, request("discover", client_id=cid, max_dhcp_size=300), 1500)
    assert len(bytes(offer)) <= 548


def test_small_out_buffer_is_refused():
    srv, _ = make()
    out = bytearray(400)
    msg = request("discover")
    assert srv.handle(msg, len(msg), out) == 0 and out == bytearray(400)
    assert srv.counters()["errors"] == 1 and "out" in srv.last_error


def test_disabled_server_is_silent():
    srv, _ = make({"enabled": False})
    assert exchange(srv, request("discover")) is None


# ---- hostile input


def malformed_messages():
    good = request("discover")
    out = {
        "short": good[:239], "op3": b"\x03" + good[1:], "htype": good[:1] + b"\x06" + good[2:],
        "hlen": good[:2] + b"\x10" + good[3:], "cookie": good[:236] + b"\x63\x82\x53\x64" +
        good[240:], "past-end": good[:240] + b"\x35\x01\x01\x0c\x20abc",
        "no-type": request("discover")[:240] + b"\x0c\x02ab\xff",
        "bcast-mac": request("discover", b"\xff" * 6), "mcast-mac": request(
            "discover", b"\x01\x00\x5e\x00\x00\x01"), "zero-mac": request("discover", bytes(6)),
        "type-len": good[:240] + b"\x35\x02\x01\x01\xff",
        "req-len": good[:240] + b"\x35\x01\x03\x32\x03\xc0\xa8\x04\xff",
        "cid-len": good[:240] + b"\x35\x01\x01\x3d\x01\x01\xff",
        "mms-len": good[:240] + b"\x35\x01\x01\x39\x01\x05\xff",
        "sid-len": good[:240] + b"\x35\x01\x03\x36\x05\xc0\xa8\x04\x01\x01\xff",
        "prl-empty": good[:240] + b"\x35\x01\x01\x37\x00\xff",
        "len-byte-missing": good[:240] + b"\x35\x01\x01\x0c",
        "past-end-by-one": good[:240] + b"\x35\x01\x01\x0c\x03ab",
    }
    return out


@pytest.mark.parametrize("name,msg", sorted(malformed_messages().items()))
def test_malformed_dropped_and_counted(name, msg):
    srv, _ = make()
    assert exchange(srv, msg) is None
    c = srv.counters()
    assert c["dropped_malformed"] == 1 and c["errors"] == 0, (name, c)
    assert exchange(srv, request("discover")).yiaddr == "192.168.4.100"


def test_other_drops_counted():
    srv, _ = make()
    good = request("discover")
    for msg, n in ((good, len(good) + 1), (good, -1), (good, 0)):
        assert srv.handle(msg, n, bytearray(576)) == 0
    assert srv.counters()["dropped_malformed"] == 3
    for t in ("offer", "ack", "nak", "force_renew", 77):
        assert exchange(srv, request(t)) is None
    reply = b"\x02" + good[1:]  # another server's BOOTREPLY
    assert exchange(srv, reply) is None
    c = srv.counters()
    assert (c["dropped_unknown"], c["ignored"], c["errors"], c["offers"]) == (5, 1, 0, 0)


def test_options_robust_pad_and_no_end():
    srv, _ = make()
    good = request("discover")
    msg = good[:240] + b"\x00\x00\x35\x01\x01\x00\x37\x02\x03\x01"  # pads, no END
    offer = exchange(srv, msg)
    assert offer.yiaddr == "192.168.4.100" and codes(offer)[5:7] == [3, 1]
    # The first of a repeated option counts; options after END are not read.
    msg = good[:240] + b"\x35\x01\x01\x35\x01\x07\xff\x35\x01\x07"
    assert mtype(exchange(srv, msg)) == 2


def test_handle_takes_memoryviews():
    srv, _ = make()
    msg = request("discover")
    buf = bytearray(1500)
    buf[:len(msg)] = msg
    out = bytearray(600)
    n = srv.handle(memoryview(buf), len(msg), memoryview(out)[:576])
    assert n and check_reply(bytes(out[:n]), msg).yiaddr == "192.168.4.100"
    assert out[576:] == bytes(24)


def fuzz_server():
    srv, clock = make({"static": [{"mac": "02:00:00:00:00:03", "addr": "192.168.4.50"}],
                       "last": "192.168.4.103", "capacity": 3})
    dora(srv, MAC1)
    return srv, clock


def check_fuzz_reply(srv, msg, n, out_len=576):
    out = bytearray(out_len)
    got = srv.handle(msg, n, out)
    assert len(out) == out_len
    assert srv.counters()["errors"] == 0, srv.last_error
    if got:
        assert 300 <= got <= 548
        r = BOOTP(bytes(out[:got]))
        assert r.op == 2 and r.options == b"\x63\x82\x53\x63" and mtype(r) in (2, 5, 6)
        assert r.xid == int.from_bytes(bytes(msg[4:8]), "big")
        assert srv.reply_dst is not None and srv.reply_dst[1] in (67, 68)
    else:
        assert srv.reply_dst is None


FUZZ = settings(max_examples=600, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(min_size=0, max_size=700))
def test_fuzz_random_bytes(data):
    srv, _ = fuzz_server()
    check_fuzz_reply(srv, data, len(data))


@FUZZ
@given(st.binary(min_size=240, max_size=600), st.integers(0, 700))
def test_fuzz_random_headers_and_lengths(data, n):
    # A valid header and cookie with random contents: reaches the option parser.
    msg = bytearray(data)
    msg[0:3] = b"\x01\x01\x06"
    msg[28] &= 0xFE
    msg[236:240] = b"\x63\x82\x53\x63"
    srv, _ = fuzz_server()
    check_fuzz_reply(srv, bytes(msg), n)


def valid_messages():
    cid = b"\x01" + MAC2
    return [request("discover"),
            request("discover", MAC2, client_id=cid, param_req_list=[1, 3, 6]),
            request("request", server_id=LAN, requested_addr="192.168.4.100"),
            request("request", ciaddr="192.168.4.100"),
            request("request", requested_addr="192.168.4.101"),
            request("release", ciaddr="192.168.4.100", server_id=LAN),
            request("decline", requested_addr="192.168.4.100", server_id=LAN),
            request("inform", ciaddr="192.168.4.7", param_req_list=[3]),
            request("discover", MAC3, giaddr="192.168.4.2", max_dhcp_size=1500)]


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 600), st.integers(0, 255),
                          st.sampled_from(["set", "cut", "insert"])), min_size=1, max_size=6),
       st.integers(0, 2000))
def test_fuzz_mutated_valid_messages(mutations, tick):
    srv, clock = fuzz_server()
    msgs = valid_messages()
    for which, at, value, how in mutations:
        msg = bytearray(msgs[which])
        at %= len(msg) + 1
        if how == "set" and at < len(msg):
            msg[at] = value
        elif how == "cut":
            msg = msg[:at]
        else:
            msg[at:at] = bytes((value,))
        clock.t += tick
        check_fuzz_reply(srv, bytes(msg), len(msg))
        check_fuzz_reply(srv, msgs[which], len(msgs[which]))  # still works
    # The table never grows.
    assert len(srv.pool.state) == 3 and len(srv.pool.key) == 3 * 16


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["discover", "request", "renew", "release",
                                           "decline", "reboot"]),
                          st.integers(0, 5), st.integers(0, 400)), max_size=40))
def test_fuzz_sequences_keep_leases_consistent(steps):
    # Random clients doing random things: no address is ever held twice, every held
    # address is in the pool (or the client's static one), and the table stays its size.
    srv, clock = fuzz_server()
    macs = [bytes((2, 0, 0, 0, 1, i)) for i in range(6)]
    for what, who, dt in steps:
        clock.t += dt
        mac = macs[who]
        addr = "192.168.4.%d" % (100 + who % 4)
        msg = {"discover": lambda: request("discover", mac),
               "request": lambda: request("request", mac, server_id=LAN, requested_addr=addr),
               "renew": lambda: request("request", mac, ciaddr=addr),
               "release": lambda: request("release", mac, ciaddr=addr),
               "decline": lambda: request("decline", mac, requested_addr=addr),
               "reboot": lambda: request("request", mac, requested_addr=addr)}[what]()
        check_fuzz_reply(srv, msg, len(msg))
        held = [x["addr"] for x in srv.leases() if x["state"] in ("offered", "bound",
                                                                  "declined")]
        assert len(held) == len(set(held)), srv.leases()
        for x in srv.leases():
            if x["static"]:
                assert x["addr"] == "192.168.4.50"
            else:
                assert x["addr"] in ("192.168.4.100", "192.168.4.101", "192.168.4.102",
                                     "192.168.4.103")
                assert 0 <= x["remaining"] <= 3600


# ---- validation


def validate(raw):
    return dhcp.validate(raw, LAN, MASK)


def test_validate_defaults():
    want = {"enabled": True, "first": "192.168.4.100", "last": "192.168.4.199",
            "lease_s": 3600, "capacity": 0, "static": []}
    assert validate(None) == (want, [])
    assert validate({}) == (want, [])
    cfg, problems = validate([1])
    assert cfg == want and problems == [
        "dhcp: must be an object with enabled, first, last, lease_s, capacity, static; "
        "using defaults"]


@pytest.mark.parametrize("addr,mask,first,last", [
    ("192.168.4.1", "255.255.255.0", "192.168.4.100", "192.168.4.199"),
    ("192.168.4.100", "255.255.255.0", "192.168.4.101", "192.168.4.199"),
    ("192.168.4.199", "255.255.255.0", "192.168.4.100", "192.168.4.198"),
    ("10.0.0.1", "255.255.255.128", "10.0.0.100", "10.0.0.126"),
    ("10.0.0.1", "255.255.255.192", "10.0.0.2", "10.0.0.62"),
    ("10.0.0.1", "255.255.255.252", "10.0.0.2", "10.0.0.2"),
    ("10.0.0.2", "255.255.255.252", "10.0.0.1", "10.0.0.1"),
    ("172.16.5.9", "255.255.0.0", "172.16.0.100", "172.16.0.199"),
])
def test_default_pool_fits_the_lan(addr, mask, first, last):
    cfg, problems = dhcp.validate({}, addr, mask)
    assert (cfg["first"], cfg["last"], problems) == (first, last, [])
    srv = dhcp.DhcpServer(cfg, addr, mask, clock=Clock(1000))
    assert exchange(srv, request("discover")).yiaddr == first


def test_validate_good_values_kept():
    raw = {"enabled": False, "first": "192.168.4.2", "last": "192.168.4.254",
           "lease_s": 120, "capacity": 254,
           "static": [{"mac": "AA:bb:cc:dd:ee:0f", "addr": "192.168.4.10"}]}
    cfg, problems = validate(raw)
    assert problems == []
    assert cfg == dict(raw, static=[{"mac": "aa:bb:cc:dd:ee:0f", "addr": "192.168.4.10"}])
    assert validate(dict(raw, lease_s=7 * 86400, capacity=1))[1] == []


@pytest.mark.parametrize("key,value,message", [
    ("enabled", "yes", "dhcp.enabled: 'yes' must be true or false; using true"),
    ("enabled", 1, "dhcp.enabled: 1 must be true or false; using true"),
    ("lease_s", 119, "dhcp.lease_s: 119 must be an integer 120..604800 (2 minutes to 7 days); "
                     "using 3600"),
    ("lease_s", 604801, "dhcp.lease_s: 604801 must be an integer"),
    ("lease_s", 3600.0, "dhcp.lease_s: 3600.0 must be an integer"),
    ("lease_s", True, "dhcp.lease_s: True must be an integer"),
    ("capacity", -1, "dhcp.capacity: -1 must be an integer 0..254 (0: the pool's size); "
                     "using 0"),
    ("capacity", 255, "dhcp.capacity: 255 must be an integer 0..254 (0: the pool's size); "
                      "using 0"),
    ("capacity", "32", "dhcp.capacity: '32' must be an integer"),
    ("first", "192.168.5.10", "dhcp.first: '192.168.5.10' is not on the LAN "
                              "192.168.4.1/255.255.255.0; using 192.168.4.100"),
    ("first", "192.168.4.0", "dhcp.first: '192.168.4.0' is the network or broadcast address "
                             "of the LAN 192.168.4.1/255.255.255.0; using 192.168.4.100"),
    ("first", "192.168.4.1", "dhcp.first: '192.168.4.1' is the router's own address; "
                             "using 192.168.4.100"),
    ("first", "192.168.4", "dhcp.first: '192.168.4' is not an IPv4 address; using "
                           "192.168.4.100"),
    ("first", 5, "dhcp.first: 5 is not an IPv4 address"),
    ("last", "192.168.4.255", "dhcp.last: '192.168.4.255' is the network or broadcast"),
    ("last", " 192.168.4.9", "dhcp.last: ' 192.168.4.9' is not an IPv4 address; using "
                             "192.168.4.199"),
    ("static", {}, "dhcp.static: must be a list of {\"mac\", \"addr\"}; no static leases"),
    ("colour", "blue", "dhcp.colour: unknown key; ignored"),
])
def test_validate_bad_values(key, value, message):
    cfg, problems = validate({key: value})
    assert len(problems) == 1 and problems[0].startswith(message), problems
    assert cfg == validate({})[0]  # the bad key took its default


@pytest.mark.parametrize("value,message,kept", [
    ("1.1.1.1", "dns: must be a list of IPv4 addresses; using ['9.9.9.9']", ["9.9.9.9"]),
    (["1.1.1"], "dns[0]: '1.1.1' is not an IPv4 address; left out", []),
    (["127.0.0.1"], "dns[0]: '127.0.0.1' is not a unicast address; left out", []),
    (["1.1.1.%d" % i for i in range(1, 10)], "dns: more than 8 servers; the rest left out",
     ["1.1.1.%d" % i for i in range(1, 9)]),
])
def test_dns_servers_validated(value, message, kept):
    problems = dhcp_config.Problems()
    assert dhcp_config.dns_servers(value, ["9.9.9.9"], problems) == kept
    assert problems == [message]


def test_validate_first_above_last():
    cfg, problems = validate({"first": "192.168.4.150", "last": "192.168.4.120"})
    assert problems == ["dhcp: first 192.168.4.150 is above last 192.168.4.120; using the "
                        "default pool 192.168.4.100..192.168.4.199"]
    assert (cfg["first"], cfg["last"]) == ("192.168.4.100", "192.168.4.199")
    # A bad first falls back to its default, which may then be above a good last.
    cfg, problems = validate({"first": "x", "last": "192.168.4.50"})
    assert len(problems) == 2 and problems[1].startswith("dhcp: first 192.168.4.100 is above")


def test_validate_router_inside_pool_is_skipped():
    cfg, problems = dhcp.validate({"first": "192.168.4.99", "last": "192.168.4.101"},
                                  "192.168.4.100", MASK)
    assert problems == []
    srv = dhcp.DhcpServer(dict(cfg, capacity=4), "192.168.4.100", MASK, clock=Clock(1000))
    got = [dora(srv, mac, "192.168.4.100") for mac in (MAC1, MAC2)]
    assert got == ["192.168.4.99", "192.168.4.101"]
    assert exchange(srv, request("discover", MAC3, requested_addr="192.168.4.100")) is None
    assert srv.counters()["no_address"] == 1


STATIC_OK = {"mac": "aa:bb:cc:dd:ee:01", "addr": "192.168.4.10"}


@pytest.mark.parametrize("entry,message", [
    ("aa", "dhcp.static[1]: must be an object with mac and addr; static lease left out"),
    ({"mac": "aa:bb:cc:dd:ee:02"}, "dhcp.static[1].addr: missing; static lease left out"),
    ({"addr": "192.168.4.11"}, "dhcp.static[1].mac: missing"),
    (dict(STATIC_OK, name="tv"), "dhcp.static[1].name: unknown key; static lease left out"),
    (dict(STATIC_OK, mac="aa:bb:cc:dd:ee"), "dhcp.static[1].mac: 'aa:bb:cc:dd:ee' is not a "
                                           "MAC address like aa:bb:cc:dd:ee:ff; static lease"),
    (dict(STATIC_OK, mac="aa-bb-cc-dd-ee-02"), "dhcp.static[1].mac: 'aa-bb-cc-dd-ee-02' is "
                                               "not a MAC address"),
    (dict(STATIC_OK, mac="aa:bb:cc:dd:ee:g2"), "dhcp.static[1].mac: 'aa:bb:cc:dd:ee:g2' is "
                                               "not a MAC"),
    (dict(STATIC_OK, mac=7), "dhcp.static[1].mac: 7 is not a MAC"),
    (dict(STATIC_OK, mac="01:00:5e:00:00:01"), "dhcp.static[1].mac: 01:00:5e:00:00:01 is a "
                                               "multicast, broadcast or zero MAC"),
    (dict(STATIC_OK, mac="00:00:00:00:00:00"), "dhcp.static[1].mac: 00:00:00:00:00:00 is a "
                                               "multicast"),
    (dict(STATIC_OK, mac="AA:BB:CC:DD:EE:01", addr="192.168.4.11"),
     "dhcp.static[1].mac: aa:bb:cc:dd:ee:01 already has a static lease"),
    (dict(STATIC_OK, mac="aa:bb:cc:dd:ee:02"), "dhcp.static[1].addr: 192.168.4.10 is already "
                                               "another MAC's static address"),
    (dict(STATIC_OK, mac="aa:bb:cc:dd:ee:02", addr="10.0.0.1"),
     "dhcp.static[1].addr: '10.0.0.1' is not on the LAN 192.168.4.1/255.255.255.0; static"),
    (dict(STATIC_OK, mac="aa:bb:cc:dd:ee:02", addr="192.168.4.1"),
     "dhcp.static[1].addr: '192.168.4.1' is the router's own address"),
    (dict(STATIC_OK, mac="aa:bb:cc:dd:ee:02", addr="192.168.4.255"),
     "dhcp.static[1].addr: '192.168.4.255' is the network or broadcast address"),
])
def test_validate_static_entries(entry, message):
    cfg, problems = validate({"static": [STATIC_OK, entry]})
    assert len(problems) == 1 and problems[0].startswith(message), problems
    assert cfg["static"] == [STATIC_OK]


def test_validate_static_limit():
    many = [{"mac": "02:00:00:00:01:%02x" % i, "addr": "192.168.4.%d" % (i + 2)}
            for i in range(70)]
    cfg, problems = validate({"static": many})
    assert len(cfg["static"]) == dhcp_config.STATIC_MAX
    assert problems == ["dhcp.static: more than 64 entries; the rest left out"]


def test_validated_section_validates_cleanly_again():
    raw = {"first": "192.168.4.20", "last": "192.168.4.30",
           "static": [{"mac": "AA:BB:CC:DD:EE:FF", "addr": "192.168.4.25"}]}
    cfg, problems = validate(raw)
    assert problems == [] and validate(cfg) == (cfg, [])
    srv = dhcp.DhcpServer(cfg, LAN, MASK, clock=Clock(1000))
    assert srv.problems == []
    # The static address inside the pool is kept from the pool.
    got = [dora(srv, bytes((2, 0, 0, 0, 0, i))) for i in range(1, 8)]
    assert "192.168.4.25" not in got and got[-1] == "192.168.4.27"


def test_server_reports_problems_of_a_raw_section():
    srv = dhcp.DhcpServer({"lease_s": 5}, LAN, MASK, clock=Clock(1000))
    assert srv.problems and srv.problems[0].startswith("dhcp.lease_s: 5")
    assert options(exchange(srv, request("discover")))["lease_time"] == 3600


def test_default_clock_runs():
    srv = dhcp.DhcpServer(None, LAN, MASK)
    assert dora(srv) == "192.168.4.100"
    assert 3000 <= srv.leases()[0]["remaining"] <= 3600  # seconds, and the clock runs forward


# ---- the same module on MicroPython


def test_case_builder_agrees_with_scapy():
    ours = dhcp_cases.message(3, MAC2, xid=0x0a0b0c0d, ciaddr="192.168.4.5", flags=0x8000,
                              options=((50, bytes((192, 168, 4, 9))), (61, b"\x01ab")))
    theirs = request("request", MAC2, ciaddr="192.168.4.5", flags=0x8000, xid=0x0a0b0c0d,
                     requested_addr="192.168.4.9", client_id=b"\x01ab")
    assert bytes(ours) == theirs


@pytest.mark.parametrize("case", dhcp_cases.CASES, ids=lambda c: c.__name__[5:])
def test_cases_cpython(case):
    case()


CASES_LINE = re.compile(r"DHCP_CASES passed=(\d+) failed=(\d+)")
REPLY = re.compile(r"REPLY (\S+) (\S+) (\S+)")
SCRIPT = "import dhcp_cases\ndhcp_cases.run_all()\ndhcp_cases.transcript()"


@pytest.fixture(scope="module")
def cpython_transcript():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dhcp_cases.transcript()
    return buf.getvalue()


def check_transcript(text):
    """Every reply of the transcript parsed by scapy; returns {step: (hex, dst)}."""
    steps = {m[0]: (m[1], m[2]) for m in REPLY.findall(text)}
    assert list(steps) == ["discover", "request", "renew", "discover-cid", "static",
                           "init-reboot-nak", "inform", "relay", "release", "truncated"]
    want = {"discover": (2, "192.168.4.100", "255.255.255.255:68:1:None"),
            "request": (5, "192.168.4.100", "192.168.4.100:68:0:020000000001"),
            "renew": (5, "192.168.4.100", "192.168.4.100:68:0:None"),
            "discover-cid": (2, "192.168.4.101", "192.168.4.101:68:0:020000000002"),
            "static": (2, "192.168.4.50", "192.168.4.50:68:0:020000000003"),
            "init-reboot-nak": (6, "0.0.0.0", "255.255.255.255:68:1:None"),
            "inform": (5, "0.0.0.0", "192.168.4.20:68:0:None"),
            "relay": (2, "192.168.4.101", "192.168.4.2:67:0:None")}
    for step, (data, dst) in steps.items():
        if step not in want:
            assert (data, dst) == ("-", "None"), step
            continue
        r = BOOTP(bytes.fromhex(data))
        assert r.op == 2 and r.options == b"\x63\x82\x53\x63"
        assert (mtype(r), r.yiaddr, dst) == want[step], step
        o = options(r)
        assert o["server_id"] == LAN
        if mtype(r) != 6:
            assert o["name_server"] == ("192.0.2.53", "192.0.2.54") and o["router"] == LAN
    assert codes(BOOTP(bytes.fromhex(steps["discover-cid"][0])))[:3] == [53, 54, 61]
    assert "errors=0" in text and "dropped_malformed=1" in text
    return steps


def test_transcript_cpython(cpython_transcript):
    check_transcript(cpython_transcript)


@pytest.mark.parametrize("runtime", [run_unix, run_wasi], ids=["unix", "wasi"])
def test_micropython_runs_the_same(runtime, cpython_transcript):
    out = runtime(SCRIPT)
    m = CASES_LINE.search(out)
    assert m and (int(m[1]), int(m[2])) == (len(dhcp_cases.CASES), 0), out
    # Byte for byte what CPython sent, to the same places.
    assert check_transcript(out) == check_transcript(cpython_transcript)
    assert out[out.index("REPLY"):] == cpython_transcript


def test_micropython_cases_can_fail():
    with pytest.raises(MicroPythonError) as failed:
        run_unix("import dhcp_cases\nfrom services import dhcp\n"
                 "dhcp.DhcpServer._discover = lambda *a: 0\n"  # a server that never offers
                 "dhcp_cases.run_all()")
    out = str(failed.value)
    assert "FAIL case_dora" in out and "failed=0" not in out


def test_lease_file_on_the_unix_port(tmp_path):
    path = str(tmp_path / "leases.json")
    code = (
        "from services import dhcp\nimport dhcp_cases as d\n"
        "srv, clock = d.server(store=dhcp.LeaseFile(%r), t=900)\n"
        "a = d.dora(srv)\n"
        "clock.t += 100\n"
        "b = d.dora(srv, d.MAC2)\n"
        "srv2, _ = d.server(store=dhcp.LeaseFile(%r), t=1)\n"
        "print('RESTORED', sorted((x['addr'], x['remaining']) for x in srv2.leases()))\n"
        "srv3 = dhcp.DhcpServer(None, d.LAN, d.MASK)\n"  # the ticks clock
        "print('TICKS', d.dora(srv3), srv3.leases()[0]['remaining'])\n"
    ) % (path, path)
    out = run_unix(code)
    assert "RESTORED [('192.168.4.100', 3500), ('192.168.4.101', 3600)]" in out, out
    assert "TICKS 192.168.4.100 3600" in out or "TICKS 192.168.4.100 3599" in out, out
    saved = json.loads((tmp_path / "leases.json").read_text())
    assert [x["addr"] for x in saved["leases"]] == ["192.168.4.100", "192.168.4.101"]
    # What the unix port wrote, CPython reads (the file format is shared).
    srv, _ = make(store=dhcp.LeaseFile(path), t=0)
    assert sorted(x["remaining"] for x in srv.leases()) == [3500, 3600]
