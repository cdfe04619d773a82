"""`crm-core serve`: several workers on one port, each with its own SO_REUSEPORT socket."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_core import cli
from crm_core.config import get_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.db'}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "crm_core.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
                time.sleep(0.2)
        assert response.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=30)
    assert returncode == 0


def test_serve_refuses_a_taken_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "crm_core.cli", "serve", "--port", str(port)],
            env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.db'}"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./aurora_crm.db", 1),
        ("postgresql://postgres@127.0.0.1:5432/postgres", os.cpu_count() or 1),
        ("mysql://nope", 1),  # a setting the worker will refuse, in one line, itself
    ],
)
def test_serve_runs_one_worker_on_sqlite_and_one_per_cpu_on_postgresql(
    url: str, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        assert cli._default_workers() == expected
    finally:
        get_settings.cache_clear()


class _Server:
    """`crm-core serve` in a child process, its standard error read line by line."""

    def __init__(self, database_url: str, *arguments: str) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crm_core.cli", "serve", "--port", str(self.port), *arguments],
            env={**os.environ, "DATABASE_URL": database_url, "CRM_LOG_LEVEL": "INFO"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: list[str] = []

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def log_lines(self, count: int, logger: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The first `count` JSON lines of `logger`; fails after `timeout` seconds."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {count} lines of {logger} in {timeout}s: {self.seen}")
            self.seen.append(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("logger") == logger:
                found.append(entry)
        return found

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def test_serve_logs_where_each_worker_listens(tmp_path: Path) -> None:
    server = _Server(f"sqlite:///{tmp_path / 'crm.db'}", "--workers", "2")
    try:
        lines = server.log_lines(2, "crm_core.server")
    finally:
        server.stop()
    listening = [line for line in lines if "listening" in line["message"]]
    assert len(listening) == 2, lines
    assert sorted(line["worker"] for line in listening) == [1, 2]
    for line in listening:
        assert line["level"] == "INFO"
        assert (line["host"], line["port"], line["workers"]) == ("127.0.0.1", server.port, 2)
        assert f"http://127.0.0.1:{server.port}" in line["message"]
        assert line["database"].startswith("sqlite")
    assert len({line["pid"] for line in listening}) == 2


def test_serve_warns_when_the_database_does_not_answer_and_still_starts() -> None:
    silent = f"postgresql://aurora:s3cret@127.0.0.1:{_free_port()}/crm"
    server = _Server(silent, "--workers", "1")
    try:
        lines = server.log_lines(2, "crm_core.server")
        ready = httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=10)
    finally:
        server.stop()
    warning = next(line for line in lines if line["level"] == "WARNING")
    assert "does not answer" in warning["message"]
    listening = next(line for line in lines if "listening" in line["message"])
    for line in (warning, listening):
        assert (
            line["database"] == "postgresql+psycopg://aurora:***@127.0.0.1:" + silent.split(":")[-1]
        )
    assert "s3cret" not in "".join(server.seen)
    assert ready.status_code == 503
