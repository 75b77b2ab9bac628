# The configuration's sections for the page on the LAN and the status for machines
# (manage/config.py calls defaults() and validate()), and the admin password's hashing.
#
#   "web":   {"enabled": true, "port": 80}        the page, on the LAN address only
#   "admin": {"password": ""}                      "" until one is set, then
#            "sha256$<iterations>$<salt, hex>$<digest, hex>": salted, iterated sha256
#   "mqtt":  {"enabled": false, "host": "", "port": 1883, "user": "", "password": "",
#             "topic": "natrouter", "interval_s": 30, "discovery": "homeassistant"}
#
# The clear text of the admin password is never kept: hash_password() makes the stored
# form, check_password() compares in constant time. Each bad key takes its default and
# says so, as config.validate() does for the others.
import hashlib

from compat import urandom
import nat
from nat.addr import unroutable
from .validation import is_int

ITERATIONS = 2000       # sha256 rounds: ~2 ms on a PC, a fraction of a second on an ESP32
PASSWORD_LEN = (8, 64)  # characters of a new admin password
SALT_BYTES = 16
_TEXT_MAX = 64          # mqtt.user, mqtt.password, mqtt.topic
_TOPIC_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/"
SECRET_KEYS = ("admin.password", "mqtt.password", "wifi.ap_key", "wifi.sta_key")


def defaults():
    return {
        "web": {"enabled": True, "port": 80},
        "admin": {"password": ""},
        "mqtt": {"enabled": False, "host": "", "port": 1883, "user": "", "password": "",
                 "topic": "natrouter", "interval_s": 30, "discovery": "homeassistant"},
    }


# ---- the password

def hash_password(text, salt=None, iterations=ITERATIONS):
    """The stored form of a new admin password; ValueError naming the rule when text
    does not keep it."""
    if not isinstance(text, str) or not PASSWORD_LEN[0] <= len(text) <= PASSWORD_LEN[1]:
        raise ValueError("admin.password: a password of %d..%d characters" % PASSWORD_LEN)
    salt = salt if salt is not None else urandom(SALT_BYTES)
    return "sha256$%d$%s$%s" % (iterations, _hex(salt), _hex(_digest(text, salt, iterations)))


def check_password(text, stored):
    """True when text is the password whose stored form is `stored`."""
    parts = _parts(stored)
    if parts is None or not isinstance(text, str):
        return False
    iterations, salt, want = parts
    got = _digest(text, salt, iterations)
    diff = len(got) ^ len(want)
    for a, b in zip(got, want):  # in constant time: no early way out
        diff |= a ^ b
    return diff == 0


def _digest(text, salt, iterations):
    secret = text.encode()
    d = hashlib.sha256(salt + secret).digest()
    for _ in range(iterations - 1):
        d = hashlib.sha256(d + salt + secret).digest()
    return d


def _parts(stored):
    """(iterations, salt, digest) of a stored password, or None when it is not one."""
    if not isinstance(stored, str):
        return None
    p = stored.split("$")
    try:
        if len(p) != 4 or p[0] != "sha256" or not p[1].isdigit():
            return None
        iterations, salt, digest = int(p[1]), _unhex(p[2]), _unhex(p[3])
    except ValueError:
        return None
    if not 1 <= iterations <= 1000000 or not 8 <= len(salt) <= 64 or len(digest) != 32:
        return None
    return iterations, salt, digest


def _hex(b):
    return "".join("%02x" % x for x in b)


def _unhex(s):
    if len(s) % 2:
        raise ValueError("odd")
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


# ---- validation

def validate(raw, d, problems):
    """{"web": ..., "admin": ..., "mqtt": ...} from the file's raw object, its defaults d."""
    web = _section(raw, "web", d, problems)
    _check(web, d, "web", "enabled", _is_flag, "true or false", problems)
    _check(web, d, "web", "port", _is_port, "an integer 1..65535", problems)
    admin = _section(raw, "admin", d, problems)
    _check(admin, d, "admin", "password", lambda v: v == "" or _parts(v) is not None,
           "\"\" (none yet) or a stored password (set one with nr.password() or the page)",
           problems)
    m = _section(raw, "mqtt", d, problems)
    _check(m, d, "mqtt", "enabled", _is_flag, "true or false", problems)
    _check(m, d, "mqtt", "host", lambda v: v == "" or _is_address(v),
           "\"\" or the broker's IPv4 address", problems)
    _check(m, d, "mqtt", "port", _is_port, "an integer 1..65535", problems)
    for key in ("user", "password"):
        _check(m, d, "mqtt", key, lambda v: isinstance(v, str) and len(v) <= _TEXT_MAX,
               "text of at most %d characters" % _TEXT_MAX, problems)
    _check(m, d, "mqtt", "topic", lambda v: _is_topic(v) and v != "",
           "a topic of 1..%d characters a-z A-Z 0-9 _ - /" % _TEXT_MAX, problems)
    _check(m, d, "mqtt", "discovery", _is_topic,
           "\"\" (no discovery) or a topic prefix such as \"homeassistant\"", problems)
    _check(m, d, "mqtt", "interval_s", lambda v: is_int(v) and 5 <= v <= 3600,
           "an integer 5..3600 (seconds)", problems)
    if m["enabled"] and m["host"] == "":
        problems.add("mqtt.host: must be the broker's address when mqtt.enabled is true",
                     "mqtt off")
        m["enabled"] = False
    return {"web": web, "admin": admin, "mqtt": m}


def _section(raw, name, d, problems):
    sec = raw.get(name, d[name])
    if not isinstance(sec, dict):
        problems.add("%s: must be an object with %s" % (name, ", ".join(d[name])),
                     "using defaults")
        sec = {}
    for k in sec:
        if k not in d[name]:
            problems.add("%s.%s: unknown key" % (name, k), "ignored")
    return {k: sec.get(k, v) for k, v in d[name].items()}


def _check(sec, d, name, key, ok, rule, problems):
    if not ok(sec[key]):
        problems.add("%s.%s: %r must be %s" % (name, key, sec[key], rule),
                     "using %r" % (d[name][key],))
        sec[key] = d[name][key]


def _is_flag(v):
    return v is True or v is False


def _is_port(v):
    return is_int(v) and 1 <= v <= 65535


def _is_address(v):
    try:
        return not unroutable(nat.ip(v))
    except ValueError:
        return False


def _is_topic(v):
    if not isinstance(v, str) or len(v) > _TEXT_MAX:
        return False
    for c in v:
        if c not in _TOPIC_CHARS:
            return False
    return True
