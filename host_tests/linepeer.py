"""A peer program in a namespace driven a line at a time (tools/peers/web_probe.py,
browser.py): one JSON command in, one JSON result out, each within a timeout."""
import json
import queue
import subprocess
import threading


class LinePeer:
    def __init__(self, topo, ns, program, *args, ready_s=60):
        topo.workdir.mkdir(parents=True, exist_ok=True)
        self.log = topo.workdir / (program + ".log")
        with open(self.log, "ab") as log:
            self.proc = topo.peer_bg(ns, program, *args, stdin=subprocess.PIPE, stderr=log)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next(ready_s)
        if first != "ready":
            self.close()
            raise RuntimeError("%s did not start: %r %s" % (program, first, self._stderr()))

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _next(self, timeout):
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def _stderr(self):
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def __call__(self, op, wait_s=60, **args):
        """The result of one command (a dict); RuntimeError when none comes in wait_s."""
        self.proc.stdin.write(json.dumps(dict(args, op=op)) + "\n")
        self.proc.stdin.flush()
        line = self._next(wait_s)
        if line is None:
            raise RuntimeError("no answer to %s within %d s %s" % (op, wait_s, self._stderr()))
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
