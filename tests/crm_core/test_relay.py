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
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from alembic import command
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from fastapi.testclient import TestClient
from nats.js.api import StorageType
from sqlalchemy import delete, select

from crm_core.config import Settings, get_settings
from crm_core.database import Database, create_db_engine
from crm_core.main import create_app
from crm_core.models import OutboxEvent, RelayPosition
from crm_core.services import outbox
from crm_core.services.relay import Relay, subject_of
from tests.bdd.support.databases import alembic_config
from tests.bdd.support.relaying import (
    CATCH_UP_S,
    SOURCE,
    STREAM,
    NatsServer,
    RelayProcess,
    Writer,
    assert_exactly_once_in_order,
    caught_up,
    nats_binary,
    options,
    outbox_count,
    outbox_ids,
    relay_until_idle,
    stream_count,
    stream_ids,
    stream_messages,
    wait_until,
)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(nats_binary(), tmp_path)
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


@pytest.fixture
def relay_process(migrated: str, nats_server: NatsServer, tmp_path: Path) -> Iterator[RelayProcess]:
    process = RelayProcess(migrated, nats_server, tmp_path / "relay.log")
    yield process
    process.stop()


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
    server = NatsServer(nats_binary(), tmp_path)
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
