"""The lwIP host program's command line (lwip_host.c), from the board's natrouter.json
read exactly as the firmware reads it: firmware/manage/config.py with this board's rules
(../lwiprules.py: the port split, what natlink claims). CPython.

    python3 hostargs.py CFG_PATH SOCK_DIR LAN_TAP,LAN_MAC WAN_TAP,WAN_MAC

prints the arguments as one JSON list. tools/topology.py runs it as a program: the
board's rules are global to firmware/manage/config.py, and must not reach the process that
starts the board (a test run also tests config.py itself).
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE.parent, HERE.parents[1] / "natlink", HERE.parents[2] / "firmware"):  # lwiprules; config
    sys.path.insert(0, str(p))

from manage import config  # noqa: E402
import lwiprules  # noqa: E402


def argv(cfg_path, sock_dir, lan_tap, lan_mac, wan_tap, wan_mac):
    config.board_rules(lwiprules.DEFAULTS, lwiprules.check)
    cfg, problems = config.load(str(cfg_path))
    for p in problems:  # the firmware prints them too, and uses what is printed
        sys.stderr.write("natrouter.json: %s\n" % p)
    c = lwiprules.claims(cfg)
    lan, wan = cfg["lan"], cfg["wan"]
    return ["--dir", str(sock_dir),
            "--lan", ",".join((lan_tap, lan_mac, lan["addr"], lan["mask"])),
            "--wan", ",".join((wan_tap, wan_mac, wan["addr"], wan["mask"], wan["gateway"])),
            "--lan-mtu", str(lan["mtu"]), "--wan-mtu", str(wan["mtu"]),
            "--tcp", lwiprules.ranges_text(c["tcp"]), "--udp", lwiprules.ranges_text(c["udp"]), "--icmp", lwiprules.ranges_text(c["icmp"])
            ] + (["--dhcp"] if c["dhcp"] else [])


if __name__ == "__main__":
    path, sock_dir, lan, wan = sys.argv[1:5]
    print(json.dumps(argv(path, sock_dir, *lan.split(",", 1), *wan.split(",", 1))))
