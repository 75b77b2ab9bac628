"""Running the ESP32 boards' cases (host_tests/upy/esp32_cases.py and
esp32_recovery_cases.py) on the MicroPython unix port against the fakes of network,
machine and natlink (host_tests/upy/fakes/), or on the unix port with the real natlink
binding built in: one case per process, in a fresh working directory (the board's flash),
its RESULT line read back. Shared by test_esp32_boards.py and test_esp32_recovery.py."""
import json
import os
import subprocess

import pytest

from runtimes import FIRMWARE, ROOT, UPY_TESTS, unix_binary

BOARDS = ("WT32_ETH01", "OLIMEX_ESP32_POE", "ESP32_GENERIC")
ETHERNET = ("WT32_ETH01", "OLIMEX_ESP32_POE")
FAKES = UPY_TESTS / "fakes"
COMMON = ROOT / "boards" / "esp32_common"
NATLINK = ROOT / "boards" / "natlink"
LEASE = ["203.0.113.7", "255.255.255.0", "203.0.113.1"]
LAN_HOST = "192.168.4.2"
REMOTE = "203.0.113.5"


class CaseError(AssertionError):
    pass


def run_case(board, case, workdir, exe=None, timeout=120, module="esp32_cases"):
    """Run <module>.<case>() for `board` in workdir (the board's flash); its RESULT, and
    under "_console" the lines the firmware printed."""
    exe = exe or unix_binary()
    if exe is None:
        pytest.skip("the MicroPython unix port is not installed (make setup)")
    path = [FAKES, ROOT / "boards" / board, COMMON, NATLINK, FIRMWARE, UPY_TESTS]
    env = dict(os.environ, MICROPYPATH=":".join(str(p) for p in path))
    proc = subprocess.run([exe, "-c", "import %s\n%s.%s()" % (module, module, case)],
                          cwd=str(workdir), env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or "Traceback" in out or len(lines) != 1:
        raise CaseError("%s on %s exited %d:\n%s" % (case, board, proc.returncode, out))
    res = json.loads(lines[0][len("RESULT "):])
    res["_console"] = [ln for ln in proc.stdout.splitlines() if ln.startswith("natrouter:")]
    return res


def calls(res, who=None, method=None, key="network"):
    """The fake network's recorded calls in res[key], of one interface and method."""
    return [c for c in res[key] if (who is None or c[0] == who)
            and (method is None or c[1] == method)]
