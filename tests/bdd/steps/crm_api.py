"""Steps about OS 005's Contacts and Deals API: pages, filters, pipelines, history, LGPD."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
from fastapi import FastAPI
from pytest_bdd import given, parsers, then, when
from sqlalchemy import select

from crm_core.models import AuditEvent, Contact, Deal, Message
from crm_core.pipelines import PIPELINES
from tests.bdd.steps.ingest import PATH, WHATSAPP_EXAMPLE, client_of, engine_of, fill
from tests.bdd.support.names import names


def _ingest(app: FastAPI, sender: str, content: str, credentials: dict[str, str]) -> str:
    body = {"source": "whatsapp", "sender_id": sender, "content": content}
    response = client_of(app).post("/ingest/message", json=body, headers=credentials)
    assert response.status_code in (200, 202), response.text
    contact_id: str = response.json()["contact_id"]
    return contact_id


@given(
    parsers.parse('que o WhatsApp entregou mensagens de "{senders}"'),
    converters={"senders": names},
)
def delivered_messages(
    app: FastAPI,
    senders: tuple[str, ...],
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    contact_ids = [_ingest(app, sender, "oi", api_credentials) for sender in senders]
    scenario_ids["contact_id"] = contact_ids[0]


@given(parsers.parse('que o WhatsApp entregou a mensagem "{content}" de "{sender}"'))
def delivered_message(
    app: FastAPI,
    content: str,
    sender: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    scenario_ids["contact_id"] = _ingest(app, sender, content, api_credentials)


@given(parsers.parse('que o contato tem um negócio "{pipeline}" de "{amount}"'))
def contact_has_deal(
    app: FastAPI,
    pipeline: str,
    amount: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    body = {
        "contact_id": scenario_ids["contact_id"],
        "title": "Negócio do cenário",
        "pipeline": pipeline,
        "amount": amount,
    }
    response = client_of(app).post("/deals", json=body, headers=api_credentials)
    assert response.status_code == 201, response.text
    scenario_ids["deal_id"] = response.json()["id"]


@when(
    parsers.parse('eu faço "{method:w} {path:Path}"', extra_types=PATH), target_fixture="response"
)
def call(
    app: FastAPI,
    method: str,
    path: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> httpx.Response:
    response: httpx.Response = client_of(app).request(
        method, fill(path, scenario_ids), headers=api_credentials
    )
    return response


@when(
    parsers.parse('eu faço "{method:w} {path:Path}" com o corpo:', extra_types=PATH),
    target_fixture="response",
)
def call_with_body(
    app: FastAPI,
    method: str,
    path: str,
    docstring: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> httpx.Response:
    response: httpx.Response = client_of(app).request(
        method,
        fill(path, scenario_ids),
        content=fill(docstring, scenario_ids).encode(),
        headers={**api_credentials, "content-type": "application/json"},
    )
    if path == "/deals" and response.status_code == 201:
        scenario_ids["deal_id"] = response.json()["id"]
    return response


@when(
    parsers.parse(
        'eu faço "{method:w} {path:Path}" com a autorização "{authorization}"', extra_types=PATH
    ),
    target_fixture="response",
)
def call_with_authorization(
    app: FastAPI, method: str, path: str, authorization: str, api_credentials: dict[str, str]
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if authorization == "a chave do cenário":
        headers.update(api_credentials)
    elif authorization != "nenhuma":
        headers["Authorization"] = authorization
    body = json.dumps(WHATSAPP_EXAMPLE).encode() if method == "POST" else None
    response: httpx.Response = client_of(app).request(method, path, content=body, headers=headers)
    return response


@then(
    parsers.parse(
        'percorrer "GET {path:Path}" com limit {limit:d} traz os {count:d} contatos, '
        "sem repetir nenhum",
        extra_types=PATH,
    )
)
def walk_pages(
    app: FastAPI, path: str, limit: int, count: int, api_credentials: dict[str, str]
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = client_of(app).get(path, params=params, headers=api_credentials)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        pages += 1
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == count, seen
    assert pages == -(-count // limit), pages


@then(parsers.parse("a resposta lista {count:d} item(ns)"))
def lists_items(response: httpx.Response, count: int) -> None:
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == count, response.json()


@then("a resposta tem um next_cursor")
def has_next_cursor(response: httpx.Response) -> None:
    assert response.json()["next_cursor"], response.json()


@then(
    parsers.parse('as mensagens recentes do contato são "{contents}"'),
    converters={"contents": names},
)
def recent_messages(response: httpx.Response, contents: tuple[str, ...]) -> None:
    got = tuple(message["content"] for message in response.json()["recent_messages"])
    assert got == contents, got


@then(parsers.parse('o negócio está na etapa "{stage}"'))
def deal_stage(response: httpx.Response, stage: str) -> None:
    assert response.json()["stage"] == stage, response.json()


@then(parsers.parse('o histórico do negócio é "{stages}"'), converters={"stages": names})
def deal_history(response: httpx.Response, stages: tuple[str, ...]) -> None:
    history = response.json()["history"]
    assert tuple(change["to_stage"] for change in history) == stages, history
    assert [change["from_stage"] for change in history] == [None, *stages[:-1]], history


@then(
    parsers.parse('o pipeline "{slug}" tem as etapas "{stages}" nessa ordem'),
    converters={"stages": names},
)
def pipeline_stages(response: httpx.Response, slug: str, stages: tuple[str, ...]) -> None:
    assert PIPELINES[slug].stage_slugs == stages
    published = {pipeline["slug"]: pipeline for pipeline in response.json()}
    assert tuple(stage["slug"] for stage in published[slug]["stages"]) == stages


@then(
    parsers.parse('no pipeline "{slug}" a etapa "{origin}" só pode ir para "{targets}"'),
    converters={"targets": names},
)
def pipeline_moves(
    response: httpx.Response, slug: str, origin: str, targets: tuple[str, ...]
) -> None:
    assert PIPELINES[slug].transitions[origin] == frozenset(targets)
    published = {pipeline["slug"]: pipeline for pipeline in response.json()}
    stage = next(s for s in published[slug]["stages"] if s["slug"] == origin)
    assert set(stage["next_stages"]) == set(targets), stage


@then(
    parsers.parse('a exportação traz o contato, a mensagem "{content}" e o negócio com o histórico')
)
def export_has_everything(
    response: httpx.Response, content: str, scenario_ids: dict[str, str]
) -> None:
    document = response.json()
    assert document["contact"]["id"] == scenario_ids["contact_id"]
    assert [message["content"] for message in document["messages"]] == [content]
    assert [deal["id"] for deal in document["deals"]] == [scenario_ids["deal_id"]]
    assert document["deals"][0]["history"][0]["to_stage"] == document["deals"][0]["stage"]


@then("o contato gravado não tem mais nome, remetente nem conteúdo de mensagem")
def contact_erased(app: FastAPI, scenario_ids: dict[str, str]) -> None:
    with engine_of(app).connect() as connection:
        contact = connection.execute(select(Contact.__table__)).one()
        messages = connection.execute(select(Message.__table__)).all()
    assert str(contact.id) == scenario_ids["contact_id"]
    assert contact.display_name is None
    assert contact.sender_id == f"erased:{contact.id}"
    assert contact.erased_at is not None
    for message in messages:
        assert (message.content, message.metadata, message.channel_message_id) == ("", {}, None)
        assert message.sender_id == contact.sender_id


@then(parsers.parse('o negócio gravado mantém o valor "{amount}" e a etapa "{stage}"'))
def deal_kept(app: FastAPI, amount: str, stage: str) -> None:
    with engine_of(app).connect() as connection:
        deal = connection.execute(select(Deal.__table__)).one()
    assert (Decimal(deal.amount), deal.stage) == (Decimal(amount), stage)
    assert deal.title == "(anonimizado)"


@then(
    parsers.parse('o log de auditoria registra "{actions}" do contato com a chave do cenário'),
    converters={"actions": names},
)
def audited(app: FastAPI, actions: tuple[str, ...], scenario_ids: dict[str, str]) -> None:
    query = select(AuditEvent.action, AuditEvent.subject_id, AuditEvent.actor).order_by(
        AuditEvent.at, AuditEvent.id
    )
    with engine_of(app).connect() as connection:
        events = connection.execute(query).all()
    assert tuple(event.action for event in events) == actions, events
    assert {str(event.subject_id) for event in events} == {scenario_ids["contact_id"]}
    assert {event.actor for event in events} == {app.state.scenario_key_id}
