"""Exit 0 when HOST:PORT accepts a TCP connection within a second, else 1.

    port_open.py HOST PORT"""
import socket
import sys

try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()
except OSError:
    sys.exit(1)
