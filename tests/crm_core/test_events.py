"""The outbox and the event feed (OS 007) beyond the scenarios: every write path's events on
both databases (PostgreSQL writes them in SQL, SQLite in Python: the two must agree), the
outbox switch, erasure of WhatsApp events, retention, the migration's refusal to lose keys, and
the README's list of types."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from crm_core.database import Database, create_db_engine
from crm_core.models import OutboxEvent, RelayPosition
from crm_core.schemas.ingest import IngestMessage
from crm_core.services import outbox
from crm_core.services.api_keys import create_key
from crm_core.services.group_commit import GroupCommitter
from tests.bdd.support.databases import alembic_config
from tests.conftest import REPO_ROOT
from tests.crm_core.conftest import AppFactory, authorized_client


def message(sender: str, wamid: str | None, content: str = "oi") -> dict[str, Any]:
    body: dict[str, Any] = {"source": "whatsapp", "sender_id": sender, "content": content}
    body["metadata"] = {"message_id": wamid} if wamid else {}
    return body


def feed(client: TestClient, **query: Any) -> list[dict[str, Any]]:
    """The whole feed, once it holds every event stored (on PostgreSQL, a writer of another
    database on the same server may hold the feed's horizon back for a moment)."""
    app: FastAPI = client.app  # type: ignore[assignment]
    with app.state.database.engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(OutboxEvent)).scalar_one()
    deadline = time.monotonic() + 30
    while True:
        events = _read(client, **query)
        if len(events) >= stored or query or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def _read(client: TestClient, **query: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = None
    while True:
        params = {"limit": 1000, **query, **({"after": after} if after else {})}
        page = client.get("/events", params=params)
        assert page.status_code == 200, page.text
        events += page.json()["data"]
        after = page.json()["next_cursor"]
        if after is None:
            return events


def test_a_batch_writes_one_event_per_stored_message_in_its_order(
    any_client: TestClient,
) -> None:
    """New and known senders, a repeat inside the batch, a message without a channel id, and
    one already stored: on PostgreSQL the events come from the statements' SQL, on SQLite from
    Python; both give the message exactly as GET /messages/{id} does."""
    assert (
        any_client.post("/ingest/message", json=message("5521987650001", "w.0")).status_code == 202
    )
    batch = [
        message("5521987650001", "w.1", "a"),
        message("5521987650002", "w.2", "b"),
        message("5521987650001", "w.1", "a"),  # the same message again, in the batch
        message("5521987650003", None, "c"),
        message("5521987650001", "w.0"),  # stored before
    ]
    answer = any_client.post("/ingest/messages", json={"messages": batch})
    assert answer.status_code in (200, 207), answer.text
    events = feed(any_client)
    kinds = [event["type"].removeprefix(outbox.PREFIX) for event in events]
    assert sorted(kinds) == ["contact.created"] * 3 + ["message.received"] * 4, kinds
    created_at = {
        e["subject"]: n for n, e in enumerate(events) if e["type"] == outbox.CONTACT_CREATED
    }
    for place, event in enumerate(events):  # (PostgreSQL stores a known sender's message first)
        if event["type"] == outbox.MESSAGE_RECEIVED:
            assert created_at[event["data"]["contact_id"]] < place, kinds
    received = [event for event in events if event["type"] == outbox.MESSAGE_RECEIVED]
    assert [event["data"]["content"] for event in received] == ["oi", "a", "b", "c"]
    for event in received:
        shown = any_client.get(f"/messages/{event['subject']}").json()
        assert event["data"] == {k: v for k, v in shown.items() if k not in ("statuses", "events")}
    created = [event for event in events if event["type"] == outbox.CONTACT_CREATED]
    for event in created:
        shown = any_client.get(f"/contacts/{event['subject']}").json()
        assert event["data"]["created_at"] == shown["created_at"]
        assert event["data"]["sender_id"] == shown["sender_id"]


def test_concurrent_single_messages_each_get_one_event(
    database_url: str, make_app: AppFactory
) -> None:
    """The group commit's path (one statement for known senders, the full path for new ones)."""
    app = make_app(database_url)
    with authorized_client(app) as client:
        assert (
            client.post("/ingest/message", json=message("5521987650001", "w.0")).status_code == 202
        )
        committer = GroupCommitter(app.state.database)
        sent = [
            IngestMessage.model_validate(message(f"55219876500{n % 4:02d}", f"g.{n}"))
            for n in range(20)
        ]

        async def together() -> list[Any]:
            try:
                return list(await asyncio.gather(*(committer.submit(m) for m in sent)))
            finally:
                await committer.aclose()

        results = asyncio.run(together())
        assert {result.outcome for result in results} == {"accepted"}
        events = feed(client)
    received = [e["subject"] for e in events if e["type"] == outbox.MESSAGE_RECEIVED]
    assert sorted(received) == sorted([str(r.id) for r in results] + [received[0]])
    assert len(received) == len(set(received)) == 21
    assert sum(e["type"] == outbox.CONTACT_CREATED for e in events) == 4


def test_the_outbox_can_be_switched_off(database_url: str, make_app: AppFactory) -> None:
    app = make_app(database_url, outbox=False)
    with authorized_client(app) as client:
        assert (
            client.post("/ingest/message", json=message("5521987650001", "w.0")).status_code == 202
        )
        batch = {"messages": [message("5521987650002", "w.1"), message("5521987650001", "w.2")]}
        assert client.post("/ingest/messages", json=batch).status_code == 200
        assert feed(client) == []


def test_erasure_redacts_the_whatsapp_events_of_the_persons_messages(
    database_url: str, make_app: AppFactory
) -> None:
    secret = "segredo"
    app = make_app(database_url, whatsapp_verify_token="t", whatsapp_app_secret=secret)
    fixtures = REPO_ROOT / "tests" / "crm_core" / "fixtures" / "whatsapp"
    with authorized_client(app) as client:
        for name in ("every_type", "events", "statuses"):
            body = (fixtures / f"{name}.json").read_bytes()
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}
            assert (
                client.post("/webhooks/whatsapp", content=body, headers=headers).status_code == 200
            )
        before = feed(client)
        reactions = [e for e in before if e["type"] == outbox.MESSAGE_REACTION]
        contact_id = reactions[0]["data"]["contact_id"]
        assert contact_id is not None
        assert client.delete(f"/contacts/{contact_id}").status_code == 200
        after = {event["id"]: event for event in feed(client)}
    for event in before:
        if event["data"].get("contact_id") == contact_id or event["subject"] == contact_id:
            assert after[event["id"]]["data"] == outbox.erased_data(uuid.UUID(contact_id))
        else:
            assert after[event["id"]] == event
    assert list(after.values())[-1]["type"] == outbox.CONTACT_ERASED
    statuses = [e for e in after.values() if e["type"] == outbox.MESSAGE_STATUS]
    assert all("recipient_id" not in json.dumps(e) for e in statuses)


def _aged(database: Database, days: int) -> None:
    with database.engine.begin() as connection:
        connection.execute(
            update(OutboxEvent).values(time=datetime.now(UTC) - timedelta(days=days))
        )


def _append(database: Database, count: int) -> None:
    with database.engine.begin() as connection:
        outbox.append(
            connection,
            [outbox.NewEvent(outbox.CONTACT_ERASED, f"s{n}", {"n": n}) for n in range(count)],
        )


def test_prune_keeps_what_the_relay_has_not_published(database: Database) -> None:
    _append(database, 5)
    _aged(database, 10)
    with database.sessionmaker() as session:
        age = timedelta(days=5)
        assert outbox.prune(session, age, relay_stream="A") == outbox.Pruned(0, 5)
        rows = session.execute(select(OutboxEvent).order_by(OutboxEvent.seq)).scalars().all()
        for stream, row in (("A", rows[3]), ("B", rows[1])):
            session.add(RelayPosition(stream=stream, txid=row.txid, seq=row.seq, event_id=row.id))
        session.commit()
        # a stream configured now, with no position yet: nothing (B's position is not its own)
        assert outbox.prune(session, age, relay_stream="C") == outbox.Pruned(0, 5)
        assert outbox.prune(session, age, relay_stream="A") == outbox.Pruned(4, 1)
        left = session.execute(select(OutboxEvent.subject).order_by(OutboxEvent.seq)).scalars()
        assert list(left) == ["s4"]


def test_prune_without_a_relay_keeps_what_an_earlier_relay_has_not_published(
    database: Database,
) -> None:
    _append(database, 5)
    _aged(database, 10)
    with database.sessionmaker() as session:
        rows = session.execute(select(OutboxEvent).order_by(OutboxEvent.seq)).scalars().all()
        for stream, row in (("A", rows[3]), ("B", rows[1])):
            session.add(RelayPosition(stream=stream, txid=row.txid, seq=row.seq, event_id=row.id))
        session.commit()
        assert outbox.prune(session, timedelta(days=50), relay_stream=None) == outbox.Pruned(0, 0)
        assert outbox.prune(session, timedelta(days=5), relay_stream=None) == outbox.Pruned(2, 3)


def test_prune_without_a_relay_deletes_only_old_events(database: Database) -> None:
    _append(database, 3)
    _aged(database, 40)
    _append(database, 2)
    with database.sessionmaker() as session:
        assert outbox.prune(session, timedelta(days=30), relay_stream=None) == outbox.Pruned(3, 0)
        assert len(session.execute(select(OutboxEvent.id)).all()) == 2


def test_the_feed_refuses_what_it_does_not_understand(client: TestClient) -> None:
    unknown = client.get(
        "/events", params={"types": "br.aurora.crm.nada,br.aurora.crm.deal.created"}
    )
    assert unknown.status_code == 400
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "br.aurora.crm.nada" in unknown.json()["detail"]
    assert "br.aurora.crm.deal.created" not in unknown.json()["detail"].split("The types")[0]
    assert client.get("/events", params={"types": " , "}).status_code == 200
    assert client.get("/events", params={"wait": -1}).status_code == 422
    assert client.get("/events", params={"limit": 0}).status_code == 422


def test_the_migration_will_not_drop_read_keys_on_the_way_down(
    use_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    command.upgrade(alembic_config(), "head")
    engine = create_db_engine(use_database)
    try:
        with Database(engine).sessionmaker() as session:
            create_key(session, "read", "consumidor")
        with pytest.raises(RuntimeError, match="delete the read keys"):
            command.downgrade(alembic_config(), "0007")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM crm_events").scalar_one() == 0
    finally:
        engine.dispose()


def test_the_readme_documents_every_event_type() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Events") :]
    for kind in outbox.EVENT_TYPES:
        assert re.search(rf"`{re.escape(kind)}`", section), kind


def test_a_read_key_reads_everything_but_an_export(
    client: TestClient, make_app: AppFactory
) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    reader = authorized_client(app, "read")
    contact = client.post("/ingest/message", json=message("5521987650001", "w.0")).json()[
        "contact_id"
    ]
    assert reader.get(f"/contacts/{contact}").status_code == 200
    assert reader.get(f"/contacts/{contact}/messages").status_code == 200
    assert reader.get(f"/contacts/{contact}/export").status_code == 403
    assert reader.delete(f"/contacts/{contact}").status_code == 403
