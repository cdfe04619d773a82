"""The runner of a gate's commands: output captured, and nothing left running after a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gates.certify.checks import Status, run_commands
from gates.certify.process import run_command


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: it runs nothing (its parent, the shell, was killed)
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_output_is_captured_merged_and_the_exit_code_kept(tmp_path: Path) -> None:
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    finished = run_command([sys.executable, "-c", script], tmp_path, None, 30, capture=True)
    assert finished.code == 3
    assert not finished.timed_out
    assert "out" in finished.output
    assert "err" in finished.output


def test_a_timeout_kills_what_the_command_started_too(tmp_path: Path) -> None:
    """A gate's tests may start servers; a gate that times out must not leave them running
    (the child alone used to be killed, and a grandchild outlived the certify)."""
    pidfile = tmp_path / "server.pid"
    shell = f"sleep 300 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    finished = run_command(["sh", "-c", shell], tmp_path, None, 1.5, capture=True)
    assert finished.timed_out
    assert time.monotonic() - started < 30
    server = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server)


def test_a_gate_that_times_out_fails_and_keeps_its_output(tmp_path: Path) -> None:
    script = "import time; print('started', flush=True); time.sleep(300)"
    result = run_commands(
        "tests", (("python", "-c", script),), root=tmp_path, timeout_s=2, env=dict(os.environ)
    )
    assert result.status is Status.FAIL
    assert "tempo esgotado" in result.detail
    assert "started" in result.log


PARENT = """\
import sys
from pathlib import Path
from gates.certify.process import run_command, terminate_on_sigterm

shell = "sleep 300 & echo $! > " + sys.argv[1] + "; wait"
with terminate_on_sigterm():
    run_command(["sh", "-c", shell], Path("."), None, 300)
"""


def _parent_with_a_server(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A process running a command (in its own session) that started a server; the server's
    pid, once written."""
    pidfile = tmp_path / "server.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pidfile)], cwd=tmp_path)
    deadline = time.monotonic() + 30
    while not (pidfile.is_file() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started its server"
        time.sleep(0.05)
    return parent, int(pidfile.read_text())


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_a_sigterm_of_gates_kills_what_its_command_started(tmp_path: Path) -> None:
    """A command runs in its own session, so a signal sent to gates' process group no longer
    reaches it: gates must pass it on (CI stopping a job sends SIGTERM)."""
    parent, server = _parent_with_a_server(tmp_path)
    try:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 143
        assert _gone(server)
    finally:
        if _alive(server):
            os.kill(server, signal.SIGKILL)
