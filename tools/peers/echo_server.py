"""A line echo server for the virtual board's tests and demo, run inside a namespace.

    echo_server.py tcp|udp PORT NAME [ADDRESS]

Replies '<NAME> <text> from <peer ip>:<port>' to every line (TCP) or datagram (UDP), so
the client sees which address the server saw. Listens on ADDRESS (default: all; a UDP
server on one address answers from it). Prints 'ready' once listening."""
import socket
import sys
import threading
proto, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
address = sys.argv[4] if len(sys.argv) > 4 else "0.0.0.0"
def answer(text, peer):
    return ("%s %s from %s:%d\n" % (name, text.strip(), peer[0], peer[1])).encode()
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(answer(data.decode(errors="replace"), peer), peer)
else:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.listen(16)
    print("ready", flush=True)
    def serve(c, peer):
        with c, c.makefile("r") as f:
            for line in f:
                c.sendall(answer(line, peer))
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()
