"""GET and POST /webhooks/whatsapp: the handshake, the signature, every message type, statuses,
events, re-deliveries, and what is not a delivery; on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_core.models import Contact, Message, MessageEvent, MessageStatus
from crm_core.services.whatsapp import content_of, whatsapp_contact_id
from tests.crm_core.conftest import AppFactory, authorized_client
from tests.crm_core.test_ingest import assert_problem

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
TOKEN = "verify-token-de-teste"
SECRET = "app-secret-de-teste"
WEBHOOK = "/webhooks/whatsapp"


def fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return document


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def deliver(client: TestClient, document: Any) -> Any:
    body = json.dumps(document).encode()
    return client.post(WEBHOOK, content=body, headers=signed(body))


@pytest.fixture
def wa_client(database_url: str, make_app: AppFactory) -> Iterator[TestClient]:
    app = make_app(database_url, whatsapp_verify_token=TOKEN, whatsapp_app_secret=SECRET)
    with authorized_client(app) as client:
        yield client


def count(client: TestClient, model: Any) -> int:
    engine = client.app.state.database.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def messages(client: TestClient) -> dict[str, Message]:
    with client.app.state.database.sessionmaker() as session:  # type: ignore[attr-defined]
        return {row.channel_message_id: row for row in session.scalars(select(Message))}


def test_the_handshake_answers_the_challenge_as_text(wa_client: TestClient) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    response = wa_client.get(WEBHOOK, params=query)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": TOKEN},
        {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "9" * 1025},
        {},
    ],
)
def test_a_wrong_handshake_is_403(wa_client: TestClient, query: dict[str, str]) -> None:
    assert_problem(wa_client.get(WEBHOOK, params=query), 403)


def test_the_routes_are_404_until_configured(client: TestClient) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"}
    assert_problem(client.get(WEBHOOK, params=query), 404)
    assert_problem(deliver(client, fixture("statuses")), 404)


@pytest.mark.parametrize("header", [None, "sha256=00", "sha1=abc", "sha256="])
def test_a_missing_or_wrong_signature_is_401_and_stores_nothing(
    wa_client: TestClient, header: str | None
) -> None:
    body = json.dumps(fixture("every_type")).encode()
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    assert_problem(wa_client.post(WEBHOOK, content=body, headers=headers), 401)
    other = signed(body, "another-secret")
    assert_problem(wa_client.post(WEBHOOK, content=body, headers=other), 401)
    assert count(wa_client, Message) == 0
    assert count(wa_client, Contact) == 0


def test_every_message_type_is_stored_with_its_business_number(wa_client: TestClient) -> None:
    response = deliver(wa_client, fixture("every_type"))
    assert response.status_code == 200, response.text
    assert response.json()["messages"] == 14
    stored = messages(wa_client)
    assert len(stored) == 14
    contents = {wamid.split(".")[2]: message.content for wamid, message in stored.items()}
    assert contents == {
        "text": "Olá, quero simular um consórcio de carro",
        "image": "CNH frente",
        "audio": "[audio]",
        "video": "[video]",
        "document": "[document] comprovante-renda.pdf",
        "sticker": "[sticker]",
        "location": "[location] Escritório Av. Rio Branco, 1 (-22.9068, -43.1729)",
        "contacts": "[contacts] Carlos Lima",
        "button_reply": "Sim, quero simular",
        "list_reply": "Consórcio",
        "button": "Falar com advogado",
        "order": "[order] 1 item(s)",
        "system": "Bruno mudou de 5511987650002 para 5511987650003",
        "unsupported": "[unsupported]",
    }
    image = stored["wamid.TEST.image.0002"].metadata_
    assert image["media"] == {
        "id": "1100000000000002",
        "mime_type": "image/jpeg",
        "sha256": "q1V0yGkTQmrbPm0z1Wb4cWzcn4ZUrY6F7x0Y1vHgQ6E=",
        "caption": "CNH frente",
    }
    assert image["phone_number_id"] == "900000000000001"
    assert image["display_phone_number"] == "552130000001"
    assert image["type"] == "image"
    button = stored["wamid.TEST.button.0011"].metadata_
    assert button["phone_number_id"] == "900000000000002"
    assert button["message"]["context"]["id"] == "wamid.TEST.outbound.0101"


def test_the_sender_is_the_ingest_contact_and_gets_the_profile_name(
    wa_client: TestClient,
) -> None:
    earlier = {
        "source": "whatsapp",
        "sender_id": "5521987650001",
        "content": "antes",
        "metadata": {"message_id": "wamid.TEST.ingest.0000"},
    }
    contact_id = wa_client.post("/ingest/message", json=earlier).json()["contact_id"]
    deliver(wa_client, fixture("every_type"))
    with wa_client.app.state.database.sessionmaker() as session:  # type: ignore[attr-defined]
        contacts = {row.sender_id: row for row in session.scalars(select(Contact))}
    assert sorted(contacts) == ["5511987650002", "5521987650001"]
    assert str(contacts["5521987650001"].id) == contact_id
    assert contacts["5521987650001"].display_name == "Ana Souza"
    assert contacts["5511987650002"].display_name == "Bruno Reis"


def test_an_existing_display_name_is_kept(wa_client: TestClient) -> None:
    deliver(wa_client, fixture("every_type"))
    renamed = fixture("every_type")
    renamed["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = "Outra"
    for change in renamed["entry"][0]["changes"]:
        for message in change["value"]["messages"]:
            message["id"] += ".novo"
    deliver(wa_client, renamed)
    with wa_client.app.state.database.sessionmaker() as session:  # type: ignore[attr-defined]
        names = sorted(str(row.display_name) for row in session.scalars(select(Contact)))
    assert names == ["Ana Souza", "Bruno Reis"]
    assert count(wa_client, Message) == 24  # the 10 renamed ids of the first entry


def test_statuses_are_stored_once_and_read_on_the_message(wa_client: TestClient) -> None:
    outbound = {
        "source": "whatsapp",
        "sender_id": "5521987650001",
        "content": "Sua simulação está pronta",
        "metadata": {"message_id": "wamid.TEST.outbound.0100"},
    }
    message_id = wa_client.post("/ingest/message", json=outbound).json()["id"]
    for _ in range(2):
        response = deliver(wa_client, fixture("statuses"))
        assert response.status_code == 200, response.text
    assert count(wa_client, MessageStatus) == 4
    detail = wa_client.get(f"/messages/{message_id}").json()
    assert [status["status"] for status in detail["statuses"]] == ["sent", "delivered", "read"]
    assert detail["statuses"][0]["payload"]["pricing"]["category"] == "service"
    with wa_client.app.state.database.sessionmaker() as session:  # type: ignore[attr-defined]
        failed = session.scalars(
            select(MessageStatus).where(MessageStatus.wamid == "wamid.TEST.outbound.0999")
        ).one()
    assert failed.status == "failed"
    assert failed.payload["errors"][0]["code"] == 131047


def test_events_are_kept_beside_the_message_they_refer_to(wa_client: TestClient) -> None:
    deliver(wa_client, fixture("every_type"))
    for _ in range(2):
        assert deliver(wa_client, fixture("events")).json()["messages"] == 0
    assert count(wa_client, MessageEvent) == 3
    assert count(wa_client, Message) == 14
    text = messages(wa_client)["wamid.TEST.text.0001"]
    detail = wa_client.get(f"/messages/{text.id}").json()
    assert detail["content"] == "Olá, quero simular um consórcio de carro"
    assert [event["kind"] for event in detail["events"]] == ["reaction", "edit", "revoke"]
    assert detail["events"][0]["payload"]["reaction"]["emoji"] == "👍"
    assert detail["events"][1]["event_wamid"] == "wamid.TEST.edit.0021"


def test_a_redelivery_stores_nothing_more(wa_client: TestClient) -> None:
    first = deliver(wa_client, fixture("every_type")).json()
    again = deliver(wa_client, fixture("every_type")).json()
    assert (first["messages"], again["messages"], again["duplicate_messages"]) == (14, 0, 14)
    assert count(wa_client, Message) == 14
    assert count(wa_client, Contact) == 2


def test_three_concurrent_redeliveries_store_each_thing_once(wa_client: TestClient) -> None:
    document = copy.deepcopy(fixture("every_type"))
    extra = fixture("statuses")["entry"][0]["changes"]
    document["entry"][1]["changes"].extend(extra)
    document["entry"][1]["changes"].extend(fixture("events")["entry"][0]["changes"])
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: deliver(wa_client, document), range(3)))
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert sum(response.json()["messages"] for response in responses) == 14
    assert (count(wa_client, Message), count(wa_client, Contact)) == (14, 2)
    assert (count(wa_client, MessageStatus), count(wa_client, MessageEvent)) == (4, 3)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"whatsapp_business_account"',
        b'{"object": "page", "entry": []}',
        b'{"entry": []}',
        b'{"object": "whatsapp_business_account", "entry": {"changes": []}}',
    ],
)
def test_what_is_not_a_delivery_is_422_and_stores_nothing(
    wa_client: TestClient, body: bytes
) -> None:
    problem = assert_problem(wa_client.post(WEBHOOK, content=body, headers=signed(body)), 422)
    assert "WhatsApp Business Account" in problem["detail"]
    assert count(wa_client, Message) == 0


def test_unknown_fields_are_kept_and_other_fields_ignored(wa_client: TestClient) -> None:
    document = fixture("statuses")
    document["novidade"] = {"futuro": True}
    value = fixture("every_type")["entry"][0]["changes"][0]["value"]
    value["messages"] = value["messages"][:1]
    value["messages"][0]["campo_novo"] = {"x": 1}
    value["messages"][0]["type"] = "hologram"
    value["messages"][0]["hologram"] = {"frames": 3}
    document["entry"][0]["changes"].append({"field": "messages", "value": value})
    response = deliver(wa_client, document)
    assert response.status_code == 200, response.text
    (stored,) = messages(wa_client).values()
    assert stored.content == "[hologram]"
    assert stored.metadata_["message"]["campo_novo"] == {"x": 1}
    assert stored.metadata_["message"]["hologram"] == {"frames": 3}


def test_a_wa_id_that_fails_the_numbering_plan_is_still_stored(wa_client: TestClient) -> None:
    document = fixture("every_type")
    document["entry"] = document["entry"][:1]
    for change in document["entry"][0]["changes"]:
        for message in change["value"]["messages"]:
            message["from"] = "99912345"
    assert deliver(wa_client, document).json()["messages"] == 10
    with wa_client.app.state.database.sessionmaker() as session:  # type: ignore[attr-defined]
        (contact,) = session.scalars(select(Contact))
    assert contact.sender_id == "99912345"


def test_the_contact_id_of_a_wa_id() -> None:
    assert whatsapp_contact_id("552187650001") == "5521987650001"
    assert whatsapp_contact_id("5521987650001") == "5521987650001"
    assert whatsapp_contact_id("99912345") == "99912345"


def test_content_of_a_message_without_its_body() -> None:
    assert content_of({"type": "text"}, "text") == "[text]"
    assert content_of({"type": "image", "image": {"id": "1"}}, "image") == "[image]"
    assert content_of({"type": "interactive", "interactive": {}}, "interactive") == "[interactive]"


def test_an_erased_persons_redelivery_stores_nothing_and_answers_200(
    wa_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(
        logging.getLogger("crm_core.whatsapp"),
        "info",
        lambda *a, **k: records.append(logging.makeLogRecord({"msg": a[0], **k.get("extra", {})})),
    )
    deliver(wa_client, fixture("every_type"))
    ana = messages(wa_client)["wamid.TEST.text.0001"].contact_id
    assert wa_client.delete(f"/contacts/{ana}").status_code == 200
    before = (count(wa_client, Message), count(wa_client, Contact))
    response = deliver(wa_client, fixture("every_type"))
    assert response.status_code == 200, response.text
    assert (response.json()["erased_messages"], response.json()["messages"]) == (10, 0)
    assert (count(wa_client, Message), count(wa_client, Contact)) == before
    events = deliver(wa_client, fixture("events")).json()
    assert events["events"] == 0
    assert count(wa_client, MessageEvent) == 0
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in records)
    assert "erased" in logged
    assert "5521987650001" not in logged
    assert "552187650001" not in logged


def test_text_no_database_holds_is_made_storable_never_refused(wa_client: TestClient) -> None:
    document = fixture("every_type")
    document["entry"] = document["entry"][:1]
    document["entry"][0]["changes"] = document["entry"][0]["changes"][:1]
    value = document["entry"][0]["changes"][0]["value"]
    value["messages"] = value["messages"][:1]
    value["messages"][0]["text"]["body"] = "oi\x00tudo \ud800bem"
    value["contacts"][0]["profile"]["name"] = "Ana\x00"
    value["statuses"] = [{"id": "wamid.TEST.x\x00", "status": "read", "nota": "\ud800"}]
    body = json.dumps(document).encode()  # \u0000 and \ud800 escapes, as JSON allows
    response = wa_client.post(WEBHOOK, content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    (stored,) = messages(wa_client).values()
    assert stored.content == "oi\ufffdtudo \ufffdbem"
    with wa_client.app.state.database.sessionmaker() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(Contact.display_name)).one() == "Ana\ufffd"
        status = session.scalars(select(MessageStatus)).one()
    assert (status.wamid, status.payload["nota"]) == ("wamid.TEST.x\ufffd", "\ufffd")


def single_text(wamid: str, body: str, **extra: Any) -> dict[str, Any]:
    document = fixture("every_type")
    document["entry"] = document["entry"][:1]
    document["entry"][0]["changes"] = document["entry"][0]["changes"][:1]
    value = document["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        {"from": "5521987650001", "id": wamid, "type": "text", "text": {"body": body}, **extra}
    ]
    return document


def test_a_wamid_stored_with_other_content_is_counted_not_stored(wa_client: TestClient) -> None:
    assert deliver(wa_client, single_text("wamid.TEST.c", "primeiro")).json()["messages"] == 1
    report = deliver(wa_client, single_text("wamid.TEST.c", "outro")).json()
    assert (report["messages"], report["conflicting_messages"]) == (0, 1)
    assert [m.content for m in messages(wa_client).values()] == ["primeiro"]


def test_a_message_past_the_metadata_limits_is_stored_without_its_object(
    wa_client: TestClient,
) -> None:
    document = single_text("wamid.TEST.big", "grande", campo_enorme="x" * 20_000)
    report = deliver(wa_client, document).json()
    assert report["messages"] == 1
    stored = messages(wa_client)["wamid.TEST.big"]
    assert stored.content == "grande"
    assert stored.metadata_["unstorable"] == ["metadata"]
    assert "message" not in stored.metadata_
    assert stored.metadata_["phone_number_id"] == "900000000000001"


def test_parts_without_an_id_are_skipped(wa_client: TestClient) -> None:
    document = single_text("wamid.TEST.ok", "ok")
    value = document["entry"][0]["changes"][0]["value"]
    value["messages"].append({"from": "5521987650001", "type": "text", "text": {"body": "?"}})
    value["messages"].append({"from": "5521987650001", "id": "wamid.TEST.r", "type": "reaction"})
    value["statuses"] = [{"status": "read"}, {"id": "wamid.TEST.ok", "status": "x" * 33}]
    report = deliver(wa_client, document).json()
    assert (report["messages"], report["skipped"], report["statuses"]) == (1, 4, 0)


def test_a_delivery_past_the_single_body_limit_is_accepted(wa_client: TestClient) -> None:
    document = fixture("statuses")
    document["entry"][0]["campo_grande"] = "x" * 3_000_000  # Meta's own limit is about 3 MB
    response = deliver(wa_client, document)
    assert response.status_code == 200, response.text
    assert count(wa_client, MessageStatus) == 4
