"""`crm-core serve`: several workers on one port, each with its own SO_REUSEPORT socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
