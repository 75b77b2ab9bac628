"""Connect to HOST:PORT and write what arrives into FILE for SECONDS (bounded: at most
60 s and 16 MB), e.g. the router's capture stream (nc HOST PORT > FILE).

    tcp_read.py HOST PORT FILE SECONDS

Prints 'connected' once connected, then the bytes written at the end."""
import socket
import sys
import time

host, port, path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], min(float(sys.argv[4]), 60)
s = socket.create_connection((host, port), 5)
print("connected", flush=True)
end = time.monotonic() + seconds
got = 0
with open(path, "wb") as f:
    while got < 16 << 20:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        f.write(data)
        got += len(data)
print(got, flush=True)
