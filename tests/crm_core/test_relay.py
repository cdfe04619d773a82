"""The relay (crm_core.services.relay) against real databases and a real, throwaway nats-server.

Each test starts its own nats-server (JetStream on, its own store folder in tmp_path, a free
port) and stops it at the end; none uses the shared server on 4222. Without a nats-server
binary (/usr/sbin/nats-server or `nats-server` on PATH) the tests skip; with
AURORA_REQUIRE_NATS=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from alembic import command
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from fastapi.testclient import TestClient
from nats.js.api import RawStreamMsg, StorageType
from sqlalchemy import delete, func, select

from crm_core.config import Settings, get_settings
from crm_core.database import Database, create_db_engine
from crm_core.main import create_app
from crm_core.models import OutboxEvent, RelayPosition
from crm_core.services import outbox
from crm_core.services.relay import Relay, RelayOptions, subject_of
from tests.bdd.support.databases import alembic_config

REQUIRE_NATS_ENV = "AURORA_REQUIRE_NATS"
STREAM = "CRM_EVENTS"
SOURCE = "/aurora-crm/test"
CATCH_UP_S = 20.0


def _nats_binary() -> str:
    candidates = ["/usr/sbin/nats-server", shutil.which("nats-server")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "nats-server is not installed (/usr/sbin/nats-server, or on PATH), so the relay "
    reason += "tests are skipped (Debian: apt-get install nats-server)"
    if os.environ.get(REQUIRE_NATS_ENV, "") not in ("", "0", "false"):
        pytest.fail(f"{reason}, but {REQUIRE_NATS_ENV} demands them", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class NatsServer:
    """A throwaway nats-server with JetStream: its own port and store folder."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.port = _free_port()
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


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(_nats_binary(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def migrated(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test database, migrated with `alembic upgrade head`."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # alembic's prepend_sys_path grows it
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        command.upgrade(alembic_config(), "head")
    finally:
        get_settings.cache_clear()
    return database_url


@pytest.fixture
def database(migrated: str) -> Iterator[Database]:
    db = Database(create_db_engine(migrated))
    yield db
    db.dispose()


@pytest.fixture
def client(migrated: str) -> Iterator[TestClient]:
    """The real app on the migrated database, without authentication."""
    app = create_app(Settings(database_url=migrated, auth_enabled=False))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    app.state.database.dispose()


def ingest(client: TestClient, count: int, sender: str | None = None) -> None:
    """Store `count` messages in one batch request (each writes its events)."""
    tag = uuid.uuid4().hex[:12]
    messages = [
        {
            "source": "whatsapp",
            "sender_id": sender or f"55119{index % 7:02d}{count:06d}"[:13],
            "content": f"mensagem {index}",
            "metadata": {"message_id": f"wamid.{tag}.{index}"},
        }
        for index in range(count)
    ]
    response = client.post("/ingest/messages", json={"messages": messages})
    assert response.status_code in (200, 202, 207), response.text
    assert response.json()["accepted"] == count


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


def options(server: NatsServer, **overrides: Any) -> RelayOptions:
    return RelayOptions(nats_url=server.url, stream=STREAM, source=SOURCE, **overrides)


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


@pytest.fixture
def relay_process(migrated: str, nats_server: NatsServer, tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(migrated, nats_server, tmp_path / "relay.log")
    yield process
    process.stop()


class Writer:
    """Writes batches of messages through the app in a thread until stopped."""

    def __init__(self, client: TestClient, per_request: int = 20) -> None:
        self.client = client
        self.per_request = per_request
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
            response = self.client.post("/ingest/messages", json={"messages": messages})
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


# The tests.


def test_events_are_published_once_in_commit_order_as_cloudevents(
    client: TestClient, database: Database, nats_server: NatsServer
) -> None:
    ingest(client, 5)
    ingest(client, 3)
    assert relay_until_idle(database, nats_server) == len(outbox_ids(database)) > 8
    ingest(client, 4)
    relay_until_idle(database, nats_server)
    assert_exactly_once_in_order(database, nats_server)

    with database.read_sessionmaker() as session:
        rows = {
            str(row.id): row
            for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))
        }
    for message in stream_messages(nats_server):
        headers = message.headers or {}
        assert headers["Content-Type"] == "application/cloudevents+json"
        event = JSONFormat().read(CloudEvent, message.data or b"")
        row = rows[event.get_id()]
        assert headers["Nats-Msg-Id"] == event.get_id()
        assert message.subject == subject_of(row.type)
        assert message.subject == "crm.events." + row.type.removeprefix("br.aurora.crm.")
        assert event.get_specversion() == "1.0"
        assert event.get_source() == SOURCE
        assert event.get_type() == row.type
        assert event.get_subject() == row.subject
        assert event.get_time() == row.time
        assert event.get_datacontenttype() == "application/json"
        assert event.get_data() == row.data
        assert json.loads(message.data or b"") == outbox.cloud_event(row, SOURCE)  # as GET /events
    with database.read_sessionmaker() as session:
        position = session.get(RelayPosition, STREAM)
        assert position is not None
        assert str(position.event_id) == outbox_ids(database)[-1]


def test_a_rerun_after_the_position_was_lost_publishes_nothing_twice(
    client: TestClient, database: Database, nats_server: NatsServer
) -> None:
    # A stream made beforehand with a duplicate window of 0.5 s (the relay keeps it as it is):
    # past it JetStream no longer drops duplicates, so only the reconciliation can.
    async def make_stream() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(
            name=STREAM,
            subjects=["crm.events.>"],
            storage=StorageType.FILE,
            duplicate_window=0.5,
        )
        await nc.close()

    asyncio.run(make_stream())
    ingest(client, 10)
    relay_until_idle(database, nats_server)
    count = assert_exactly_once_in_order(database, nats_server)
    time.sleep(0.7)

    with database.sessionmaker() as session:  # the position lost: as if never committed
        session.execute(delete(RelayPosition))
        session.commit()
    assert relay_until_idle(database, nats_server) == 0
    assert len(stream_ids(nats_server)) == count

    async def duplicate_window() -> float | None:
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info(STREAM)
        await nc.close()
        return info.config.duplicate_window

    # The relay left the stream as it was.
    assert asyncio.run(duplicate_window()) == pytest.approx(0.5)

    with database.sessionmaker() as session:  # rolled back to the middle of the stream
        first = session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq).limit(1)).one()
        session.merge(
            RelayPosition(stream=STREAM, txid=first.txid, seq=first.seq, event_id=first.id)
        )
        session.commit()
    ingest(client, 2)
    relay_until_idle(database, nats_server)
    assert_exactly_once_in_order(database, nats_server)


def test_erased_data_is_never_published_after_the_erasure(
    client: TestClient, database: Database, nats_server: NatsServer
) -> None:
    ingest(client, 2, sender="5511988887777")
    response = client.get("/contacts")
    contact_id = response.json()["data"][0]["id"]
    assert client.delete(f"/contacts/{contact_id}").status_code == 200
    relay_until_idle(database, nats_server)
    assert_exactly_once_in_order(database, nats_server)
    erased = outbox.erased_data(uuid.UUID(contact_id))
    kinds: list[str] = []
    for message in stream_messages(nats_server):
        event = JSONFormat().read(CloudEvent, message.data or b"")
        kinds.append(event.get_type())
        if event.get_type() != outbox.CONTACT_ERASED:
            assert event.get_data() == erased
        assert b"5511988887777" not in (message.data or b"")
        assert b"mensagem" not in (message.data or b"")
    assert kinds.count(outbox.MESSAGE_RECEIVED) == 2
    assert kinds[-1] == outbox.CONTACT_ERASED


def test_the_relay_killed_mid_stream_and_restarted_publishes_each_event_once(
    client: TestClient,
    database: Database,
    nats_server: NatsServer,
    relay_process: RelayProcess,
) -> None:
    relay_process.start()
    with Writer(client) as writer:
        wait_until(lambda: stream_count(nats_server) > 50, "the relay publishing")
        time.sleep(0.5)
        assert relay_process.process is not None
        relay_process.process.kill()  # SIGKILL: no chance to finish anything
        relay_process.process.wait(5)
        time.sleep(0.5)
        relay_process.start()
        time.sleep(1.0)
    assert writer.statuses
    assert set(writer.statuses) <= {200, 202, 207}
    wait_until(caught_up(database, nats_server), "the relay to catch up")
    assert relay_process.signal(signal.SIGTERM) == 0
    assert assert_exactly_once_in_order(database, nats_server) > 100


def test_nats_restarted_during_a_load_run_loses_and_repeats_nothing(
    client: TestClient,
    database: Database,
    nats_server: NatsServer,
    relay_process: RelayProcess,
) -> None:
    relay_process.start()
    with Writer(client) as writer:
        wait_until(lambda: stream_count(nats_server) > 20, "the relay publishing")
        nats_server.stop()  # SIGTERM while the relay publishes and events are written
        time.sleep(1.0)
        nats_server.start()  # same port, same store folder
        time.sleep(1.5)
    assert set(writer.statuses) <= {200, 202, 207}
    wait_until(caught_up(database, nats_server), "the relay to catch up")
    assert assert_exactly_once_in_order(database, nats_server) > 40
    assert relay_process.signal(signal.SIGTERM) == 0
    log = relay_process.log.read_text()
    assert "disconnected from NATS" in log or "publishing failed" in log


def test_ingest_answers_while_nats_is_down_and_the_relay_catches_up(
    client: TestClient,
    database: Database,
    nats_server: NatsServer,
    relay_process: RelayProcess,
) -> None:
    relay_process.start()
    ingest(client, 3)
    wait_until(caught_up(database, nats_server), "the first events")
    nats_server.stop()
    for index in range(10):
        response = client.post(
            "/ingest/message",
            json={
                "source": "whatsapp",
                "sender_id": "5511966665555",
                "content": f"durante a queda {index}",
                "metadata": {"message_id": f"wamid.down.{index}"},
            },
        )
        assert response.status_code == 202, response.text
    assert stream_count(nats_server) < outbox_count(database)  # not published: NATS is down
    nats_server.start()
    wait_until(caught_up(database, nats_server), "the relay to catch up")
    assert_exactly_once_in_order(database, nats_server)
    assert relay_process.signal(signal.SIGTERM) == 0


def test_relay_without_nats_url_is_a_one_line_usage_error(migrated: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CRM_NATS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "crm_core.cli", "relay"],
        env={**env, "DATABASE_URL": migrated},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "CRM_NATS_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_erasure_waits_for_the_batch_being_published(
    client: TestClient, database: Database, nats_server: NatsServer
) -> None:
    ingest(client, 2, sender="5511955554444")
    contact_id = client.get("/contacts").json()["data"][0]["id"]
    relay = Relay(database, options(nats_server))
    statuses: list[int] = []
    erased = threading.Event()

    def erase() -> None:
        statuses.append(client.delete(f"/contacts/{contact_id}").status_code)
        erased.set()

    with database.sessionmaker() as session:
        _, rows = relay.read_batch(session)  # the batch's transaction, as the relay opens it
        assert {row.contact_id for row in rows} == {uuid.UUID(contact_id)}
        eraser = threading.Thread(target=erase)
        eraser.start()
        assert not erased.wait(1.0), "the erasure did not wait for the batch's transaction"
        session.commit()
    assert erased.wait(CATCH_UP_S)
    eraser.join()
    assert statuses == [200]


def test_a_relay_started_before_nats_waits_for_it(
    client: TestClient, database: Database, migrated: str, tmp_path: Path
) -> None:
    server = NatsServer(_nats_binary(), tmp_path)
    relay = RelayProcess(migrated, server, tmp_path / "relay.log")
    try:
        ingest(client, 3)
        relay.start()
        wait_until(lambda: "NATS unreachable, retrying" in relay.log.read_text(), "the log line")
        time.sleep(1.0)
        server.start()
        wait_until(caught_up(database, server), "the relay to publish")
        assert_exactly_once_in_order(database, server)
        assert relay.signal(signal.SIGTERM) == 0
        log = relay.log.read_text()
        assert log.count("NATS unreachable, retrying") == 1
        assert "Traceback" not in log
    finally:
        relay.stop()
        server.stop()


def test_a_batch_read_during_an_erasure_publishes_the_redacted_data(
    client: TestClient, database: Database, nats_server: NatsServer
) -> None:
    ingest(client, 3, sender="5511944443333")
    contact_id = uuid.UUID(client.get("/contacts").json()["data"][0]["id"])
    published: list[int] = []
    with database.sessionmaker() as eraser:  # an erasure under way: its UPDATE holds the rows
        assert outbox.redact(eraser.connection(), contact_id) == 4
        relay = threading.Thread(
            target=lambda: published.append(relay_until_idle(database, nats_server))
        )
        relay.start()
        time.sleep(1.0)
        assert stream_count(nats_server) == 0, "an event was published before the erasure ended"
        eraser.commit()
    relay.join(CATCH_UP_S + 5)
    assert published == [4]
    for message in stream_messages(nats_server):
        assert json.loads(message.data or b"")["data"] == outbox.erased_data(contact_id)
