"""The Contacts and Deals API: pagination, filters, pipelines, stage history, LGPD, audit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_core.models import AuditEvent, Contact, Deal, Message
from crm_core.pipelines import JURIDICO, PIPELINES, RODOBENS
from crm_core.schemas.deal import DealPublic
from tests.crm_core.conftest import new_key


def ingest(
    client: TestClient, sender: str, content: str = "oi", message_id: str | None = None
) -> dict[str, Any]:
    metadata = {"message_id": message_id} if message_id else {}
    body = {"source": "whatsapp", "sender_id": sender, "content": content, "metadata": metadata}
    response = client.post("/ingest/message", json=body)
    assert response.status_code in (200, 202), response.text
    result: dict[str, Any] = response.json()
    return result


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def create_deal(client: TestClient, contact_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "contact_id": contact_id,
        "title": "Consórcio Honda CG",
        "pipeline": "rodobens",
        **extra,
    }
    response = client.post("/deals", json=body)
    assert response.status_code == 201, response.text
    deal: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/deals/{deal['id']}"
    return deal


def test_contacts_are_paginated_without_repeats_or_gaps(any_client: TestClient) -> None:
    ids = [ingest(any_client, f"55119{index:08d}")["contact_id"] for index in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = any_client.get("/contacts", params=params).json()
        seen += [contact["id"] for contact in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen)) == 7


def test_contacts_are_filtered_by_source_and_sender(any_client: TestClient) -> None:
    mobile = ingest(any_client, "5511999999999")["contact_id"]
    ingest(any_client, "5511988888888")
    found = any_client.get("/contacts", params={"source": "whatsapp", "sender_id": "551199999999"})
    assert [contact["id"] for contact in found.json()["data"]] == [mobile]
    assert any_client.get("/contacts", params={"source": "instagram"}).json()["data"] == []


def test_a_contact_comes_with_its_recent_messages(any_client: TestClient) -> None:
    contact_id = ingest(any_client, "5511999999999", "primeira")["contact_id"]
    ingest(any_client, "551199999999", "segunda")
    contact = any_client.get(f"/contacts/{contact_id}").json()
    assert contact["sender_id"] == "5511999999999"
    assert [m["content"] for m in contact["recent_messages"]] == ["segunda", "primeira"]
    assert contact["recent_messages"][0]["sender_id"] == "551199999999"


def test_a_contacts_messages_are_paginated_newest_first(any_client: TestClient) -> None:
    contact_id = ""
    for index in range(5):
        contact_id = ingest(any_client, "5511999999999", f"m{index}")["contact_id"]
    first = any_client.get(f"/contacts/{contact_id}/messages", params={"limit": 2}).json()
    second = any_client.get(
        f"/contacts/{contact_id}/messages", params={"limit": 10, "cursor": first["next_cursor"]}
    ).json()
    contents = [m["content"] for m in first["data"] + second["data"]]
    assert contents == ["m4", "m3", "m2", "m1", "m0"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("path", ["/contacts/{id}", "/contacts/{id}/messages", "/deals/{id}"])
def test_unknown_ids_are_404(client: TestClient, path: str) -> None:
    problem(client.get(path.format(id="00000000-0000-4000-8000-000000000000")), 404)


def test_a_bad_cursor_or_id_is_a_problem(client: TestClient) -> None:
    assert problem(client.get("/contacts", params={"cursor": "nope"}), 400)["type"].endswith(
        "invalid-cursor"
    )
    problem(client.get("/contacts/not-a-uuid"), 422)
    problem(client.get("/contacts", params={"limit": 0}), 422)


def test_the_pipelines_are_published(client: TestClient) -> None:
    pipelines = {p["slug"]: p for p in client.get("/pipelines").json()}
    assert set(pipelines) == {"rodobens", "juridico"}
    assert pipelines["rodobens"]["initial_stage"] == "novo"
    assert pipelines["juridico"]["initial_stage"] == "triagem"


def test_every_stage_is_reachable_from_the_first() -> None:
    for pipeline in PIPELINES.values():
        reached = {pipeline.initial}
        frontier = [pipeline.initial]
        while frontier:
            for target in pipeline.transitions.get(frontier.pop(), frozenset()):
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(pipeline.stage_slugs), pipeline.slug


def test_a_deal_moves_only_along_allowed_transitions(any_client: TestClient) -> None:
    contact_id = ingest(any_client, "5511999999999")["contact_id"]
    deal = create_deal(any_client, contact_id, amount="85000.00")
    assert deal["stage"] == RODOBENS.initial
    skipped = any_client.post(f"/deals/{deal['id']}/stage", json={"stage": "contrato"})
    assert problem(skipped, 409)["type"].endswith("invalid-stage-transition")
    for stage in ("qualificacao", "simulacao", "proposta"):
        moved = any_client.post(f"/deals/{deal['id']}/stage", json={"stage": stage})
        assert moved.status_code == 200, moved.text
    detail = any_client.get(f"/deals/{deal['id']}").json()
    assert detail["stage"] == "proposta"
    assert [(h["from_stage"], h["to_stage"]) for h in detail["history"]] == [
        (None, "novo"),
        ("novo", "qualificacao"),
        ("qualificacao", "simulacao"),
        ("simulacao", "proposta"),
    ]
    problem(any_client.post(f"/deals/{deal['id']}/stage", json={"stage": "sentenca"}), 422)


def test_a_deal_needs_a_known_pipeline_stage_and_contact(client: TestClient) -> None:
    contact_id = ingest(client, "5511999999999")["contact_id"]
    for body in (
        {"pipeline": "seguros"},
        {"pipeline": "juridico", "stage": "ganho"},
        {"contact_id": "00000000-0000-4000-8000-000000000000"},
        {"amount": "-1"},
        {"currency": "real"},
    ):
        payload = {"contact_id": contact_id, "title": "x", "pipeline": "rodobens", **body}
        problem(client.post("/deals", json=payload), 422)


def test_deals_are_filtered_and_paginated(any_client: TestClient) -> None:
    ana = ingest(any_client, "5511999999999")["contact_id"]
    bia = ingest(any_client, "5511988888888")["contact_id"]
    create_deal(any_client, ana)
    create_deal(any_client, ana, pipeline="juridico", title="Ação revisional")
    create_deal(any_client, bia, stage="proposta")

    def ids(**params: Any) -> int:
        return len(any_client.get("/deals", params=params).json()["data"])

    assert ids(pipeline="rodobens") == 2
    assert ids(pipeline="juridico", stage=JURIDICO.initial) == 1
    assert ids(contact_id=ana) == 2
    assert ids(stage="proposta") == 1
    first = any_client.get("/deals", params={"limit": 2}).json()
    rest = any_client.get("/deals", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["data"]) + len(rest["data"]) == 3
    assert rest["next_cursor"] is None


def test_export_returns_everything_and_is_audited(any_client: TestClient) -> None:
    contact_id = ingest(any_client, "5511999999999", "quero um consórcio", "wamid.1")["contact_id"]
    create_deal(any_client, contact_id, amount="1000.00")
    export = any_client.get(f"/contacts/{contact_id}/export")
    assert export.status_code == 200, export.text
    document = export.json()
    assert document["contact"]["id"] == contact_id
    assert [m["content"] for m in document["messages"]] == ["quero um consórcio"]
    assert document["deals"][0]["history"][0]["to_stage"] == "novo"
    engine = any_client.app.state.database.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        events = connection.execute(select(AuditEvent.__table__)).all()
    assert [(event.action, str(event.subject_id)) for event in events] == [
        ("contact.export", contact_id)
    ]
    assert events[0].actor != "anonymous"
    assert events[0].request_id == export.headers["x-request-id"]


def test_erasure_removes_personal_data_and_keeps_deal_figures(any_client: TestClient) -> None:
    contact_id = ingest(any_client, "5511999999999", "meu CPF é 123", "wamid.1")["contact_id"]
    deal = create_deal(any_client, contact_id, amount="85000.00", title="Consórcio da Ana")
    erased = any_client.delete(f"/contacts/{contact_id}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["messages_erased"] == 1
    engine = any_client.app.state.database.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        contact = connection.execute(select(Contact.__table__)).one()
        message = connection.execute(select(Message.__table__)).one()
        stored_deal = connection.execute(select(Deal.__table__)).one()
        actions = connection.execute(select(AuditEvent.action)).scalars().all()
    assert contact.sender_id == f"erased:{contact_id}"
    assert contact.display_name is None
    assert contact.erased_at is not None
    assert (message.content, message.sender_id, message.metadata) == ("", contact.sender_id, {})
    assert message.channel_message_id is None
    assert stored_deal.title != "Consórcio da Ana"
    assert (str(stored_deal.amount), stored_deal.stage) == ("85000.00", deal["stage"])
    assert actions == ["contact.erase"]
    # The same person writing again is a new contact.
    assert ingest(any_client, "5511999999999")["contact_id"] != contact_id


def test_the_api_needs_a_readwrite_key(client: TestClient) -> None:
    app = client.app
    ingest_only = {"Authorization": f"Bearer {new_key(app, 'ingest')}"}  # type: ignore[arg-type]
    for method, path in (("GET", "/contacts"), ("GET", "/deals"), ("GET", "/pipelines")):
        problem(client.request(method, path, headers=ingest_only), 403)
        problem(client.request(method, path, headers={"Authorization": ""}), 401)


@pytest.mark.parametrize(
    ("sent", "shown"),
    [(1234.5, "1234.50"), ("1234.5", "1234.50"), (1000, "1000.00"), ("0", "0.00"), (0.1, "0.10")],
)
def test_an_amount_is_always_shown_with_two_decimals(
    any_client: TestClient, sent: Any, shown: str
) -> None:
    contact_id = ingest(any_client, "5511999999999")["contact_id"]
    created = create_deal(any_client, contact_id, amount=sent)
    moved = any_client.post(f"/deals/{created['id']}/stage", json={"stage": "qualificacao"})
    fetched = any_client.get(f"/deals/{created['id']}")
    listed = any_client.get("/deals")
    exported = any_client.get(f"/contacts/{contact_id}/export")
    assert created["amount"] == shown
    assert moved.json()["amount"] == shown
    assert fetched.json()["amount"] == shown
    assert [deal["amount"] for deal in listed.json()["data"]] == [shown]
    assert [deal["amount"] for deal in exported.json()["deals"]] == [shown]


def test_a_deal_without_an_amount_shows_null(client: TestClient) -> None:
    contact_id = ingest(client, "5511999999999")["contact_id"]
    assert create_deal(client, contact_id)["amount"] is None


def test_the_openapi_document_says_an_amount_is_a_string() -> None:
    schema = DealPublic.model_json_schema(mode="serialization")
    shown = next(
        kind for kind in schema["properties"]["amount"]["anyOf"] if kind != {"type": "null"}
    )
    assert (shown["type"], shown["pattern"]) == ("string", r"^\d{1,12}\.\d{2}$")


def test_a_terminal_stage_has_no_next_stages_and_only_it(client: TestClient) -> None:
    for pipeline in client.get("/pipelines").json():
        for stage in pipeline["stages"]:
            where = f"{pipeline['slug']}.{stage['slug']}"
            assert stage["terminal"] == (stage["next_stages"] == []), where
    for data in PIPELINES.values():
        for declared in data.stages:
            moves_out = data.transitions.get(declared.slug, frozenset())
            assert declared.terminal == (not moves_out), f"{data.slug}.{declared.slug}"


def test_the_stages_a_deal_ends_at_are_closed_terminal_or_not(client: TestClient) -> None:
    """`terminal` says a deal never leaves the stage; `closed` says it has ended there. A lost
    sale is closed but can be reopened, so it is not terminal; a won one is both."""
    closed = {
        (pipeline["slug"], stage["slug"]): (stage["closed"], stage["terminal"])
        for pipeline in client.get("/pipelines").json()
        for stage in pipeline["stages"]
        if stage["closed"]
    }
    assert closed == {
        ("rodobens", "ganho"): (True, True),
        ("rodobens", "perdido"): (True, False),
        ("juridico", "encerrado"): (True, True),
        ("juridico", "nao_contratado"): (True, False),
    }
