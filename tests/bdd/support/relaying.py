"""A throwaway nats-server with JetStream, the relay run in this process or as `crm-core relay`,
and what the stream holds: for the relay's tests (tests/crm_core/test_relay.py) and OS 007's
scenarios (tests/bdd/steps/events.py).

Each server has its own port and store folder; none is the shared server on 4222. Without a
nats-server binary (/usr/sbin/nats-server or `nats-server` on PATH) what needs one is skipped;
with AURORA_REQUIRE_NATS=1 (set by .ci/run) it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from fastapi.testclient import TestClient
from nats.js.api import RawStreamMsg
from sqlalchemy import func, select

from crm_core.database import Database
from crm_core.models import OutboxEvent
from crm_core.services.relay import Relay, RelayOptions

REQUIRE_NATS_ENV = "AURORA_REQUIRE_NATS"
STREAM = "CRM_EVENTS"
SOURCE = "/aurora-crm/test"
CATCH_UP_S = 20.0


def nats_binary() -> str:
    candidates = ["/usr/sbin/nats-server", shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "nats-server is not installed (/usr/sbin/nats-server, or on PATH), so the relay "
    reason += "tests are skipped (Debian: apt-get install nats-server)"
    if os.environ.get(REQUIRE_NATS_ENV, "") not in ("", "0", "false"):
        pytest.fail(f"{reason}, but {REQUIRE_NATS_ENV} demands them", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class NatsServer:
    """A throwaway nats-server with JetStream: its own port and store folder."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.store = folder / "jetstream"
        self.log = folder / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command_line = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*command_line, "-sd", str(self.store)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"nats-server did not start: {self.log.read_text()[-2000:]}", pytrace=False)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def outbox_ids(database: Database) -> list[str]:
    """The ids of the events in commit order."""
    with database.read_sessionmaker() as session:
        query = select(OutboxEvent.id).order_by(OutboxEvent.txid, OutboxEvent.seq)
        return [str(event_id) for event_id in session.scalars(query)]


async def _stream_messages(url: str, stream: str) -> list[RawStreamMsg]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        return [await js.get_msg(stream, seq=seq) for seq in range(1, int(state.last_seq) + 1)]
    finally:
        await nc.close()


def stream_messages(server: NatsServer, stream: str = STREAM) -> list[RawStreamMsg]:
    return asyncio.run(_stream_messages(server.url, stream))


def stream_ids(server: NatsServer, stream: str = STREAM) -> list[str]:
    return [str((m.headers or {})["Nats-Msg-Id"]) for m in stream_messages(server, stream)]


def options(server: NatsServer, source: str = SOURCE, **overrides: Any) -> RelayOptions:
    return RelayOptions(nats_url=server.url, stream=STREAM, source=source, **overrides)


def relay_until_idle(database: Database, server: NatsServer, **overrides: Any) -> int:
    """Run the relay in this process until every committed event is in the stream: the events
    it published. (On PostgreSQL a relay that found nothing may only have met the visible
    horizon, held back by a transaction anywhere on the server: it is run again.)"""
    relay = Relay(database, options(server, **overrides))
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        asyncio.run(asyncio.wait_for(relay.run(until_idle=True), timeout=CATCH_UP_S))
        if caught_up(database, server)() or time.monotonic() > deadline:
            return relay.published
        time.sleep(0.1)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = CATCH_UP_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)


async def _stream_count(url: str, stream: str) -> int:
    # nats-py's first connect retries up to max_reconnect_attempts (60 x 2 s by default)
    nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=1, reconnect_time_wait=0)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


def stream_count(server: NatsServer, stream: str = STREAM) -> int:
    """The messages the stream holds (0 when it or the server is not there)."""
    try:
        return asyncio.run(_stream_count(server.url, stream))
    except Exception:  # the stream may not exist yet, or the server be restarting
        return 0


def outbox_count(database: Database) -> int:
    with database.read_sessionmaker() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxEvent)) or 0)


def caught_up(database: Database, server: NatsServer) -> Callable[[], bool]:
    """Whether the stream holds as many messages as the outbox has events (which ones, and in
    what order, `assert_exactly_once_in_order` checks)."""

    def check() -> bool:
        return stream_count(server) >= outbox_count(database) > 0

    return check


class RelayProcess:
    """`crm-core relay` as a subprocess on the test database and server."""

    def __init__(self, database_url: str, server: NatsServer, log: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CRM_NATS_URL": server.url,
            "CRM_NATS_STREAM": STREAM,
            "CRM_EVENT_SOURCE": SOURCE,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crm_core.cli", "relay"],
                env=self.env,
                stdout=log,
                stderr=log,
            )

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class Writer:
    """Writes batches of messages through the app in a thread until stopped (with `headers`,
    such as an API key, on each request)."""

    def __init__(
        self, client: TestClient, per_request: int = 20, headers: dict[str, str] | None = None
    ) -> None:
        self.client = client
        self.per_request = per_request
        self.headers = headers or {}
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            messages = [
                {
                    "source": "whatsapp",
                    "sender_id": f"5511977{index:06d}",
                    "content": f"carga {number}.{index}",
                    "metadata": {"message_id": f"wamid.load.{uuid.uuid4().hex}"},
                }
                for index in range(self.per_request)
            ]
            response = self.client.post(
                "/ingest/messages", json={"messages": messages}, headers=self.headers
            )
            self.statuses.append(response.status_code)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def assert_exactly_once_in_order(database: Database, server: NatsServer) -> int:
    expected = outbox_ids(database)
    published = stream_ids(server)
    assert len(published) == len(set(published)), "an event was published twice"
    assert published == expected
    return len(expected)
