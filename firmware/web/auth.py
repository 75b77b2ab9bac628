# Who may use the page: sessions (a cookie, HttpOnly, SameSite=Strict), the token every
# change must carry (one per session: no cross-site request can know it), and the login's
# rate limit. Bounded: at most SESSIONS sessions (a visitor's before the admin's, the
# least recently used first), at most ADDRESSES addresses remembered by the limiter.
# The password itself is checked by manage/webconfig.py against its stored hash.
from compat import ticks_diff, ticks_ms, urandom

COOKIE = "nr_session"
SESSIONS = 6
IDLE_MS = 30 * 60 * 1000    # a session unused this long ends
ATTEMPTS = 5                # failed logins per address ...
ALL_ATTEMPTS = 20           # ... and from everyone, per WINDOW_MS
WINDOW_MS = 60 * 1000
ADDRESSES = 16


def token():
    return "".join("%02x" % b for b in urandom(16))


def same(a, b):
    """a == b for two strings, in constant time for equal lengths."""
    if not isinstance(a, str) or not isinstance(b, str) or len(a) != len(b):
        return False
    diff = 0
    for x, y in zip(a, b):
        diff |= ord(x) ^ ord(y)
    return diff == 0


class Session:
    def __init__(self, admin, now):
        self.id = token()
        self.csrf = token()   # the form field "csrf", the header X-CSRF-Token
        self.admin = admin    # logged in; else a visitor's (the login and setup forms)
        self.used = now


class Sessions:
    def __init__(self, size=SESSIONS, clock=ticks_ms):
        self.size = size
        self.clock = clock
        self._by_id = {}

    def new(self, admin):
        now = self.clock()
        if len(self._by_id) >= self.size:
            # a visitor's goes before an admin's, the least recently used first
            gone = min(self._by_id.values(),
                       key=lambda s: (s.admin, -ticks_diff(now, s.used)))
            del self._by_id[gone.id]
        s = Session(admin, now)
        self._by_id[s.id] = s
        return s

    def get(self, sid):
        """The live session of this cookie value, or None."""
        s = self._by_id.get(sid) if isinstance(sid, str) else None
        if s is None:
            return None
        now = self.clock()
        if ticks_diff(now, s.used) > IDLE_MS:
            del self._by_id[s.id]
            return None
        s.used = now
        return s

    def drop(self, s):
        self._by_id.pop(s.id, None)

    def clear(self):
        """Every session ends (a new password)."""
        self._by_id.clear()

    def __len__(self):
        return len(self._by_id)


class Limiter:
    """At most ATTEMPTS failed logins per address, ALL_ATTEMPTS from everyone, per
    WINDOW_MS; a refused attempt does not even check the password (which costs)."""

    def __init__(self, clock=ticks_ms):
        self.clock = clock
        self._failed = {}   # address -> [count, window start]
        self._all = [0, clock()]

    def wait_s(self, addr):
        """0 when addr may try now, else the seconds until it may."""
        now = self.clock()
        for entry, limit in ((self._failed.get(addr), ATTEMPTS), (self._all, ALL_ATTEMPTS)):
            if entry is None:
                continue
            left = WINDOW_MS - ticks_diff(now, entry[1])
            if left <= 0:
                entry[0], entry[1] = 0, now
            elif entry[0] >= limit:
                return left // 1000 + 1
        return 0

    def failed(self, addr):
        now = self.clock()
        entry = self._failed.get(addr)
        if entry is None:
            if len(self._failed) >= ADDRESSES:  # the oldest window goes
                oldest = min(self._failed, key=lambda a: -ticks_diff(now, self._failed[a][1]))
                del self._failed[oldest]
            entry = self._failed[addr] = [0, now]
        entry[0] += 1
        self._all[0] += 1

    def succeeded(self, addr):
        self._failed.pop(addr, None)
