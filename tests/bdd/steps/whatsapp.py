"""Steps about OS 006: the WhatsApp Cloud API webhook, each scenario on a live database.

The deliveries are the fixtures of tests/crm_core/fixtures/whatsapp (Meta's documented shapes,
with fake numbers and wamids), signed as Meta signs them: HMAC-SHA256 of the raw body under the
App Secret, in `X-Hub-Signature-256`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pytest_bdd import given, parsers, then, when
from sqlalchemy import select

from crm_core.models import Contact, Message, MessageEvent, MessageStatus
from tests.bdd.steps.ingest import _migrated_app, client_of, engine_of
from tests.bdd.support.databases import Backend, live_url
from tests.bdd.support.names import names
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "crm_core" / "fixtures" / "whatsapp"
WEBHOOK = "/webhooks/whatsapp"
TOKEN = "token-de-verificacao"
SECRET = "segredo-do-app-meta"


def _signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _example(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def _post(app: FastAPI, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response: httpx.Response = client_of(app).post(WEBHOOK, content=body, headers=headers)
    return response


@given(
    parsers.parse(
        "o app do crm_core no banco {backend:w} migrado com o webhook do WhatsApp configurado"
    ),
    converters={"backend": Backend},
    target_fixture="app",
)
def whatsapp_app(
    backend: Backend,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> FastAPI:
    """The app on a live database of `backend`, with the verify token and the App Secret."""
    environment = {"CRM_WHATSAPP_VERIFY_TOKEN": TOKEN, "CRM_WHATSAPP_APP_SECRET": SECRET}
    return _migrated_app(live_url(backend, sqlite_url, request), monkeypatch, request, environment)


@when(parsers.parse('a Meta faz a verificação com "{query}"'), target_fixture="response")
def handshake(app: FastAPI, query: str) -> httpx.Response:
    response: httpx.Response = client_of(app).get(f"{WEBHOOK}?{query}")
    return response


@then(parsers.parse('a resposta é o texto "{text}" em text/plain'))
def plain_text(response: httpx.Response, text: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "text/plain", response.headers
    assert response.text == text


@when(parsers.parse('a Meta entrega o exemplo "{name}" assinado'), target_fixture="response")
def deliver_signed(app: FastAPI, name: str) -> httpx.Response:
    body = _example(name)
    return _post(app, body, _signature(body))


@when(parsers.parse('a Meta entrega o exemplo "{name}" sem assinatura'), target_fixture="response")
def deliver_unsigned(app: FastAPI, name: str) -> httpx.Response:
    return _post(app, _example(name), None)


@when(
    parsers.parse('a Meta entrega o exemplo "{name}" assinado com outro segredo'),
    target_fixture="response",
)
def deliver_wrongly_signed(app: FastAPI, name: str) -> httpx.Response:
    body = _example(name)
    return _post(app, body, _signature(body, "outro-segredo"))


@when(
    parsers.parse('a Meta entrega o exemplo "{name}" com a assinatura "{signature}"'),
    target_fixture="response",
)
def deliver_with_signature(app: FastAPI, name: str, signature: str) -> httpx.Response:
    return _post(app, _example(name), signature)


@when("a Meta entrega, assinado, o corpo:", target_fixture="response")
def deliver_body(app: FastAPI, docstring: str) -> httpx.Response:
    body = docstring.encode()
    return _post(app, body, _signature(body))


@when(
    parsers.parse('a Meta entrega o exemplo "{name}" assinado {times:d} vezes ao mesmo tempo'),
    target_fixture="responses",
)
def deliver_concurrently(app: FastAPI, name: str, times: int) -> list[httpx.Response]:
    body = _example(name)
    signature = _signature(body)
    with ThreadPoolExecutor(times) as pool:
        return list(pool.map(lambda _: _post(app, body, signature), range(times)))


@then(parsers.parse("as {count:d} respostas têm o status {status:d}"))
def every_status(responses: list[httpx.Response], count: int, status: int) -> None:
    assert [response.status_code for response in responses] == [status] * count, [
        response.text for response in responses
    ]


@then(parsers.parse("as respostas somam {count:d} mensagens gravadas"))
def responses_sum(responses: list[httpx.Response], count: int) -> None:
    assert sum(response.json()["messages"] for response in responses) == count


@then(parsers.parse('a resposta diz {count:d} em "{field}"'))
def report_field(response: httpx.Response, count: int, field: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json()[field] == count, response.json()


@then("crm_messages guarda exatamente estas mensagens do WhatsApp:")
def whatsapp_messages(app: FastAPI, datatable: list[list[str]]) -> None:
    """Every row of crm_messages as (wamid, the contact's sender id, content, source)."""
    header, *rows = datatable
    assert header == ["wamid", "contato", "conteúdo"], header
    query = select(
        Message.channel_message_id, Contact.sender_id, Message.content, Message.source
    ).join(Contact, Contact.id == Message.contact_id)
    with engine_of(app).connect() as connection:
        stored = connection.execute(query).all()
    assert {row[3] for row in stored} <= {"whatsapp"}, stored
    assert sorted((row[0], row[1], row[2]) for row in stored) == sorted(
        (wamid, contact, content) for wamid, contact, content in rows
    ), stored


def _message(app: FastAPI, wamid: str) -> Message:
    with app.state.database.sessionmaker() as session:
        found: Message = session.scalars(
            select(Message).where(Message.channel_message_id == wamid)
        ).one()
        return found


def _at(document: Any, path: str) -> Any:
    for part in path.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


@then(parsers.parse('o metadata da mensagem "{wamid}" traz:'))
def metadata_holds(app: FastAPI, wamid: str, datatable: list[list[str]]) -> None:
    header, *rows = datatable
    assert header == ["campo", "valor"], header
    metadata = _message(app, wamid).metadata_
    for path, value in rows:
        assert _at(metadata, path) == json.loads(value), (path, metadata)


@then(parsers.parse('o contato "{sender}" tem o nome "{name}"'))
def contact_named(app: FastAPI, sender: str, name: str) -> None:
    with app.state.database.sessionmaker() as session:
        contact = session.scalars(select(Contact).where(Contact.sender_id == sender)).one()
    assert contact.display_name == name


@when(parsers.parse('eu leio a mensagem "{wamid}"'), target_fixture="response")
def read_message(app: FastAPI, wamid: str, api_credentials: dict[str, str]) -> httpx.Response:
    message_id = _message(app, wamid).id
    response: httpx.Response = client_of(app).get(
        f"/messages/{message_id}", headers=api_credentials
    )
    assert response.status_code == 200, response.text
    return response


@then(parsers.parse('a mensagem lida tem o conteúdo "{content}"'))
def read_content(response: httpx.Response, content: str) -> None:
    assert response.json()["content"] == content


@then(parsers.parse('os eventos da mensagem lida são "{kinds}"'), converters={"kinds": names})
def read_events(response: httpx.Response, kinds: tuple[str, ...]) -> None:
    assert tuple(event["kind"] for event in response.json()["events"]) == kinds


@then(parsers.parse('os status da mensagem lida são "{states}"'), converters={"states": names})
def read_statuses(response: httpx.Response, states: tuple[str, ...]) -> None:
    assert tuple(status["status"] for status in response.json()["statuses"]) == states


@then("crm_message_statuses guarda exatamente:")
def statuses_exactly(app: FastAPI, datatable: list[list[str]]) -> None:
    header, *rows = datatable
    assert header == ["wamid", "status"], header
    with engine_of(app).connect() as connection:
        stored = connection.execute(select(MessageStatus.wamid, MessageStatus.status)).all()
    assert sorted(tuple(row) for row in stored) == sorted((w, s) for w, s in rows), stored


@then(parsers.parse('o status "{state}" de "{wamid}" traz o erro {code:d}'))
def status_error(app: FastAPI, state: str, wamid: str, code: int) -> None:
    with app.state.database.sessionmaker() as session:
        status = session.scalars(
            select(MessageStatus).where(MessageStatus.wamid == wamid, MessageStatus.status == state)
        ).one()
    assert [error["code"] for error in status.payload["errors"]] == [code], status.payload


@then("crm_message_events guarda exatamente:")
def events_exactly(app: FastAPI, datatable: list[list[str]]) -> None:
    header, *rows = datatable
    assert header == ["evento", "mensagem", "tipo"], header
    query = select(MessageEvent.event_wamid, MessageEvent.message_wamid, MessageEvent.kind)
    with engine_of(app).connect() as connection:
        stored = connection.execute(query).all()
    assert sorted(tuple(row) for row in stored) == sorted(tuple(row) for row in rows), stored


@when(parsers.parse('eu elimino o contato da mensagem "{wamid}"'))
def erase_contact_of(app: FastAPI, wamid: str, api_credentials: dict[str, str]) -> None:
    contact_id = _message(app, wamid).contact_id
    response = client_of(app).delete(f"/contacts/{contact_id}", headers=api_credentials)
    assert response.status_code == 200, response.text


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@given("eu observo o log do webhook", target_fixture="webhook_log")
def observe_log(request: pytest.FixtureRequest) -> list[logging.LogRecord]:
    """The records of crm_core.whatsapp from now on (crm_core's loggers do not propagate)."""
    handler = _Records()
    logger = logging.getLogger("crm_core.whatsapp")
    logger.addHandler(handler)
    request.addfinalizer(lambda: logger.removeHandler(handler))
    return handler.records


@then(
    parsers.parse(
        "o log conta {messages:d} mensagens e {parts:d} status ou eventos de dados eliminados "
        'não gravados, sem "{texts}"'
    )
)
def erased_log(webhook_log: list[logging.LogRecord], messages: int, parts: int, texts: str) -> None:
    erased = [r.__dict__ for r in webhook_log if "erased" in r.getMessage()]
    assert sum(r.get("erased_messages", 0) for r in erased) == messages, erased
    assert sum(r.get("erased_parts", 0) for r in erased) == parts, erased
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in webhook_log)
    for text in names(texts):
        assert text not in logged, logged
