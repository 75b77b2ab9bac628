"""The client of echo_server.py, run inside a namespace.

    client.py tcp|udp HOST PORT SPORT TIMEOUT MESSAGE...

Prints one line per message: the reply, REFUSED or TIMEOUT (UDP retries 3 times). A
message '-' waits for a line on stdin instead (to hold a connection open). SPORT 0:
any source port."""
import socket
import sys
proto, host, port, sport, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sport:
    s.bind(("0.0.0.0", sport))
s.settimeout(timeout)
try:
    s.connect((host, port))
except socket.timeout:
    print("TIMEOUT", flush=True)
    sys.exit()
except ConnectionRefusedError:
    print("REFUSED", flush=True)
    sys.exit()
f = s.makefile("r") if kind == socket.SOCK_STREAM else None
for msg in sys.argv[6:]:
    if msg == "-":
        sys.stdin.readline()
        continue
    result = "TIMEOUT"
    for attempt in range(3 if f is None else 1):
        try:
            if f is None:
                s.send(msg.encode())
                result = s.recv(4096).decode().strip()
            else:
                s.sendall(msg.encode() + b"\n")
                result = f.readline().strip() or "CLOSED"
            break
        except socket.timeout:
            continue
        except ConnectionRefusedError:
            result = "REFUSED"
            break
    print(result, flush=True)
