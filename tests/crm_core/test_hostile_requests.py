"""A corpus of hostile requests to the ingest, each with the answer it must get.

Nothing may reach a 500, and a refused request stores nothing: no message, no contact. What
is accepted (injection strings among it) is stored and given back byte for byte, as data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from crm_core.models import Base, Contact, Message

VALID: dict[str, Any] = {
    "source": "whatsapp",
    "sender_id": "5511999999999",
    "content": "Olá",
    "metadata": {"message_id": "wamid.hostile"},
}


def body(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def metadata_text(value: str) -> bytes:
    """The valid message with its metadata replaced by raw JSON text."""
    document = json.dumps({**VALID, "metadata": "@@"})
    return document.replace('"@@"', value).encode()


WRONG_VALUES: tuple[Any, ...] = (None, 1, 1.5, True, [], {}, "x" * 70_000)
WRONG_TYPES = [
    (field, value)
    for field in ("source", "sender_id", "content", "metadata")
    for value in WRONG_VALUES
    if not (field == "metadata" and value == {})  # the one valid pair
]

# (name, raw body, expected status)
CORPUS: list[tuple[str, bytes, int]] = [
    ("NUL in content", body(content="a\x00b"), 422),
    ("NUL in sender", body(sender_id="55119\x009999999"), 422),
    ("NUL in a metadata key", body(metadata={"a\x00": 1}), 422),
    ("NUL in a metadata value", body(metadata={"a": "x\x00"}), 422),
    (
        "invalid UTF-8",
        b'{"source":"whatsapp","sender_id":"5511999999999","content":"\xff\xfe"}',
        400,
    ),
    ("latin-1 bytes", '{"content": "ação"}'.encode("latin-1"), 400),
    ("lone surrogate in content", body().replace(b'"Ol\\u00e1"', b'"\\ud800"'), 422),
    ("lone surrogate in a key", metadata_text('{"\\udfff": 1}'), 422),
    ("10,000-deep metadata", metadata_text(nested(10_000)), 400),
    ("100-deep metadata", metadata_text(nested(100)), 422),
    ("huge integer", metadata_text("1" + "0" * 5000), 400),
    ("integer past JSONB's range", metadata_text("1e400"), 422),
    ("NaN", metadata_text("NaN"), 422),
    ("Infinity", metadata_text("-Infinity"), 422),
    ("NaN inside metadata", metadata_text('{"x": NaN}'), 422),
    ("Infinity inside metadata", metadata_text('{"x": [1, -Infinity]}'), 422),
    ("1e400 inside metadata", metadata_text('{"x": {"y": 1e400}}'), 422),
    ("a JSON array", b"[1, 2, 3]", 422),
    ("a JSON string", b'"mensagem"', 422),
    ("null", b"null", 422),
    ("an empty object", b"{}", 422),
    ("an unknown field", body(admin=True), 422),
    ("trailing garbage", body() + b"}", 400),
    ("empty body", b"", 422),
    ("whitespace body", b"   ", 400),
    ("a 10 MB body", body(content="x" * 10_000_000), 413),
    ("a 10 MB metadata", metadata_text(json.dumps({"x": "y" * 10_000_000})), 413),
    ("a source that is not a slug", body(source="WhatsApp; DROP TABLE crm_messages"), 422),
    ("a sender with a newline", body(sender_id="5511999999999\n"), 422),
    ("a control character in the sender", body(source="webchat", sender_id="ana\x07"), 422),
    *(
        (f"{field} = {json.dumps(value)[:20]}", body(**{field: value}), 422)
        for field, value in WRONG_TYPES
    ),
]

INERT = [
    "'; DROP TABLE crm_messages; --",
    "Robert'); DELETE FROM crm_contacts WHERE ('1'='1",
    "<script>alert(document.cookie)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}} ${7*7} %s %n %x",
    "\u202e\u200b\ufeff emoji 🧬 e acentuação",
]


def count(engine: Engine, model: type[Base]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def post(client: TestClient, raw: bytes, path: str = "/ingest/message") -> Any:
    return client.post(path, content=raw, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_a_hostile_request_gets_its_4xx_and_stores_nothing(
    any_client: TestClient, raw: bytes, status: int
) -> None:
    engine: Engine = any_client.app.state.database.engine  # type: ignore[attr-defined]
    response = post(any_client, raw)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert count(engine, Message) == 0
    assert count(engine, Contact) == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [c[1:] for c in CORPUS if c[2] == 422 and c[1].startswith(b"{")],
    ids=[c[0] for c in CORPUS if c[2] == 422 and c[1].startswith(b"{")],
)
def test_a_hostile_item_of_a_batch_is_rejected_alone(
    any_client: TestClient, raw: bytes, status: int
) -> None:
    engine: Engine = any_client.app.state.database.engine  # type: ignore[attr-defined]
    good = {**VALID, "metadata": {"message_id": "wamid.good"}}
    batch = b'{"messages": [' + raw + b", " + json.dumps(good).encode() + b"]}"
    response = post(any_client, batch, "/ingest/messages")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]
    assert results[0]["problem"]["status"] == status
    assert count(engine, Message) == 1


@pytest.mark.parametrize("text", INERT)
def test_injection_strings_are_stored_and_returned_verbatim(
    any_client: TestClient, text: str
) -> None:
    message = {
        "source": "webchat",
        "sender_id": text,
        "content": text,
        "metadata": {text: text, "message_id": "m-1"},
    }
    response = any_client.post("/ingest/message", json=message)
    assert response.status_code == 202, response.text
    contact_id = response.json()["contact_id"]
    read: Callable[[str], Any] = lambda path: any_client.get(path).json()  # noqa: E731
    stored = read(f"/contacts/{contact_id}/messages")["data"][0]
    assert stored["content"] == text
    assert stored["metadata"][text] == text
    assert read(f"/contacts/{contact_id}")["sender_id"] == text
    engine: Engine = any_client.app.state.database.engine  # type: ignore[attr-defined]
    assert count(engine, Message) == 1  # the tables are still there, and hold one message
