# The capture streamed over TCP on the LAN address (issue 21), as esp32_nat_router does:
#
#   nc 192.168.4.1 19000 | wireshark -k -i -
#
# While a capture is on (manage.capture_api.capture_start) and "capture.port" is not 0, a thread
# of its own listens on the LAN address only (web.server.open_socket: the board keeps it
# to the LAN), takes one client at a time, sends it the pcap file header, then the
# ring's records as the router notes them (read on the router's thread: Router.call). It
# ends when the capture stops or the router goes.
import time

from compat import sleep_ms

CHUNK = 2048        # bytes of records read from the ring at a time
IDLE_MS = 50        # wait when the ring is empty


def serve(board, life, addr, port):
    """Run in its own thread: life["stop"] ends it; life["running"] is False once it has."""
    from manage import capture_api as api
    from web.server import open_socket
    try:
        s = open_socket(addr, port, board)
    except OSError as e:
        print("natrouter: capture: cannot listen on %s:%d (%s)" % (addr, port, e))
        life["running"] = False
        return
    try:
        while not life["stop"] and _capturing(api):
            try:
                client, _ = s.accept()
            except OSError:   # none waiting (non-blocking)
                sleep_ms(IDLE_MS)
                continue
            _stream(client, api, life)
    finally:
        s.close()
        life["running"] = False


def _capturing(api):
    try:
        return api.capture_status()["on"]
    except OSError:  # the router stopped
        return False


def _stream(client, api, life):
    client.setblocking(True)
    try:
        client.settimeout(5)
        _send(client, api.capture_header())
        while not life["stop"]:
            data = api.capture_read(CHUNK)
            if data:
                _send(client, data)
            elif not _capturing(api):
                break
            else:
                sleep_ms(IDLE_MS)
    except OSError:   # the client went away, or the router stopped
        pass
    finally:
        client.close()


def _send(client, data):
    view = memoryview(data)
    sent = 0
    deadline = time.time() + 10
    while sent < len(data):
        n = client.send(view[sent:])
        if n is None or n <= 0:
            if time.time() > deadline:
                raise OSError("capture: the client takes nothing")
            sleep_ms(IDLE_MS)
            continue
        sent += n
