"""OS 005 ingest: messages stored with their contact, deduplicated by the database, batches."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select

from crm_core.database import Database
from crm_core.models import Base, Contact, IdempotencyKey, Message
from crm_core.models.base import utcnow
from crm_core.models.idempotency_key import PROCESSING
from crm_core.schemas.ingest import MAX_BATCH_MESSAGES, IngestMessage
from crm_core.services import idempotency
from crm_core.services.group_commit import GroupCommitter, store_batch
from crm_core.services.ingest import StoredMessage, store_messages

WHATSAPP: dict[str, Any] = {
    "source": "whatsapp",
    "sender_id": "5511999999999",
    "content": "Olá, quero simular um consórcio",
    "metadata": {"message_id": "wamid.HBgNNTUxMTk5OTk5OTk5ORUCABEYEjQ", "profile_name": "Ana"},
}


def count(engine: Engine, model: type[Base]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def engine_of(client: TestClient) -> Engine:
    engine: Engine = client.app.state.database.engine  # type: ignore[attr-defined]
    return engine


def test_a_message_is_stored_with_its_contact(any_client: TestClient) -> None:
    response = any_client.post("/ingest/message", json=WHATSAPP)
    assert response.status_code == 202, response.text
    receipt = response.json()
    engine = engine_of(any_client)
    with engine.connect() as connection:
        message = connection.execute(select(Message.__table__)).one()
        contact = connection.execute(select(Contact.__table__)).one()
    assert str(message.id) == receipt["id"]
    assert str(contact.id) == receipt["contact_id"] == str(message.contact_id)
    assert (contact.source, contact.sender_id) == ("whatsapp", "5511999999999")
    assert message.content == WHATSAPP["content"]
    assert message.metadata == WHATSAPP["metadata"]
    assert message.channel_message_id == WHATSAPP["metadata"]["message_id"]


def test_the_same_channel_message_twice_is_one_row(any_client: TestClient) -> None:
    first = any_client.post("/ingest/message", json=WHATSAPP)
    again = any_client.post("/ingest/message", json=WHATSAPP)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(engine_of(any_client), Message) == 1


def test_the_same_message_id_on_another_channel_is_another_message(any_client: TestClient) -> None:
    any_client.post("/ingest/message", json=WHATSAPP)
    other = {**WHATSAPP, "source": "instagram", "sender_id": "ana.silva"}
    assert any_client.post("/ingest/message", json=other).status_code == 202
    assert count(engine_of(any_client), Message) == 2


def test_both_forms_of_a_brazilian_mobile_are_one_contact(any_client: TestClient) -> None:
    old = any_client.post("/ingest/message", json={**WHATSAPP, "sender_id": "551199999999"})
    new = any_client.post("/ingest/message", json={**WHATSAPP, "sender_id": "5511999999999"})
    assert old.status_code == new.status_code == 202 or new.status_code == 200
    new_id = any_client.post(
        "/ingest/message", json={**WHATSAPP, "sender_id": "5511999999999", "metadata": {}}
    ).json()["contact_id"]
    assert old.json()["contact_id"] == new_id
    assert count(engine_of(any_client), Contact) == 1


def test_a_landline_is_not_a_mobile(any_client: TestClient) -> None:
    body = {**WHATSAPP, "metadata": {}}
    landline = any_client.post("/ingest/message", json={**body, "sender_id": "551133334444"})
    mobile = any_client.post("/ingest/message", json={**body, "sender_id": "5511933334444"})
    assert landline.json()["contact_id"] != mobile.json()["contact_id"]
    with engine_of(any_client).connect() as connection:
        senders = set(connection.execute(select(Contact.sender_id)).scalars())
    assert senders == {"551133334444", "5511933334444"}


def test_a_whatsapp_sender_that_is_not_a_number_is_refused(client: TestClient) -> None:
    response = client.post("/ingest/message", json={**WHATSAPP, "sender_id": "ana"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "#/sender_id"
    assert count(engine_of(client), Message) == 0


@pytest.mark.parametrize(
    "message_id", [42, "", "x" * 257, {"id": 1}], ids=["number", "empty", "long", "object"]
)
def test_a_channel_message_id_must_be_a_string(client: TestClient, message_id: Any) -> None:
    response = client.post(
        "/ingest/message", json={**WHATSAPP, "metadata": {"message_id": message_id}}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "metadata"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"source":"whatsapp","sender_id":"5511999999999","content":"\xff\xfe","metadata":{}}',
        b'{"source":"whatsapp","sender_id":"5511999999999","content":"a\\u0000b","metadata":{}}',
        b'{"source":"whatsapp","sender_id":"5511999999999","content":"\\udc00","metadata":{}}',
    ],
    ids=["invalid-utf8", "nul", "lone-surrogate"],
)
def test_unstorable_text_is_a_4xx_and_nothing_is_stored(any_client: TestClient, raw: bytes) -> None:
    response = any_client.post(
        "/ingest/message", content=raw, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert count(engine_of(any_client), Message) == 0


# Idempotency-Key


def test_an_idempotency_key_repeated_gets_the_original_receipt(any_client: TestClient) -> None:
    body = {**WHATSAPP, "metadata": {}}
    headers = {"Idempotency-Key": "pedido-123"}
    first = any_client.post("/ingest/message", json=body, headers=headers)
    again = any_client.post("/ingest/message", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(engine_of(any_client), Message) == 1


def test_an_idempotency_key_reused_for_another_payload_is_422(any_client: TestClient) -> None:
    headers = {"Idempotency-Key": "pedido-123"}
    any_client.post("/ingest/message", json={**WHATSAPP, "metadata": {}}, headers=headers)
    other = {**WHATSAPP, "content": "outra coisa", "metadata": {}}
    response = any_client.post("/ingest/message", json=other, headers=headers)
    assert response.status_code == 422
    assert response.json()["type"] == "urn:aurora-crm:problem:idempotency-key-reused"
    assert count(engine_of(any_client), Message) == 1


def _key_id(client: TestClient) -> str:
    token = client.headers["Authorization"].removeprefix("Bearer ")
    principal = client.app.state.authenticator.authenticate(token)  # type: ignore[attr-defined]
    assert principal is not None
    return str(principal.key_id)


def claim_key(client: TestClient, body: dict[str, Any], *, age_seconds: float) -> None:
    """A `processing` claim of `pedido-123` for `body`, as a request that started
    `age_seconds` ago (and maybe died) leaves it."""
    fingerprint = idempotency.fingerprint(
        "POST", "/ingest/message", IngestMessage.model_validate(body).model_dump()
    )
    with engine_of(client).begin() as connection:
        connection.execute(
            insert(IdempotencyKey).values(
                id=uuid.uuid4(),
                principal=_key_id(client),
                key="pedido-123",
                fingerprint=fingerprint,
                state=PROCESSING,
                created_at=utcnow() - timedelta(seconds=age_seconds),
            )
        )


def test_an_idempotency_key_whose_first_request_runs_is_409(any_client: TestClient) -> None:
    body = {**WHATSAPP, "metadata": {}}
    claim_key(any_client, body, age_seconds=0)
    response = any_client.post(
        "/ingest/message", json=body, headers={"Idempotency-Key": "pedido-123"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert count(engine_of(any_client), Message) == 0


def test_a_key_left_processing_past_its_lease_is_taken_over_by_a_retry(
    any_client: TestClient,
) -> None:
    """The first request died before committing (its work and the key commit together)."""
    body = {**WHATSAPP, "metadata": {}}
    claim_key(any_client, body, age_seconds=61)  # the default lease is 60 s
    headers = {"Idempotency-Key": "pedido-123"}
    other = {**body, "content": "outra coisa"}
    assert any_client.post("/ingest/message", json=other, headers=headers).status_code == 422
    first = any_client.post("/ingest/message", json=body, headers=headers)
    assert first.status_code == 202, first.text
    again = any_client.post("/ingest/message", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert count(engine_of(any_client), Message) == 1


@pytest.mark.parametrize(
    "key", [b"", b"x" * 256, "chave com ç".encode()], ids=["empty", "long", "non-ascii"]
)
def test_a_malformed_idempotency_key_is_400(client: TestClient, key: bytes) -> None:
    response = client.post("/ingest/message", json=WHATSAPP, headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert count(engine_of(client), Message) == 0


# Concurrency: the database's unique constraints decide, not the application.

PARALLEL = 50


def test_parallel_identical_messages_are_one_row(database: Database) -> None:
    message = IngestMessage.model_validate(WHATSAPP)
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda _: store_batch(database, [message])[0], range(PARALLEL)))
    assert count(database.engine, Message) == 1
    assert count(database.engine, Contact) == 1
    assert len({result.id for result in results}) == 1
    assert sum(not result.duplicate for result in results) == 1


def mixed_batch(tag: str) -> tuple[list[IngestMessage], list[bool]]:
    """Messages of a known sender and of new ones, new and already stored, some repeated in the
    batch; with whether each one's result must say duplicate."""

    def message(sender: str, message_id: str | None) -> IngestMessage:
        metadata = {"message_id": f"wamid.{tag}.{message_id}"} if message_id else {}
        return IngestMessage.model_validate(
            {"source": "whatsapp", "sender_id": sender, "content": "oi", "metadata": metadata}
        )

    known, new = "5511999990001", "5511999990002"
    messages = [
        message(known, "1"),  # known sender, new message
        message(new, "2"),  # a new sender
        message(known, "stored"),  # already stored
        message(known, "1"),  # repeated in this batch
        message(known, None),  # no channel id
        message(new, "3"),
        message(new, "2"),  # repeated in this batch, its first from a new sender
    ]
    return messages, [False, False, True, True, False, False, True]


@pytest.mark.parametrize("path", ["batch", "group commit", "batch on the event loop"])
def test_a_mixed_batch_gives_each_message_its_own_result(database: Database, path: str) -> None:
    messages, duplicates = mixed_batch(path)
    store_batch(database, [messages[2]])  # the known sender, and the message already stored
    outcome: list[Any]
    if path == "batch":
        outcome = store_batch(database, messages)
    elif path == "batch on the event loop":
        committer = GroupCommitter(database)
        if not committer.on_postgresql:
            pytest.skip("SQLite stores a batch in a thread (the 'batch' case)")

        async def store_all() -> list[Any]:
            try:
                return await committer.store_all(messages)
            finally:
                await committer.aclose()

        outcome = asyncio.run(store_all())
    else:
        committer = GroupCommitter(database)

        async def flush() -> list[Any]:
            try:
                return await committer._store_async(messages)  # one flush of them all
            finally:
                await committer.aclose()

        outcome = asyncio.run(flush()) if committer._pg_dsn else committer._store(messages)
    results = [result for result in outcome if isinstance(result, StoredMessage)]
    assert len(results) == len(messages), outcome
    assert [result.duplicate for result in results] == duplicates
    assert count(database.engine, Message) == 5
    assert count(database.engine, Contact) == 2
    ids = [result.id for result in results]
    assert ids[3] == ids[0]
    assert ids[6] == ids[1]
    with database.engine.connect() as connection:
        rows = dict(connection.execute(select(Message.id, Message.contact_id)).all())
    for message, result in zip(messages, results, strict=True):
        assert result.id is not None
        assert rows[result.id] == result.contact_id, message
    assert len({results[0].contact_id, results[1].contact_id}) == 2


def test_a_batch_whose_request_is_cancelled_is_stored_and_the_connection_stays_usable(
    database: Database,
) -> None:
    committer = GroupCommitter(database)
    if not committer.on_postgresql:
        pytest.skip("SQLite stores a batch in a thread, which a cancellation does not stop")

    def message(n: int) -> IngestMessage:
        return IngestMessage.model_validate(
            {**WHATSAPP, "metadata": {"message_id": f"wamid.cancelled.{n}"}}
        )

    async def scenario() -> StoredMessage:
        try:
            request = asyncio.ensure_future(committer.store_all([message(n) for n in range(500)]))
            for _ in range(3):  # started: waiting for its connection
                await asyncio.sleep(0)
            assert not request.done()
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            return await committer.submit(message(500))  # the next flush, same connection
        finally:
            await committer.aclose()

    after = asyncio.run(scenario())
    assert not after.duplicate
    assert count(database.engine, Message) == 501


def assert_run_once_in_parallel(
    database: Database, fingerprint: str, work: Callable[[Any], idempotency.Outcome]
) -> None:
    """PARALLEL requests with the key `k` at once: one runs the work (202), the others replay
    it (200) or find it running (409), and one message is stored."""

    def attempt(_: int) -> int:
        try:
            return idempotency.run_once(
                database.engine, "anonymous", "k", fingerprint, work, lease_seconds=60
            ).status
        except Exception as exc:
            return int(getattr(exc, "status", 500))

    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(attempt, range(PARALLEL)))
    assert count(database.engine, Message) == 1
    assert statuses.count(202) == 1
    assert set(statuses) <= {200, 202, 409}, statuses


def test_parallel_requests_with_one_idempotency_key_are_one_row(database: Database) -> None:
    message = IngestMessage.model_validate({**WHATSAPP, "metadata": {}})
    fingerprint = idempotency.fingerprint("POST", "/ingest/message", message.model_dump())

    def work(connection: Any) -> idempotency.Outcome:
        stored = store_messages(connection, [message])[0]
        return idempotency.Outcome(202, stored.receipt())

    assert_run_once_in_parallel(database, fingerprint, work)


def test_parallel_retries_of_an_expired_claim_run_it_once(database: Database) -> None:
    message = IngestMessage.model_validate({**WHATSAPP, "metadata": {}})
    fingerprint = idempotency.fingerprint("POST", "/ingest/message", message.model_dump())
    with database.engine.begin() as connection:
        connection.execute(
            insert(IdempotencyKey).values(
                id=uuid.uuid4(),
                principal="anonymous",
                key="k",
                fingerprint=fingerprint,
                state=PROCESSING,
                created_at=utcnow() - timedelta(minutes=5),
            )
        )

    def work(connection: Any) -> idempotency.Outcome:
        stored = store_messages(connection, [message])[0]
        return idempotency.Outcome(202, stored.receipt())

    assert_run_once_in_parallel(database, fingerprint, work)


def test_parallel_http_requests_are_one_row(any_client: TestClient) -> None:
    with ThreadPoolExecutor(PARALLEL) as pool:
        responses = list(
            pool.map(lambda _: any_client.post("/ingest/message", json=WHATSAPP), range(PARALLEL))
        )
    assert sorted({response.status_code for response in responses}) in ([200, 202], [202])
    assert [r.status_code for r in responses].count(202) == 1
    assert len({response.json()["id"] for response in responses}) == 1
    assert count(engine_of(any_client), Message) == 1


def test_a_duplicate_storm_stores_each_message_once(any_client: TestClient) -> None:
    """Many clients send the same messages at once, each in its own order, one by one and in
    batches: one row per message, one 202 (or one `accepted`) each, every other answer naming
    the same row."""
    messages: list[dict[str, Any]] = [
        {
            "source": "whatsapp",
            "sender_id": f"55119{8000_0000 + n % 7:08d}",  # 7 senders, new ones included
            "content": f"mensagem {n}",
            "metadata": {"message_id": f"wamid.storm.{n}"},
        }
        for n in range(30)
    ]
    clients = 12
    rng = random.Random(5)
    orders = [rng.sample(messages, len(messages)) for _ in range(clients)]

    def send(index: int) -> list[tuple[str, int, str]]:
        order = orders[index]
        if index % 3 == 0:  # some clients send one batch
            response = any_client.post("/ingest/messages", json={"messages": order})
            assert response.status_code == 200, response.text
            return [
                (m["metadata"]["message_id"], 202 if r["status"] == "accepted" else 200, r["id"])
                for m, r in zip(order, response.json()["results"], strict=True)
            ]
        answers = []
        for message in order:
            response = any_client.post("/ingest/message", json=message)
            assert response.status_code in (200, 202), response.text
            answers.append(
                (message["metadata"]["message_id"], response.status_code, response.json()["id"])
            )
        return answers

    with ThreadPoolExecutor(clients) as pool:
        answers = [answer for batch in pool.map(send, range(clients)) for answer in batch]
    engine = engine_of(any_client)
    assert count(engine, Message) == len(messages)
    assert count(engine, Contact) == 7
    for message in messages:
        mine = [a for a in answers if a[0] == message["metadata"]["message_id"]]
        assert len(mine) == clients
        assert [status for _, status, _ in mine].count(202) == 1, mine
        assert len({row_id for _, _, row_id in mine}) == 1, mine


# Batch


def test_a_batch_answers_each_message(any_client: TestClient) -> None:
    any_client.post("/ingest/message", json=WHATSAPP)
    messages = [
        {**WHATSAPP, "metadata": {"message_id": "wamid.novo"}},
        WHATSAPP,  # stored before
        {**WHATSAPP, "sender_id": "not a number"},
        {**WHATSAPP, "metadata": {"message_id": "wamid.novo"}},  # twice in the batch
        {**WHATSAPP, "sender_id": "551188887777", "metadata": {}},
        "not an object",
    ]
    response = any_client.post("/ingest/messages", json={"messages": messages})
    assert response.status_code == 200, response.text
    receipt = response.json()
    statuses = [result["status"] for result in receipt["results"]]
    assert statuses == ["accepted", "duplicate", "rejected", "duplicate", "accepted", "rejected"]
    assert (receipt["accepted"], receipt["duplicate"], receipt["rejected"]) == (2, 2, 2)
    results = receipt["results"]
    assert results[3]["id"] == results[0]["id"]
    assert results[2]["problem"]["status"] == 422
    assert results[2]["problem"]["errors"][0]["pointer"] == "#/messages/2/sender_id"
    assert count(engine_of(any_client), Message) == 3


def test_a_batch_of_the_maximum_length_is_stored(any_client: TestClient) -> None:
    messages = [
        {**WHATSAPP, "sender_id": f"55119{index:08d}", "metadata": {"message_id": f"m{index}"}}
        for index in range(MAX_BATCH_MESSAGES)
    ]
    response = any_client.post("/ingest/messages", json={"messages": messages})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == MAX_BATCH_MESSAGES
    assert count(engine_of(any_client), Message) == MAX_BATCH_MESSAGES


@pytest.mark.parametrize("length", [0, MAX_BATCH_MESSAGES + 1])
def test_a_batch_too_short_or_too_long_is_refused(client: TestClient, length: int) -> None:
    response = client.post("/ingest/messages", json={"messages": [WHATSAPP] * length})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "messages"
    assert count(engine_of(client), Message) == 0


def test_a_batch_with_an_idempotency_key_is_replayed(client: TestClient) -> None:
    body = {"messages": [{**WHATSAPP, "metadata": {}}]}
    headers = {"Idempotency-Key": "lote-1"}
    first = client.post("/ingest/messages", json=body, headers=headers)
    again = client.post("/ingest/messages", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert count(engine_of(client), Message) == 1
