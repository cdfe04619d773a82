"""The data promises under erasure, order, late commits, NUL and reused message ids.

Each test runs on SQLite and on PostgreSQL. The failure kinds come from public bug reports of
CRMs and chat inboxes: an erased person's message re-delivered by the channel and stored again,
messages of one batch listed in random order, a cursor that passes a row which commits late,
NUL reaching PostgreSQL, a repeated message id with new content answered as a replay, and
concurrent stage moves that contradict each other on SQLite.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, Table, func, insert, select

from crm_core.database import Database
from crm_core.models import AuditEvent, Contact, Deal, Message
from crm_core.pipelines import RODOBENS
from crm_core.schemas.ingest import IngestMessage
from crm_core.services import privacy
from crm_core.services.group_commit import GroupCommitter, store_batch
from crm_core.services.ingest import store_messages
from tests.crm_core.test_api import create_deal, problem

SECRET = "meu CPF é 123.456.789-00"
ERASED_ID = "wamid.HBgNNTUxMTk5OTk5OTk5ORUCABIYFjNFQjBDMDg5"


def message(
    sender: str = "5511999999999",
    content: str = SECRET,
    message_id: str | None = ERASED_ID,
    **metadata: Any,
) -> dict[str, Any]:
    extra = {"message_id": message_id} if message_id else {}
    return {
        "source": "whatsapp",
        "sender_id": sender,
        "content": content,
        "metadata": {**extra, **metadata},
    }


def engine_of(client: TestClient) -> Engine:
    engine: Engine = client.app.state.database.engine  # type: ignore[attr-defined]
    return engine


def rows(engine: Engine, model: type[Any]) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(model.__table__)).all())


def count(engine: Engine, model: type[Any]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def ingested(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/ingest/message", json=body)
    assert response.status_code in (200, 202), response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def erase(client: TestClient, contact_id: str) -> dict[str, Any]:
    response = client.delete(f"/contacts/{contact_id}")
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


# 1. Erasure lasts.


@pytest.mark.parametrize(
    "redelivery",
    ["the same request", "in a batch", "the 12-digit form", "with other metadata"],
)
def test_a_redelivered_message_of_an_erased_person_stores_nothing(
    any_client: TestClient, redelivery: str
) -> None:
    original = message(profile_name="Ana Souza")
    contact_id = ingested(any_client, original)["contact_id"]
    erase(any_client, contact_id)
    again = {
        "the same request": original,
        "in a batch": original,
        "the 12-digit form": {**original, "sender_id": "551199999999"},
        "with other metadata": {**original, "metadata": {"message_id": ERASED_ID, "sync": 1}},
    }[redelivery]
    if redelivery == "in a batch":
        response = any_client.post("/ingest/messages", json={"messages": [again]})
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        assert result["status"] == "rejected", result
        assert result["problem"]["status"] == 410, result
        assert result["problem"]["type"].endswith(":erased"), result
    else:
        body = problem(any_client.post("/ingest/message", json=again), 410)
        assert body["type"].endswith(":erased"), body
    engine = engine_of(any_client)
    assert count(engine, Contact) == 1
    stored = rows(engine, Message)
    assert len(stored) == 1
    assert (stored[0].content, stored[0].channel_message_id) == ("", None)
    everything = repr(rows(engine, Contact)) + repr(stored)
    for personal in (SECRET, "Ana Souza", ERASED_ID, "99999999"):
        assert personal not in everything


def test_an_erased_message_id_from_another_sender_is_a_conflict(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    erase(any_client, contact_id)
    body = problem(any_client.post("/ingest/message", json=message(sender="5521988887777")), 409)
    assert body["type"].endswith(":message-id-conflict"), body
    assert body["stored_message"] is None, body
    assert count(engine_of(any_client), Message) == 1


def test_a_new_message_of_an_erased_person_is_a_new_contact(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    erase(any_client, contact_id)
    later = ingested(any_client, message(content="voltei", message_id="wamid.novo"))
    assert later["contact_id"] != contact_id


def test_no_message_can_be_filed_under_an_erased_contact(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    erase(any_client, contact_id)
    for source in ("whatsapp", "webchat"):
        sender = f"erased:{contact_id}"
        body = problem(
            any_client.post("/ingest/message", json={**message(sender), "source": source}), 422
        )
        assert body["errors"][0]["field"] == "sender_id", body
    assert count(engine_of(any_client), Message) == 1


def test_the_tombstone_holds_no_personal_data(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    erase(any_client, contact_id)
    with engine_of(any_client).connect() as connection:
        tombstones = connection.exec_driver_sql("SELECT * FROM crm_erasure_tombstones").all()
    assert len(tombstones) == 1
    for personal in (SECRET, ERASED_ID, "5511999999999", "11999999999", "99999999"):
        assert personal not in repr(tombstones)


def test_an_erasure_leaves_nothing_in_the_sqlite_files(sqlite_url: str, make_app: Any) -> None:
    """Not in the rows only: the database file's free space and its write-ahead log held the
    erased bytes until a checkpoint (seen with the server still running)."""
    from tests.crm_core.conftest import authorized_client

    marker = "endereço Rua das Acácias 1234 apto 56"
    with authorized_client(make_app(sqlite_url)) as client:
        contact_id = ingested(client, message(content=marker * 40))["contact_id"]
        for n in range(20):  # more pages, in the log and in the file
            ingested(client, message(content=f"{marker} {n}", message_id=f"wamid.{n}"))
        erase(client, contact_id)
        database = sqlite_url.removeprefix("sqlite:///")
        for suffix in ("", "-wal", "-shm"):
            path = Path(database + suffix)
            held = path.read_bytes() if path.exists() else b""
            assert marker.encode() not in held, f"{path.name} still holds the erased content"
            assert ERASED_ID.encode() not in held, f"{path.name} still holds the message id"


def test_a_second_erasure_changes_nothing(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    create_deal(any_client, contact_id, amount="85000.00")
    first = erase(any_client, contact_id)
    engine = engine_of(any_client)
    before = (rows(engine, Contact), rows(engine, Message), rows(engine, Deal))
    second = erase(any_client, contact_id)
    assert second["erased_at"] == first["erased_at"]
    assert second["already_erased"] is True
    assert (second["messages_erased"], second["deals_anonymised"]) == (0, 0)
    assert (first["already_erased"], first["messages_erased"], first["deals_anonymised"]) == (
        False,
        1,
        1,
    )
    assert (rows(engine, Contact), rows(engine, Message), rows(engine, Deal)) == before
    with engine.connect() as connection:
        audited = connection.execute(select(AuditEvent.action, AuditEvent.details)).all()
    assert [action for action, _ in audited] == ["contact.erase", "contact.erase"]
    assert audited[1].details["already_erased"] is True


def test_an_erased_contact_takes_no_new_deals(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    erase(any_client, contact_id)
    body = {"contact_id": contact_id, "title": "Consórcio", "pipeline": "rodobens"}
    assert problem(any_client.post("/deals", json=body), 409)["type"].endswith(":contact-erased")
    assert count(engine_of(any_client), Deal) == 0


def test_a_message_committing_during_an_erasure_is_erased_too(database: Database) -> None:
    """A message whose transaction is still open when the erasure starts: the erasure waits for
    it and erases it, or it is stored under a new contact; never stored as it came under the
    erased contact."""
    first = IngestMessage.model_validate(message(content="primeira", message_id="wamid.1"))
    contact_id = store_batch(database, [first])[0].contact_id
    assert contact_id is not None
    in_flight = IngestMessage.model_validate(message(content=SECRET, message_id="wamid.2"))
    stored, go = threading.Event(), threading.Event()

    def store() -> None:
        with database.engine.begin() as connection:
            store_messages(connection, [in_flight])
            stored.set()
            go.wait(10)

    def erase_now() -> None:
        with database.sessionmaker() as session:
            privacy.erase_contact(session, contact_id, "test", None)

    with ThreadPoolExecutor(2) as pool:
        storing = pool.submit(store)
        assert stored.wait(10)
        erasing = pool.submit(erase_now)
        threading.Event().wait(0.5)  # the erasure has started and met the open transaction
        go.set()
        storing.result(timeout=30)
        erasing.result(timeout=30)
    with database.engine.connect() as connection:
        kept = connection.execute(
            select(Message.content).where(Message.contact_id == contact_id)
        ).all()
    assert [content for (content,) in kept] == ["", ""], kept


# 2. Order follows arrival.

BATCH_IDS = ["wamid.e", "wamid.d", None, "wamid.c", "wamid.b", "wamid.a"]


def test_a_batch_keeps_its_order_in_every_list(any_client: TestClient) -> None:
    sent = [
        message(content=f"parte {n}", message_id=channel_id)
        for n, channel_id in enumerate(BATCH_IDS)
    ]
    response = any_client.post("/ingest/messages", json={"messages": sent})
    assert response.status_code == 200, response.text
    contact_id = response.json()["results"][0]["contact_id"]
    contents = [body["content"] for body in sent]
    walked: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = any_client.get(f"/contacts/{contact_id}/messages", params=params).json()
        walked += [item["content"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == contents[::-1]
    detail = any_client.get(f"/contacts/{contact_id}").json()
    assert [item["content"] for item in detail["recent_messages"]] == contents[::-1]
    export = any_client.get(f"/contacts/{contact_id}/export").json()
    assert [item["content"] for item in export["messages"]] == contents


def test_requests_sharing_one_group_commit_keep_their_order(database: Database) -> None:
    committer = GroupCommitter(database)
    sent = [
        IngestMessage.model_validate(message(content=f"parte {n}", message_id=channel_id))
        for n, channel_id in enumerate(BATCH_IDS)
    ]

    async def submit_together() -> list[Any]:
        try:
            return list(await asyncio.gather(*(committer.submit(body) for body in sent)))
        finally:
            await committer.aclose()

    results = asyncio.run(submit_together())
    contact_id = results[0].contact_id
    with database.sessionmaker() as session:
        exported = privacy.export_contact(session, contact_id, "test", None)
    assert [item["content"] for item in exported["messages"]] == [m.content for m in sent]


# 3. A cursor never passes a row that commits later.


def _walk(client: TestClient, path: str, limit: int = 2) -> tuple[list[str], str | None]:
    """Follow next_cursor to the end: the ids in order, and the end cursor of the last page."""
    seen: list[str] = []
    cursor: str | None = None
    end: str | None = None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["id"] for item in page["data"]]
        end = page.get("end_cursor") or end  # (a newest-first list has no end to poll)
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, end


@pytest.mark.postgres
@pytest.mark.parametrize("listed", ["contacts", "deals"])
def test_a_row_committed_late_is_not_passed_by_the_cursor(
    postgres_url: str, make_app: Any, listed: str
) -> None:
    """PostgreSQL runs writers side by side; SQLite runs one at a time, so the same situation
    cannot arise there (the concurrent-writers test covers both)."""
    from tests.crm_core.conftest import authorized_client

    with authorized_client(make_app(postgres_url)) as client:
        engine = engine_of(client)
        owner = ingested(client, message(message_id="wamid.dono"))["contact_id"]
        if listed == "deals":
            create_deal(client, owner)
        late = engine.connect()
        transaction = late.begin()
        table = (Contact if listed == "contacts" else Deal).__table__
        assert isinstance(table, Table)
        values: dict[str, Any] = {"source": "whatsapp", "sender_id": "5511900000001"}
        if listed == "deals":
            values = {
                "contact_id": owner,
                "title": "tarde",
                "pipeline": "rodobens",
                "stage": "novo",
            }
        late.execute(insert(table).values(**values))
        # Another row commits while the first is in flight.
        if listed == "contacts":
            ingested(client, message(sender="5511900000002", message_id="wamid.outro"))
        else:
            create_deal(client, owner, title="cedo")
        seen, end = _walk(client, f"/{listed}")
        transaction.commit()
        late.close()
        while True:
            params = {"limit": 2, **({"cursor": end} if end else {})}
            page = client.get(f"/{listed}", params=params).json()
            seen += [item["id"] for item in page["data"]]
            end = page.get("end_cursor") or end  # (a newest-first list has no end to poll)
            if page["next_cursor"] is None:
                break
        everything = [
            item["id"] for item in client.get(f"/{listed}", params={"limit": 200}).json()["data"]
        ]
        assert sorted(seen) == sorted(everything), (seen, everything)
        assert len(seen) == len(set(seen)), seen


@pytest.mark.postgres
def test_a_message_committed_late_is_not_passed_by_a_newest_first_walk(
    postgres_url: str, make_app: Any
) -> None:
    from tests.crm_core.conftest import authorized_client

    with authorized_client(make_app(postgres_url)) as client:
        engine = engine_of(client)
        contact_id = ingested(client, message(content="antiga", message_id="wamid.0"))["contact_id"]
        late = engine.connect()
        transaction = late.begin()
        store_messages(
            late, [IngestMessage.model_validate(message(content="tarde", message_id="wamid.1"))]
        )
        ingested(client, message(content="nova", message_id="wamid.2"))
        walk, _ = _walk(client, f"/contacts/{contact_id}/messages", limit=1)
        transaction.commit()
        late.close()
        final, _ = _walk(client, f"/contacts/{contact_id}/messages", limit=1)
        # Everything older than the walk's first row was seen by the walk, in order.
        assert walk == final[final.index(walk[0]) :], (walk, final)


# 4. Text the databases can hold, at every boundary: see test_text_boundary.py.

# 5. A repeated message id with other content is a conflict, not a replay.


@pytest.mark.parametrize("change", ["content", "sender"])
def test_a_reused_message_id_is_a_conflict_naming_the_stored_message(
    any_client: TestClient, change: str
) -> None:
    first = ingested(any_client, message(content="oi", message_id="wamid.x"))
    reused = message(content="outro texto" if change == "content" else "oi", message_id="wamid.x")
    if change == "sender":
        reused["sender_id"] = "5521988887777"
    body = problem(any_client.post("/ingest/message", json=reused), 409)
    assert body["type"].endswith(":message-id-conflict"), body
    assert body["stored_message"]["id"] == first["id"], body
    batch = any_client.post("/ingest/messages", json={"messages": [reused]}).json()
    assert batch["results"][0]["status"] == "rejected"
    assert batch["results"][0]["problem"]["status"] == 409
    assert batch["results"][0]["problem"]["stored_message"]["id"] == first["id"]
    assert count(engine_of(any_client), Message) == 1
    # An exact repeat, in either form of the number, is still a replay.
    again = any_client.post(
        "/ingest/message", json=message(sender="551199999999", content="oi", message_id="wamid.x")
    )
    assert again.status_code == 200, again.text
    assert again.json() == first


def test_a_refusal_under_an_idempotency_key_is_replayed_as_itself(any_client: TestClient) -> None:
    ingested(any_client, message(content="oi", message_id="wamid.k"))
    reused = message(content="outro texto", message_id="wamid.k")
    headers = {"Idempotency-Key": "pedido-9"}
    first = problem(any_client.post("/ingest/message", json=reused, headers=headers), 409)
    again = any_client.post("/ingest/message", json=reused, headers=headers)
    assert problem(again, 409) == first
    assert again.headers["idempotent-replayed"] == "true"
    assert count(engine_of(any_client), Message) == 1


def test_a_message_id_twice_in_one_batch_with_other_content_is_a_conflict(
    any_client: TestClient,
) -> None:
    sent = [
        message(content="oi", message_id="wamid.y"),
        message(content="oi", message_id="wamid.y"),
        message(content="outro", message_id="wamid.y"),
    ]
    results = any_client.post("/ingest/messages", json={"messages": sent}).json()["results"]
    assert [result["status"] for result in results] == ["accepted", "duplicate", "rejected"]
    assert results[2]["problem"]["status"] == 409
    assert results[2]["problem"]["stored_message"]["id"] == results[0]["id"]


# 6. Read-then-write operations are serialized on SQLite as on PostgreSQL.


def test_concurrent_stage_moves_leave_a_coherent_history(any_client: TestClient) -> None:
    contact_id = ingested(any_client, message())["contact_id"]
    deals = [create_deal(any_client, contact_id)["id"] for _ in range(20)]
    targets = ["qualificacao", "perdido", "qualificacao", "perdido"]

    def move(job: tuple[str, str]) -> int:
        deal_id, stage = job
        response = any_client.post(f"/deals/{deal_id}/stage", json={"stage": stage})
        return int(response.status_code)

    jobs = [(deal_id, stage) for deal_id in deals for stage in targets]
    with ThreadPoolExecutor(len(targets) * 4) as pool:
        statuses = list(pool.map(move, jobs))
    assert set(statuses) <= {200, 409}, statuses
    for deal_id in deals:
        detail = any_client.get(f"/deals/{deal_id}").json()
        history = detail["history"]
        assert history[0]["from_stage"] is None
        for before, after in itertools.pairwise(history):
            assert after["from_stage"] == before["to_stage"], history
            assert RODOBENS.allows(after["from_stage"], after["to_stage"]), history
        assert detail["stage"] == history[-1]["to_stage"], detail
