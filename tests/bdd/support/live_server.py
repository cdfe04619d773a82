"""The API served for real: uvicorn in a child process, on a free port and a migrated SQLite file,
and the clients that talk to it as simple ones do (the whole request written before reading).

For the tests that need a real HTTP server (a socket, uvicorn's own HTTP parser, a browser)
rather than the in-process TestClient. The database is migrated with `alembic upgrade head` and
the key made with `crm-core keys create`, both in child processes, as an operator would.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT

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
        cwd=REPO_ROOT,
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
        cwd=REPO_ROOT,
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


def message(size: int) -> bytes:
    """A valid message body of exactly `size` bytes (JSON padded with trailing spaces), from a
    sender no other message has."""
    sender = f"55119{uuid.uuid4().int % 10**8:08d}"
    document = json.dumps({"source": "whatsapp", "sender_id": sender, "content": "hello"})
    raw = document.encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def raw_exchange(
    server: LiveServer, head: list[str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send the whole request (`head` lines, then `body`) with one blocking sendall, then read
    the answer: its status, headers (lower-case names) and body (de-chunked)."""
    lines = [*head, f"Host: {server.host}:{server.port}", f"Authorization: Bearer {server.key}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock, method="POST")
        answer.begin()
        headers = {name.lower(): value for name, value in answer.getheaders()}
        return answer.status, headers, answer.read()


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [
        f"{len(body[at : at + size]):x}\r\n".encode() + body[at : at + size] + b"\r\n"
        for at in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"
