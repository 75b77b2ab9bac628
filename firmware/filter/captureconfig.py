# natrouter.json's "capture" section (manage/config.py calls defaults() and validate()):
# apart from capture.py, which is loaded only when a capture starts.


def defaults():
    """natrouter.json's "capture": the ring's bytes, the bytes kept of each packet, the
    TCP port of the stream on the LAN address (0: none)."""
    return {"size": 16384, "snap": 128, "port": 19000}


_LIMITS = {"size": (2048, 1 << 20), "snap": (40, 9000), "port": (0, 65535)}


def validate(sec, default, problems):
    """The section from the file's raw value; default: the board's (defaults() laid
    over by the board's own, e.g. a smaller ring on an ESP32)."""
    from manage.validation import int_section
    return int_section("capture", sec, default, _LIMITS, problems)
