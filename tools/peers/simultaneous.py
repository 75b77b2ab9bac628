"""TCP simultaneous open (RFC 793 3.4, RFC 5382 REQ-2): bind LPORT, connect to HOST:PORT
while the other side connects to us; both SYNs cross. Prints CONNECTED and the peer's
line, or FAILED <why>. Bounded by TIMEOUT seconds.

    simultaneous.py LPORT HOST PORT TIMEOUT WORD"""
import socket
import sys
import time

lport, host, port, timeout, word = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
end = time.monotonic() + timeout
while time.monotonic() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", lport))
    s.settimeout(max(0.1, end - time.monotonic()))
    try:
        s.connect((host, port))
    except (ConnectionRefusedError, ConnectionResetError, OSError):
        s.close()
        time.sleep(0.05)  # not there yet: try again, still from LPORT
        continue
    s.sendall(word.encode() + b"\n")
    line = s.makefile().readline().strip()
    print("CONNECTED", line, flush=True)
    sys.exit(0)
print("FAILED timeout", flush=True)
