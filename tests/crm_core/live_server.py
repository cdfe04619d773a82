"""The API served for real: uvicorn in a child process, on a free port and a migrated SQLite file.

For the tests that need a real HTTP server (a socket, uvicorn's own HTTP parser, a browser)
rather than the in-process TestClient. The database is migrated with `alembic upgrade head` and
the key made with `crm-core keys create`, both in child processes, as an operator would.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPOSITORY = Path(__file__).resolve().parents[2]
START_SECONDS = 30


@dataclass(frozen=True)
class LiveServer:
    """A running server: its base URL (`http://127.0.0.1:<port>`) and a read/write API key."""

    url: str
    host: str
    port: int
    key: str

    def get(self, path: str) -> httpx.Response:
        """GET `path` with the key."""
        return httpx.get(
            self.url + path, headers={"Authorization": f"Bearer {self.key}"}, timeout=10
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(env: dict[str, str], *arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *arguments],
        env=env,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextmanager
def live_server(folder: Path, **settings: str) -> Iterator[LiveServer]:
    """Serve `crm_core.main:app` until the block ends; `settings` are extra environment
    variables (e.g. CRM_MAX_BODY_BYTES="65536")."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder / 'crm.db'}", **settings}
    _run(env, "alembic", "upgrade", "head")
    created = _run(env, "crm_core.cli", "keys", "create", "--scope", "readwrite", "--name", "live")
    match = re.search(r"^key:\s+(\S+)$", created, re.MULTILINE)
    assert match, created
    port = free_port()
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "crm_core.main:app", "--port", str(port)],
        env=env,
        cwd=REPOSITORY,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, (folder / "server.log").read_text()
                assert time.monotonic() < deadline, (folder / "server.log").read_text()
                time.sleep(0.2)
        yield LiveServer(f"http://127.0.0.1:{port}", "127.0.0.1", port, match.group(1))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
