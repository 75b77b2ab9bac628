# Packet capture through the management API (filter/capture.py: the ring and the links'
# taps; services/capstream.py: the TCP stream): plain data in and out, for nr, the page
# and tools/capture.py. What touches the router runs on its thread (Router.call).
from .runner import runner


def _router():
    r = runner.router
    if r is None:
        raise OSError("the router is not running (runner.start(board))")
    return r


def capture_start(side="both", host=None, proto=None, port=None):
    """Capture what the links receive (before translation) and send (after) on side
    "lan", "wan" or "both", to or from host, of proto, to or from port, into a ring of
    capture.size bytes, each packet cut at capture.snap; streamed on the LAN address at
    capture.port (0: not). Starts over when on already. Returns capture_status()."""
    from filter.capture import check
    filters = check(side, host, proto, port)
    r = _router()
    status = r.call(_capture_start, r, filters)
    port = r.cfg["capture"]["port"]
    if port and not _stream["running"]:
        from services import capstream
        import web
        _stream.update(stop=False, running=True)
        web.spawn(capstream.serve, runner.board, _stream, r.cfg["lan"]["addr"], port)
    return status


_stream = {"stop": False, "running": False}   # the TCP stream's thread (capstream.py)


def _capture_start(r, filters):
    from filter import capture
    sec = r.cfg["capture"]
    cap = r.capture
    if cap is None or (cap.size, cap.snap) != (sec["size"], sec["snap"]):
        r.capture = None   # the old ring goes before the new one is made
        cap = capture.Capture(sec["size"], sec["snap"])
    cap.start(filters)
    r.capture = cap
    capture.tap(r.shared, r.datapath, cap)
    return cap.status()


def capture_stop():
    """Stop noting packets (what the ring holds stays, to be read); the links' path is
    again the one without capture. Returns capture_status()."""
    r = _router()
    return r.call(_capture_stop, r)


def _capture_stop(r):
    from filter import capture
    capture.untap(r.shared, r.datapath)
    if r.capture is None:
        return _NO_CAPTURE
    r.capture.on = False
    return r.capture.status()


_NO_CAPTURE = {"on": False, "packets": 0, "lost": 0, "held": 0, "size": 0, "snap": 0}


def capture_status():
    """{"on", "packets" (noted), "lost" (the ring was full: the newest dropped), "held"
    (bytes waiting to be read), "size", "snap"}."""
    r = _router()
    return r.call(lambda: dict(r.capture.status()) if r.capture else dict(_NO_CAPTURE))


def capture_header():
    """The pcap file header (LINKTYPE_RAW) that goes before capture_read()'s records."""
    from filter.capture import file_header
    r = _router()
    return file_header(r.capture.snap if r.capture else r.cfg["capture"]["snap"])


def capture_read(most=4096):
    """Up to `most` bytes of whole pcap records, oldest first, taken from the ring."""
    r = _router()
    return r.call(lambda: r.capture.read(most) if r.capture else b"")
