# The page's HTTP server, on MicroPython's asyncio: one listening socket on the LAN address
# (kept off the WAN by the board where its stack needs it: board.lan_only(sock)), at most
# MAX_CLIENTS connections at a time (more get 503 at once), one request per connection.
# Each request is read whole within READ_S, bounded (HEAD_MAX bytes of request line and
# headers, BODY_MAX of body) and checked before microdot sees it: bad input gets its HTTP
# error here and never reaches a handler; the answer must be taken within WRITE_S. Memory
# stays bounded whatever the clients do: a few KB per connection, MAX_CLIENTS of them.
import asyncio
import socket

from compat import ticks_diff, ticks_ms

MAX_CLIENTS = 4
HEAD_MAX = 2048      # request line and headers
HEADERS_MAX = 32
BODY_MAX = 4096      # forms and JSON
READ_S = 5           # the whole request, from the connection's start
WRITE_S = 10         # the whole answer
PAGES_MAX = 24       # paths whose timings are kept (the rest count as "other")
LINGER_S = 1         # after an error, what the client still sends is dropped this long
LINGER_MAX = 16384   # ... up to this much
METHODS = ("GET", "HEAD", "POST", "OPTIONS")
_REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout",
            413: "Payload Too Large", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class Http:
    """Serves app (a microdot.Microdot) on one address; counts what it saw."""

    def __init__(self, app, board=None):
        self.app = app
        self.board = board
        self.active = 0
        self.counts = {"served": 0, "busy": 0, "bad": 0, "slow": 0, "gone": 0}
        self.pages = {}    # path -> [requests, last ms, longest ms]
        self.where = None  # (address, port) listened on
        self._sock = None
        self._accept = None
        from microdot import Request
        Request.max_content_length = Request.max_body_length = BODY_MAX
        Request.max_readline = HEAD_MAX

    def listen(self, addr, port):
        """Listen on addr:port (OSError when it cannot); the accept loop runs as a task."""
        from asyncio.stream import Server  # MicroPython's: its _serve() accepts for us
        s = open_socket(addr, port, self.board)
        self._accept = Server()
        self._accept.task = asyncio.create_task(self._accept._serve(s, self._client, None))
        self._sock, self.where = s, (addr, port)

    async def close(self):
        if self._accept is not None:
            self._accept.close()
            await asyncio.sleep_ms(20)  # the accept loop takes its cancellation
            self._sock.close()
        self._accept = self._sock = self.where = None

    # ---- one connection

    async def _client(self, reader, writer):
        try:
            if self.active >= MAX_CLIENTS:
                self.counts["busy"] += 1
                await asyncio.wait_for(_answer(writer, 503, "busy: try again"), 2)
                return
            self.active += 1
            try:
                await self._request(reader, writer)
            finally:
                self.active -= 1
        except asyncio.TimeoutError:
            self.counts["slow"] += 1
        except Exception:  # the client went away, or broke the connection: nothing to say
            self.counts["gone"] += 1
        finally:
            writer.s.close()

    async def _request(self, reader, writer):
        t0 = ticks_ms()
        try:
            got = await asyncio.wait_for(_read_head(reader), READ_S)
        except asyncio.TimeoutError:
            self.counts["slow"] += 1
            await asyncio.wait_for(_answer(writer, 408, "the request took too long"), 2)
            return
        if got is None:
            return  # closed before a whole request
        problem = check(got[0]) if got[0] is not None else got[1]
        if problem is not None:
            self.counts["bad"] += 1
            await asyncio.wait_for(_answer(writer, problem[0], problem[1]), 2)
            try:  # what the client still sends is read and dropped, so that closing with
                await asyncio.wait_for(_drain(reader), LINGER_S)  # it unread sends no RST
            except asyncio.TimeoutError:                            # before our answer
                pass
            return
        head, rest = got
        await asyncio.wait_for(self.app.handle_request(_Replay(head + rest, reader),
                                                       _Coalesce(writer)), READ_S + WRITE_S)
        self.counts["served"] += 1
        self._timed(head, ticks_diff(ticks_ms(), t0))

    def _timed(self, head, ms):
        path = head.split(b" ", 2)[1].split(b"?", 1)[0].decode()
        if path not in self.pages and len(self.pages) >= PAGES_MAX:
            path = "other"
        p = self.pages.setdefault(path, [0, 0, 0])
        p[0] += 1
        p[1] = ms
        p[2] = max(p[2], ms)

    def stats(self):
        return {"listening": self.where, "connections": self.active, "counts": self.counts,
                "pages": {k: {"requests": v[0], "last_ms": v[1], "max_ms": v[2]}
                          for k, v in self.pages.items()}}


def open_socket(addr, port, board=None):
    """A non-blocking listening socket on addr:port, kept to the LAN by the board where
    its stack needs it (board.lan_only, optional: boards/README.md)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        keep = getattr(board, "lan_only", None)
        if keep is not None:
            keep(s)
        s.bind(socket.getaddrinfo(addr, port)[0][-1])
        s.listen(2 * MAX_CLIENTS)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


async def _read_head(reader):
    """(head, the bytes read after it), or (None, (HTTP status, why)) when it is too long,
    or None when the client closed first."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return buf[:end + 4], buf[end + 4:]
        if len(buf) > HEAD_MAX:
            if b"\r\n" not in buf[:HEAD_MAX]:
                return None, (414, "the request line is too long")
            return None, (431, "the request's headers are too long")
        more = await reader.read(512)
        if not more:
            return None
        buf += more


async def _drain(reader):
    n = 0
    while n < LINGER_MAX:
        more = await reader.read(512)
        if not more:
            return
        n += len(more)


def check(head):
    """None when the head (request line and headers) is one microdot takes, else (HTTP
    status, why)."""
    for b in head:
        if b > 126 or (b < 32 and b not in (9, 10, 13)):
            return 400, "the request holds bytes that are not text"
    lines = head[:-4].decode().split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[1].startswith("/") or not _url_ok(parts[1]):
        return 400, "not an HTTP request line"
    if parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        return 505, "HTTP/1.0 or 1.1 only"
    if parts[0] not in METHODS:
        return 405 if parts[0].isalpha() and parts[0].isupper() else 400, "no such method here"
    if len(lines) - 1 > HEADERS_MAX:
        return 431, "too many headers"
    for line in lines[1:]:
        name = line.split(":", 1)[0]
        if ":" not in line or not name or " " in name or "\t" in name:
            return 400, "a header line is not 'Name: value'"
        lower = name.lower()
        if lower == "transfer-encoding":
            return 501, "no chunked bodies: send Content-Length"
        if lower == "content-length":
            v = line.split(":", 1)[1].strip()
            if not v.isdigit():
                return 400, "a bad Content-Length"
            if int(v) > BODY_MAX:
                return 413, "a body of at most %d bytes" % BODY_MAX
    return None


def _url_ok(url):
    """%-escapes whole and what they spell UTF-8 (microdot decodes the query string)."""
    raw = bytearray()
    parts = url.split("%")
    raw += parts[0].encode()
    for p in parts[1:]:
        if len(p) < 2 or p[0] not in _HEX or p[1] not in _HEX:
            return False
        raw.append(int(p[:2], 16))
        raw += p[2:].encode()
    try:
        bytes(raw).decode()
    except UnicodeError:
        return False
    return True


_HEX = "0123456789abcdefABCDEF"


async def _answer(writer, code, text):
    body = (text + "\n").encode()
    await writer.awrite(b"HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n" % (code, _REASONS.get(code, "Error").encode(),
                                                       len(body)) + body)


class _Replay:
    """The request for microdot: the bytes read already, then the connection."""

    def __init__(self, data, stream):
        self._data = data
        self._s = stream

    async def readline(self):
        i = self._data.find(b"\n") + 1
        if i == 0:
            i = len(self._data)
        line, self._data = self._data[:i], self._data[i:]
        return line

    async def readexactly(self, n):
        out, self._data = self._data[:n], self._data[n:]
        if len(out) < n:
            out += await self._s.readexactly(n - len(out))
        return out

    async def read(self, n=-1):
        if self._data:
            out, self._data = (self._data, b"") if n < 0 else (self._data[:n], self._data[n:])
            return out
        return await self._s.read(n)


class _Coalesce:
    """microdot's answer, its many small writes gathered into few segments."""
    SIZE = 1024

    def __init__(self, stream):
        self._s = stream
        self._buf = []
        self._n = 0

    def get_extra_info(self, what):
        return self._s.get_extra_info(what)

    async def awrite(self, data):
        if self._n + len(data) > self.SIZE:
            await self._flush()
        if len(data) > self.SIZE:
            await self._s.awrite(data)
        else:
            self._buf.append(data)
            self._n += len(data)

    async def _flush(self):
        if self._buf:
            data = b"".join(self._buf)
            self._buf, self._n = [], 0
            await self._s.awrite(data)

    async def aclose(self):
        await self._flush()
