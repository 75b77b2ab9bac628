"""Pull a packet capture from a board over its REPL into a pcap file (issue 21).

    .venv/bin/python tools/capture.py --port /dev/ttyUSB0 -w out.pcap --seconds 10 \\
        [--side lan|wan|both] [--host 192.168.4.2] [--proto tcp] [--match-port 80]

Drives mpremote (resume: no soft reset): starts the router's capture (manage.capture_api.
capture_start: what the links receive, before translation, and send, after), reads the
ring's records for --seconds as the board notes them, stops it and reads what is left,
then writes the file (libpcap, LINKTYPE_RAW) and says how many packets it holds and how
many the ring lost (full: the newest dropped). tcpdump -r, Wireshark and scapy read it.
Exit 1 with the board's reason when the capture cannot start."""
import argparse
import binascii
import subprocess
import sys

from hostenv import mpremote_command

BOARD_CODE = """
import time, binascii
from manage import capture_api as api
api.capture_start(%(side)r, %(host)r, %(proto)r, %(port)r)
print("HEADER", binascii.hexlify(api.capture_header()).decode())
t0 = time.ticks_ms()
def pull():
    d = api.capture_read(1024)
    if d:
        print("RECORDS", binascii.hexlify(d).decode())
    return d
while time.ticks_diff(time.ticks_ms(), t0) < %(ms)d:
    if not pull():
        time.sleep_ms(50)
s = api.capture_stop()
while pull():
    pass
print("STATUS", s["packets"], s["lost"])
"""


def pull(port, seconds, side="both", host=None, proto=None, match_port=None):
    """(pcap bytes, packets, lost) of a capture of `seconds` on the board at port."""
    code = BOARD_CODE % {"side": side, "host": host, "proto": proto, "port": match_port,
                         "ms": int(seconds * 1000)}
    out = subprocess.run(mpremote_command() + ["connect", port, "resume", "exec", code],
                         capture_output=True, text=True, timeout=seconds + 60)
    data, status = bytearray(), None
    for line in out.stdout.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in ("HEADER", "RECORDS"):
            data += binascii.unhexlify(rest)
        elif word == "STATUS":
            status = [int(x) for x in rest.split()]
    if status is None or not data:
        raise RuntimeError("the capture did not run: %s" % (out.stdout + out.stderr).strip()[-400:])
    return bytes(data), status[0], status[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", required=True, help="the board's serial port (or the virtual board's pty)")
    ap.add_argument("-w", "--write", required=True, help="the pcap file to write")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--side", default="both", choices=("lan", "wan", "both"))
    ap.add_argument("--host")
    ap.add_argument("--proto", choices=("tcp", "udp", "icmp"))
    ap.add_argument("--match-port", type=int)
    a = ap.parse_args(argv)
    try:
        data, packets, lost = pull(a.port, a.seconds, a.side, a.host, a.proto, a.match_port)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print("capture: %s" % e, file=sys.stderr)
        return 1
    with open(a.write, "wb") as f:
        f.write(data)
    print("capture: %d packets in %s; %d lost (the ring was full)" % (packets, a.write, lost))
    return 0


if __name__ == "__main__":
    sys.exit(main())
