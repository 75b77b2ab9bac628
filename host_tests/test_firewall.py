"""Firewall rules (firmware/filter/, issue 21) on CPython: the router between MemoryLinks
(test_router.Net) with rules put in force as the REPL does (Router.reconfigure), scapy
checking what a reject sends; validation naming the field; the management API and nr.
With real traffic on the virtual boards: test_vboard_firewall.py."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.packet import raw

import nr
from filter import rules as fwrules
from filter.ruleconfig import RULES_MAX, BLOCKED_MAX
from manage import api, config
from manage.runner import runner
from test_manage import running_board
from test_router import CLIENT, HOST1, HOST2, LAN_ADDR, SERVER, WAN_ADDR, Net, assert_checksums

OTHER_CLIENT = "198.18.0.7"


def put_rules(net, rules=(), blocked=(), default="allow"):
    """Put a firewall in force on the running router, as api's changes do."""
    raw_cfg = config.to_file(net.r.cfg)
    raw_cfg["firewall"] = {"default": default, "rules": list(rules), "blocked": list(blocked)}
    net.r.reconfigure(config.validate(raw_cfg, strict=True)[0])


def syn(src=HOST1, dst=SERVER, sport=40000, dport=80, seq=1000):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=seq)


def test_first_match_wins_then_the_default_and_hits_count(monkeypatch):
    net = Net()
    put_rules(net, [{"proto": "tcp", "lan": HOST1, "port": 443, "action": "allow"},
                    {"proto": "tcp", "lan": "192.168.4.0/24", "port": [80, 443],
                     "action": "drop"}], default="allow")
    assert len(net.from_lan(syn(dport=443))[1]) == 1           # rule 0
    assert net.from_lan(syn(sport=40001, dport=80)) == ([], [])   # rule 1
    assert net.from_lan(syn(src=HOST2, dport=443)) == ([], [])    # rule 1: rule 0 is HOST1's
    assert len(net.from_lan(syn(sport=40002, dport=8080))[1]) == 1   # the default
    assert net.r.slow.firewall.hits() == {"blocked": [], "rules": [1, 2], "default": 1}
    c = net.counters()
    assert (c["dropped_firewall"], c["firewall_rejects_sent"]) == (2, 0)


def test_reject_answers_tcp_with_a_reset_from_the_server_and_udp_with_icmp_3_13():
    net = Net()
    put_rules(net, [{"proto": "any", "lan": HOST1, "remote": SERVER, "action": "reject"}])
    payload = b"x" * 10
    lan_out, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(
        sport=40000, dport=80, flags="S", seq=1000) / payload)
    assert wan_out == [] and len(lan_out) == 1
    rst = lan_out[0]
    assert (rst.src, rst.dst, rst[TCP].sport, rst[TCP].dport) == (SERVER, HOST1, 80, 40000)
    # RFC 9293 3.10.7.1: no ACK in the segment: seq 0, ack = its seq + length (SYN counts)
    assert (str(rst[TCP].flags), rst[TCP].seq, rst[TCP].ack) == ("RA", 0, 1000 + 10 + 1)
    assert_checksums(rst)
    lan_out = net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(sport=40001, dport=80, flags="A",
                                                            seq=5, ack=777))[0]
    assert (str(lan_out[0][TCP].flags), lan_out[0][TCP].seq) == ("R", 777)
    assert net.from_lan(IP(src=HOST1, dst=SERVER) / TCP(sport=40002, dport=80,
                                                         flags="R")) == ([], [])  # never a RST for a RST
    lan_out, wan_out = net.from_lan(IP(src=HOST1, dst=SERVER) / UDP(sport=5000, dport=53) / b"q")
    err = lan_out[0]
    assert (err.src, err.dst, err[ICMP].type, err[ICMP].code) == (LAN_ADDR, HOST1, 3, 13)
    assert err[IPerror].dst == SERVER and wan_out == []
    assert_checksums(err)
    c = net.counters()
    assert (c["dropped_firewall"], c["firewall_rejects_sent"]) == (4, 3)


def test_rejects_share_the_icmp_errors_rate_limit():
    net = Net()
    put_rules(net, [{"proto": "tcp", "action": "reject"}])
    out = net.from_lan(*[syn(sport=41000 + i) for i in range(30)])[0]
    assert len(out) == 20  # the burst (router.ICMP_BURST), then nothing until tokens return
    net.ms += 1000
    assert len(net.from_lan(*[syn(sport=42000 + i) for i in range(30)])[0]) == 10
    c = net.counters()
    assert (c["dropped_firewall"], c["firewall_rejects_sent"]) == (60, 30)


def test_an_inbound_forward_only_from_one_remote_subnet():
    net = Net()   # tcp 8080 -> HOST1:80
    put_rules(net, [{"dir": "in", "proto": "tcp", "remote": "203.0.113.0/24", "port": 8080,
                     "action": "allow"},
                    {"dir": "in", "proto": "tcp", "port": 8080, "action": "drop"}])
    lan_out = net.from_wan(syn(src=CLIENT, dst=WAN_ADDR, sport=5555, dport=8080))[0]
    assert [(p.dst, p[TCP].dport) for p in lan_out] == [(HOST1, 80)]
    # and its replies pass (a known flow), whatever the rules say of outbound flows
    put_rules(net, net.r.cfg["firewall"]["rules"] + [{"action": "drop"}])
    wan_out = net.from_lan(IP(src=HOST1, dst=CLIENT) / TCP(sport=80, dport=5555, flags="SA"))[1]
    assert [(p.src, p[TCP].sport) for p in wan_out] == [(WAN_ADDR, 8080)]
    assert net.from_wan(syn(src=OTHER_CLIENT, dst=WAN_ADDR, dport=8080)) == ([], [])
    assert net.r.slow.firewall.hits()["rules"] == [1, 1, 0]
    assert net.counters()["forwards_hit"] == 1


def test_new_rules_end_the_flows_they_refuse_at_once():
    net = Net()
    assert len(net.from_lan(syn(src=HOST1, dport=80))[1]) == 1
    assert len(net.from_lan(syn(src=HOST1, sport=40001, dport=443))[1]) == 1
    assert len(net.from_lan(syn(src=HOST2, dport=80))[1]) == 1
    assert len(net.from_wan(syn(src=CLIENT, dst=WAN_ADDR, sport=5555, dport=8080))[0]) == 1
    assert net.r.table.count(6) == 4
    put_rules(net, [{"proto": "tcp", "lan": HOST1, "port": 80, "action": "reject"}],
              blocked=[HOST2])
    left = sorted((f[1], f[4]) for f in net.r.table.flows())
    # HOST1's 443 stays; its port 80 goes; HOST2 is blocked; the forward to HOST1 (inbound,
    # port 8080: the rule is outbound) stays
    assert left == sorted([(nat_ip(HOST1), 443), (nat_ip(CLIENT), 8080)])
    # HOST2's next packet of its old download meets the block: a RST, nothing leaves
    lan_out, wan_out = net.from_lan(IP(src=HOST2, dst=SERVER) / TCP(sport=40000, dport=80,
                                                                     flags="A", ack=99))
    assert wan_out == [] and str(lan_out[0][TCP].flags) == "R"
    # and the server's data finds no flow any more
    assert net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / TCP(sport=80, dport=40000,
                                                           flags="A")) == ([], [])
    assert net.r.slow.firewall.hits() == {"blocked": [1], "rules": [0], "default": 4}


def test_blocked_host_is_refused_both_ways_and_others_pass():
    net = Net()
    put_rules(net, blocked=[HOST1])
    assert net.from_lan(IP(src=HOST1, dst=SERVER) / ICMP(type=8, id=3))[1] == []
    assert net.from_wan(syn(src=CLIENT, dst=WAN_ADDR, dport=8080))[0] == []  # its forward
    assert len(net.from_lan(IP(src=HOST2, dst=SERVER) / ICMP(type=8, id=4))[1]) == 1


def test_the_default_drop_with_an_icmp_type_rule():
    net = Net()
    put_rules(net, [{"proto": "icmp", "port": 8, "action": "allow"}], default="drop")
    out = net.from_lan(IP(src=HOST1, dst=SERVER) / ICMP(type=8, id=9))[1]
    assert len(out) == 1
    assert net.from_lan(IP(src=HOST1, dst=SERVER) / ICMP(type=13, id=10))[1] == []
    assert net.from_lan(IP(src=HOST1, dst=SERVER) / UDP(sport=1, dport=2)) == ([], [])
    reply = net.from_wan(IP(src=SERVER, dst=WAN_ADDR) / ICMP(type=0, id=out[0][ICMP].id))[0]
    assert len(reply) == 1 and reply[0].dst == HOST1   # a reply always passes


def nat_ip(text):
    import nat
    return nat.ip(text)


# ---- validation: one sentence naming the field, nothing changes

LAN = {"addr_int": nat_ip("192.168.4.1"), "mask_int": nat_ip("255.255.255.0")}


@pytest.mark.parametrize("rule,field", [
    ({"action": "deny"}, "firewall.rules[0].action"),
    ({"proto": "tcp"}, "firewall.rules[0].action"),
    ({"dir": "sideways", "action": "drop"}, "firewall.rules[0].dir"),
    ({"proto": "gre", "action": "drop"}, "firewall.rules[0].proto"),
    ({"lan": "192.168.4.300", "action": "drop"}, "firewall.rules[0].lan"),
    ({"remote": "10.0.0.1/24", "action": "drop"}, "firewall.rules[0].remote"),
    ({"remote": "10.0.0.0/33", "action": "drop"}, "firewall.rules[0].remote"),
    ({"port": 80, "action": "drop"}, "firewall.rules[0].port"),
    ({"proto": "tcp", "port": 0, "action": "drop"}, "firewall.rules[0].port"),
    ({"proto": "udp", "port": [9, 8], "action": "drop"}, "firewall.rules[0].port"),
    ({"proto": "icmp", "port": 256, "action": "drop"}, "firewall.rules[0].port"),
    ({"host": "x", "action": "drop"}, "firewall.rules[0].host"),
    ("drop", "firewall.rules[0]"),
])
def test_a_bad_rule_names_its_field(rule, field):
    raw_cfg = config.defaults()
    raw_cfg["firewall"]["rules"] = [rule]
    with pytest.raises(ValueError) as e:
        config.validate(raw_cfg, strict=True)
    assert str(e.value).startswith(field + ":"), e.value
    cfg, problems = config.validate(raw_cfg)  # at boot: left out, and said
    assert cfg["firewall"]["rules"] == [] and problems[0].startswith(field)


@pytest.mark.parametrize("section,field", [
    ({"default": "maybe"}, "firewall.default"),
    ({"blocked": ["10.0.0.5"]}, "firewall.blocked[0]"),
    ({"blocked": ["192.168.4.1"]}, "firewall.blocked[0]"),
    ({"blocked": ["192.168.4.9", "192.168.4.9"]}, "firewall.blocked[1]"),
    ({"blocked": ["192.168.4.%d" % (2 + i) for i in range(BLOCKED_MAX + 1)]},
     "firewall.blocked[%d]" % BLOCKED_MAX),
    ({"rules": [{"action": "drop"}] * (RULES_MAX + 1)}, "firewall.rules[%d]" % RULES_MAX),
    ({"rule": []}, "firewall.rule"),
])
def test_a_bad_section_names_its_field(section, field):
    raw_cfg = config.defaults()
    raw_cfg["firewall"].update(section)
    with pytest.raises(ValueError) as e:
        config.validate(raw_cfg, strict=True)
    assert str(e.value).startswith(field + ":"), e.value


def test_memory_is_fixed_and_known():
    fw = fwrules.Firewall()
    words, hits = len(fw._words), len(fw._hits)
    assert fwrules.bytes_used() == 4 * (words + hits)
    assert words == 9 * (RULES_MAX + BLOCKED_MAX)


# ---- the management API and nr, on the running router

@pytest.fixture
def board(tmp_path):
    yield from running_board(tmp_path)


def test_rules_added_moved_removed_live_and_hits_follow_a_rule(board, capsys):
    r = runner.router
    assert api.add_rule({"proto": "tcp", "port": 80, "action": "drop"})["applied"] == ["firewall"]
    api.add_rule({"proto": "udp", "action": "reject"}, at=0)
    r.call(board.lan.inject, raw(syn()))
    r.call(lambda: None)
    r.call(lambda: None)
    assert [x["hits"] for x in api.rules()["rules"]] == [0, 1]
    api.move_rule(1, 0)
    fw = api.rules()
    assert [(x["proto"], x["hits"]) for x in fw["rules"]] == [("tcp", 1), ("udp", 0)]
    before = api.rules()
    for bad in (lambda: api.add_rule({"proto": "tcp", "port": 99999, "action": "drop"}),
                lambda: api.remove_rule(5), lambda: api.move_rule(0, 7),
                lambda: api.block("10.9.9.9"), lambda: api.unblock(HOST2)):
        with pytest.raises(ValueError):
            bad()
    assert api.rules() == before and api.pending() == []
    api.block(HOST2)
    api.remove_rule(1)
    nr.rules()
    api.unblock(HOST2)
    assert api.rules()["blocked"] == []
    out = capsys.readouterr().out
    assert " 0 drop   out tcp  lan any" in out and "blocked 192.168.4.3" in out, out
    assert "default allow" in out
    api.save()
    assert config.load(board.CONFIG_PATH)[0]["firewall"]["rules"] == [
        {"dir": "out", "proto": "tcp", "lan": "any", "remote": "any", "port": 80,
         "action": "drop"}]


def test_an_inbound_reject_answers_the_remote_host_from_the_wan_address():
    net = Net()   # tcp 8080 -> HOST1:80, udp 6000 -> HOST2:7000
    put_rules(net, [{"dir": "in", "proto": "any", "remote": CLIENT, "action": "reject"}])
    lan_out, wan_out = net.from_wan(syn(src=CLIENT, dst=WAN_ADDR, sport=5555, dport=8080))
    assert lan_out == [] and len(wan_out) == 1
    rst = wan_out[0]
    assert (rst.src, rst.dst, rst[TCP].sport, rst[TCP].dport) == (WAN_ADDR, CLIENT, 8080, 5555)
    assert str(rst[TCP].flags) == "RA" and rst[TCP].ack == 1001
    assert_checksums(rst)
    err = net.from_wan(IP(src=CLIENT, dst=WAN_ADDR) / UDP(sport=9, dport=6000) / b"q")[1][0]
    assert (err.src, err.dst, err[ICMP].type, err[ICMP].code) == (WAN_ADDR, CLIENT, 3, 13)
    assert net.counters()["forwards_hit"] == 0 and net.r.table.count(6) == 0
