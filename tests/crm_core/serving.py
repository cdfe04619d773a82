"""`crm-core serve` for real, on loopback, for the tests that load it or hurt it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], url: str) -> str:
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def prepare(url: str, scope: str = "ingest") -> str:
    """Migrate the database (`alembic upgrade head`) and create a key of `scope`; the key."""
    run([str(BIN / "alembic"), "upgrade", "head"], url)
    created = run([str(BIN / "crm-core"), "keys", "create", "--scope", scope], url)
    match = re.search(r"^key:\s+(\S+)$", created, re.M)
    assert match, created
    return match[1]


class Server:
    """`crm-core serve --workers 2` in its own process group, so it can be killed whole."""

    def __init__(self, url: str, port: int) -> None:
        self.url, self.port = url, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.url, "CRM_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(
            [str(BIN / "crm-core"), "serve", "--port", str(self.port), "--workers", "2"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    time.sleep(1.0)  # both workers import the app
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("crm-core serve did not start within 60 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
