"""tools/deploy.py as a user runs it, onto the virtual board through its pty exactly as
onto a board on USB serial: an empty board (a freshly flashed one: the REPL and an empty
filesystem), the tool as a subprocess, then real traffic through the router it started.
Needs root and `ip netns` (skipped otherwise). The tests run in order on one board."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manage import config
import deploy
from hostenv import BOARDS
from netns import background, on_board, skip_reason, unique_prefix
from topology import BOARD, FORWARD_TCP, FORWARD_UDP, LAN1, SRV, WAN, Topology

DEPLOY = Path(deploy.__file__)

# A configuration the defaults never give: both port forwards of the topology.
FORWARDING = dict(config.defaults(), table={"tcp": 100, "udp": 50, "icmp": 10}, forwards=[
    {"proto": "tcp", "port": FORWARD_TCP, "to": LAN1, "to_port": 80},
    {"proto": "udp", "port": FORWARD_UDP, "to": LAN1, "to_port": 5353}])


@pytest.fixture(scope="module")
def board():
    reason = skip_reason()
    if reason:
        pytest.skip("virtual board: " + reason)
    topo = Topology(unique_prefix("d"), log=lambda *a: None)
    try:
        topo.up(empty=True)
        yield topo
    except BaseException:
        if topo.console is not None:
            sys.stderr.write("--- board console ---\n%s\n" % topo.console.text())
        raise
    finally:
        topo.down()


def run_deploy(topo, *args, ok=True):
    """tools/deploy.py onto the board's pty; asserts its exit status (0 when ok)."""
    with topo.pty_released() as pty:
        proc = subprocess.run([sys.executable, str(DEPLOY), "--port", pty, "--board", "vboard",
                               *args], capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, "exit %d\n%s%s" % (proc.returncode, proc.stdout,
                                                           proc.stderr)
    return proc


def routes(topo):
    """The router forwards ICMP, UDP and TCP from lan1 to the server, masqueraded."""
    assert topo.ping(topo.lan1, SRV, count=2), "no ping through the router"
    with background(topo.serve(topo.srv, "udp", 7, "srv")), \
            background(topo.serve(topo.srv, "tcp", 7007, "srv")):
        udp = topo.talk(topo.lan1, "udp", SRV, 7, ["hi"])
        tcp = topo.talk(topo.lan1, "tcp", SRV, 7007, ["hello"])
    assert udp and udp[0].startswith("srv hi from %s:" % WAN), udp
    assert tcp and tcp[0].startswith("srv hello from %s:" % WAN), tcp


def forwards(topo):
    """FORWARDING's port forwards reach lan1 from the server."""
    with background(topo.serve(topo.lan1, "tcp", 80, "lan1")), \
            background(topo.serve(topo.lan1, "udp", 5353, "lan1")):
        tcp = topo.talk(topo.srv, "tcp", WAN, FORWARD_TCP, ["in"])
        udp = topo.talk(topo.srv, "udp", WAN, FORWARD_UDP, ["in"])
    return tcp + udp


def flash_files(topo):
    return sorted(p.relative_to(topo.flash).as_posix() for p in topo.flash.rglob("*")
                  if p.is_file())


def test_help_documents_the_tool():
    out = subprocess.run([sys.executable, str(DEPLOY), "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    for option in ("--port", "--board", "--mpy", "--config", "--verify-only", "/dev/ttyUSB0"):
        assert option in out, option


def test_fresh_board_gets_the_firmware_and_the_default_config_and_routes(board):
    assert flash_files(board) == [], "the board was not empty"
    proc = run_deploy(board)
    assert "natrouter.json: none on the device: written" in proc.stdout, proc.stdout
    assert json.loads((board.flash / "natrouter.json").read_text()) == config.defaults()
    for remote, src in deploy.sources(BOARD).items():
        assert (board.flash / remote).read_bytes() == src.read_bytes(), remote
    assert on_board(board, "from manage.runner import runner; print(runner.router.is_running())") == "True"
    routes(board)


def test_redeploy_keeps_the_boards_config_and_restarts_with_it(board):
    on_board(board, "from manage import config\nimport json\nconfig.save('natrouter.json', json.loads(%r))"
             % json.dumps(FORWARDING))
    mine = (board.flash / "natrouter.json").read_bytes()
    assert json.loads(mine)["forwards"] == FORWARDING["forwards"]
    assert forwards(board) == ["TIMEOUT", "TIMEOUT"], "the running router had forwards already"
    given = board.workdir / "given.json"
    given.write_text(json.dumps(config.defaults()))
    proc = run_deploy(board, "--config", str(given))
    assert "natrouter.json: the device has one: kept" in proc.stdout, proc.stdout
    assert "files: 0 copied" in proc.stdout, proc.stdout  # nothing changed since the last deploy
    assert (board.flash / "natrouter.json").read_bytes() == mine
    # the restarted firmware loaded the board's file: its forwards work
    replies = forwards(board)
    assert replies[0].startswith("lan1 in from %s:" % SRV), replies
    assert replies[1].startswith("lan1 in from %s:" % SRV), replies
    routes(board)


def test_a_bad_config_is_refused_with_its_problems(board):
    on_board(board, "import os\nos.remove('natrouter.json')")
    bad = board.workdir / "bad.json"
    bad.write_text(json.dumps(dict(config.defaults(), mtu=5, bogus=1)))
    proc = run_deploy(board, "--config", str(bad), ok=False)
    assert "refused" in proc.stderr and "mtu: 5" in proc.stderr and "bogus" in proc.stderr, \
        proc.stderr
    assert not (board.flash / "natrouter.json").exists()
    bad.write_text("{\"mtu\": 1500,")
    proc = run_deploy(board, "--config", str(bad), ok=False)
    assert "not valid JSON" in proc.stderr, proc.stderr
    assert not (board.flash / "natrouter.json").exists()


def test_a_given_config_is_written_when_the_board_has_none(board):
    assert not (board.flash / "natrouter.json").exists()
    given = board.workdir / "given.json"
    given.write_text(json.dumps(FORWARDING, indent=2))
    proc = run_deploy(board, "--config", str(given))
    assert "natrouter.json: none on the device: written" in proc.stdout, proc.stdout
    assert (board.flash / "natrouter.json").read_bytes() == given.read_bytes()
    assert forwards(board)[0].startswith("lan1 in from %s:" % SRV)


def test_verification_names_a_corrupted_and_a_missing_file(board):
    run_deploy(board, "--verify-only")
    on_board(board, "f = open('forward/router.py', 'r+b')\nf.seek(100)\nc = f.read(1)[0]\nf.seek(100)\n"
                    "f.write(bytes([c ^ 1]))\nf.close()\nimport os\nos.remove('nat/flows.py')")
    proc = run_deploy(board, "--verify-only", ok=False)
    problems = [line.strip() for line in proc.stderr.splitlines()[1:]]
    problems.sort()
    assert len(problems) == 2 and problems[0].startswith("forward/router.py: differs"), proc.stderr
    assert problems[1] == "nat/flows.py: missing on the device", proc.stderr
    proc = run_deploy(board)  # a deploy repairs exactly those two
    assert "2 copied" in proc.stdout, proc.stdout
    run_deploy(board, "--verify-only")


def test_mpy_deploy_replaces_the_sources_and_routes(board):
    proc = run_deploy(board, "--mpy")
    assert "native code: x64" in proc.stdout, proc.stdout
    files = flash_files(board)
    sources = [f for f in files if f.endswith(".py")]
    assert sources == ["main.py"], sources  # booted by name; everything else compiled
    assert "nat/_viper.mpy" in files and "forward/router.mpy" in files, files
    assert on_board(board, "import nat.core\nfrom forward import router\n"
                           "from manage.runner import runner\nprint(router.__file__, "
                           "nat.core.NAME, runner.router.is_running())") == \
        "forward/router.mpy viper True"
    routes(board)
    run_deploy(board, "--mpy", "--verify-only")
    run_deploy(board)  # back to source: the .mpy files go
    assert not [f for f in flash_files(board) if f.endswith(".mpy")]
    assert on_board(board, "from forward import router\nprint(router.__file__)") == \
        "forward/router.py"
    routes(board)


def test_a_port_without_a_device_fails_with_the_reason(tmp_path):
    if shutil.which("socat") is None:
        pytest.skip("`socat` is not installed (make setup)")
    proc = subprocess.run([sys.executable, str(DEPLOY), "--port", str(tmp_path / "ttyUSB9"),
                           "--board", "vboard"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot open" in proc.stderr, proc.stderr
    # a pty with nothing answering on it, as a board whose REPL is stuck
    pty = tmp_path / "silent"
    silent = subprocess.Popen(["socat", "PTY,link=%s,rawer" % pty, "EXEC:sleep 60,pty,rawer"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with background(silent):
        for _ in range(50):
            if pty.exists():
                break
            time.sleep(0.1)
        proc = subprocess.run([sys.executable, str(DEPLOY), "--port", str(pty), "--board",
                               "vboard"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "does not answer" in proc.stderr, proc.stderr


def test_a_board_with_the_firmware_frozen_in_gets_main_py_alone():
    # An ESP32 image carries the firmware frozen in: a copy on its filesystem would shadow
    # it (and cost heap); and with no --config, the board boots with its own defaults.
    import deploy
    for name in ("WT32_ETH01", "OLIMEX_ESP32_POE", "ESP32_GENERIC"):
        board = deploy.board_dir(name)
        assert deploy.frozen(board) and list(deploy.sources(board)) == ["main.py"]
    vboard = deploy.board_dir("vboard")
    assert not deploy.frozen(vboard) and "nat/table.py" in deploy.sources(vboard)


def test_lwip_host_board_takes_the_shared_natlink_rules():
    # its lwiprules.py imports boards/natlink/natlinkrules.py (frozen in, on an ESP32)
    files = deploy.sources(BOARDS / "lwip_host")
    assert files["natlinkrules.py"] == BOARDS / "natlink" / "natlinkrules.py"
    assert "natlinkrules.py" not in deploy.sources(BOARDS / "vboard")
