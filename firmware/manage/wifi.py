# The "wifi" section of natrouter.json (config.py): the Wi-Fi boards' access point and
# station. Keys a board adds to its defaults (config.board_rules: e.g. the station's MAC
# address, more upstream networks) are kept as given, for the board's check() to judge
# with the rules here. Runs on MicroPython; slow path only.
import json

from .validation import is_int

_WIFI = ("ap_ssid", "ap_key", "ap_channel", "ap_clients", "sta_ssid", "sta_key")


def wifi_name_ok(v, empty=False):
    """An SSID: up to 32 bytes (at least 1 unless empty may be)."""
    n = len(v.encode()) if isinstance(v, str) else -1
    return (0 if empty else 1) <= n <= 32


def wifi_key_ok(v):
    """A Wi-Fi key: empty (an open network), a passphrase of 8..63 printable ASCII
    characters or 64 hex digits."""
    return isinstance(v, str) and (v == "" or (8 <= len(v) <= 63 and all(
        " " <= c <= "~" for c in v)) or (len(v) == 64 and all(
        c in "0123456789abcdefABCDEF" for c in v)))


WIFI_KEY_RULE = ("must be empty (an open network), a passphrase of 8..63 printable ASCII "
                 "characters or 64 hex digits")


def validate(sec, default, problems):
    """The "wifi" section (config.validate): what the file gives, key by key; a bad
    value takes its default, reported in problems."""
    out = dict(default)
    if not isinstance(sec, dict):
        problems.add("wifi: must be an object with %s" % ", ".join(default), "using defaults")
        return out
    for k in sec:
        if k not in default:
            problems.add("wifi.%s: unknown key" % k, "ignored")
    for k in default:
        if k not in sec:
            continue
        v = sec[k]
        if k not in _WIFI:  # a board's own key: its check() judges it
            ok = True
        elif k.endswith("_ssid"):
            ok = wifi_name_ok(v, empty=k != "ap_ssid")
            wrong = "%r must be a name of %s32 bytes" % (v, "1.." if k == "ap_ssid" else "up to ")
        elif k.endswith("_key"):  # never echoed: it is a password
            ok = wifi_key_ok(v)
            wrong = WIFI_KEY_RULE
        else:
            hi = 13 if k == "ap_channel" else 10
            ok = is_int(v) and 1 <= v <= hi
            wrong = "%r must be an integer 1..%d" % (v, hi)
        if ok:
            out[k] = v
        else:
            problems.add("wifi.%s: %s" % (k, wrong),
                         "using the default" if k.endswith("_key") else "using %s" % json.dumps(
                             default[k]))
    return out
