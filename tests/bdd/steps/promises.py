"""Steps about OS 005's data promises (AC-14 to AC-19), each scenario on a live database.

Erasure that lasts, arrival order, cursors that never pass a late commit, text the databases
can hold, read-then-write serialized, and reused message ids: the app runs on SQLite or on a
throwaway PostgreSQL database (the root conftest's `postgres_url`), migrated by Alembic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pytest_bdd import given, parsers, then, when
from sqlalchemy import Connection, Engine, Transaction, insert, select

from crm_core.models import Base, Contact, Deal, DealStageChange, Message
from crm_core.pipelines import PIPELINES
from crm_core.schemas.ingest import IngestMessage
from crm_core.services.group_commit import GroupCommitter
from crm_core.services.ingest import store_messages
from tests.bdd.steps.ingest import PATH, _migrated_app, client_of, engine_of, fill
from tests.bdd.support.databases import Backend, live_url
from tests.bdd.support.names import names
from tests.bdd.support.serving import (
    check_clients_without_server_errors,
    check_cursors_under_writers,
)
from tests.bdd.support.text_walk import check_every_boundary

WAIT = 30.0  # seconds any background step may take before the scenario fails


@given(
    parsers.parse("o app do crm_core no banco {backend:w} migrado"),
    converters={"backend": Backend},
    target_fixture="app",
)
def migrated_app_on(
    backend: Backend,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> FastAPI:
    """The app on a live database of `backend`: a SQLite file, or a throwaway PostgreSQL
    database (skipped without a server, failed when AURORA_REQUIRE_POSTGRES demands one)."""
    return _migrated_app(live_url(backend, sqlite_url, request), monkeypatch, request, {})


def _whatsapp(sender: str, content: str, message_id: str) -> dict[str, Any]:
    return {
        "source": "whatsapp",
        "sender_id": sender,
        "content": content,
        "metadata": {"message_id": message_id},
    }


@given(
    parsers.parse('que o WhatsApp entregou a mensagem "{content}" de "{sender}" com o id "{mid}"')
)
def delivered_with_id(
    app: FastAPI,
    content: str,
    sender: str,
    mid: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    body = _whatsapp(sender, content, mid)
    response = client_of(app).post("/ingest/message", json=body, headers=api_credentials)
    assert response.status_code == 202, response.text
    scenario_ids["contact_id"] = response.json()["contact_id"]
    scenario_ids[f"receipt:{mid}"] = response.json()["id"]


@when(
    parsers.parse('o WhatsApp entrega a mensagem "{content}" de "{sender}" com o id "{mid}"'),
    target_fixture="response",
)
@when(
    parsers.parse('o WhatsApp reentrega a mensagem "{content}" de "{sender}" com o id "{mid}"'),
    target_fixture="response",
)
def redelivered(
    app: FastAPI, content: str, sender: str, mid: str, api_credentials: dict[str, str]
) -> httpx.Response:
    body = _whatsapp(sender, content, mid)
    response: httpx.Response = client_of(app).post(
        "/ingest/message", json=body, headers=api_credentials
    )
    return response


@when(
    parsers.parse(
        'o WhatsApp reentrega num lote a mensagem "{content}" de "{sender}" com o id "{mid}"'
    ),
    target_fixture="response",
)
def redelivered_in_batch(
    app: FastAPI, content: str, sender: str, mid: str, api_credentials: dict[str, str]
) -> httpx.Response:
    body = {"messages": [_whatsapp(sender, content, mid)]}
    response: httpx.Response = client_of(app).post(
        "/ingest/messages", json=body, headers=api_credentials
    )
    return response


@then(parsers.parse("o item {position:d} do lote é recusado com o status {status:d}"))
def batch_item_refused(response: httpx.Response, position: int, status: int) -> None:
    assert response.status_code == 200, response.text
    result = response.json()["results"][position - 1]
    assert result["status"] == "rejected", result
    assert result["problem"]["status"] == status, result


def _every_row(engine: Engine) -> str:
    """Every row of every table, as text."""
    with engine.connect() as connection:
        return "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in connection.execute(select(table))
        )


@then(parsers.parse('nenhuma linha do banco guarda "{texts}"'), converters={"texts": names})
def nothing_holds(app: FastAPI, texts: tuple[str, ...]) -> None:
    everything = _every_row(engine_of(app))
    for text in texts:
        assert text not in everything, f"{text!r} is still stored"


@dataclass
class Snapshot:
    """The person's rows (contact, messages, deals) and the first erasure's answer."""

    first: dict[str, Any]
    rows: str = ""


def _persons_rows(engine: Engine) -> str:
    with engine.connect() as connection:
        return "\n".join(
            repr(row)
            for model in (Contact, Message, Deal, DealStageChange)
            for row in connection.execute(select(model.__table__).order_by("id"))
        )


@when(
    parsers.parse('eu faço "DELETE {path:Path}" de novo', extra_types=PATH),
    target_fixture="response",
)
def delete_again(
    app: FastAPI,
    path: str,
    response: httpx.Response,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
    request: pytest.FixtureRequest,
) -> httpx.Response:
    snapshot = Snapshot(first=response.json(), rows=_persons_rows(engine_of(app)))
    request.node.stash[_SNAPSHOT] = snapshot
    again: httpx.Response = client_of(app).delete(fill(path, scenario_ids), headers=api_credentials)
    return again


_SNAPSHOT = pytest.StashKey[Snapshot]()


@then("a segunda eliminação diz que o contato já estava eliminado, com a data da primeira")
def second_erasure_report(response: httpx.Response, request: pytest.FixtureRequest) -> None:
    first = request.node.stash[_SNAPSHOT].first
    second = response.json()
    assert first["already_erased"] is False, first
    assert second["already_erased"] is True, second
    assert second["erased_at"] == first["erased_at"], (first, second)
    assert (second["messages_erased"], second["deals_anonymised"]) == (0, 0), second


@then("nada do contato, das mensagens e dos negócios mudou com a segunda eliminação")
def nothing_changed(app: FastAPI, request: pytest.FixtureRequest) -> None:
    assert _persons_rows(engine_of(app)) == request.node.stash[_SNAPSHOT].rows


@when(
    parsers.parse(
        'a mensagem "{content}" de "{sender}" é gravada por uma transação que fica aberta '
        'enquanto eu faço "DELETE {path:Path}"',
        extra_types=PATH,
    )
)
def message_in_flight_during_erasure(
    app: FastAPI,
    content: str,
    sender: str,
    path: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    message = IngestMessage.model_validate(_whatsapp(sender, content, "wamid.em-transito"))
    stored, go = threading.Event(), threading.Event()

    def store() -> None:
        with engine_of(app).begin() as connection:
            store_messages(connection, [message])
            stored.set()
            go.wait(WAIT)

    with ThreadPoolExecutor(2) as pool:
        storing = pool.submit(store)
        assert stored.wait(WAIT), "the message was not stored"
        erasing = pool.submit(
            client_of(app).delete, fill(path, scenario_ids), headers=api_credentials
        )
        threading.Event().wait(0.5)  # the erasure has started and met the open transaction
        go.set()
        storing.result(timeout=WAIT)
        erased = erasing.result(timeout=WAIT)
    assert erased.status_code == 200, erased.text


@when(
    parsers.parse(
        'eu envio ao "{path:Path}" um lote de "{sender}" com as mensagens "{contents}" '
        'e os ids "{mids}"',
        extra_types=PATH,
    ),
    target_fixture="response",
)
def batch_from_one_sender(
    app: FastAPI,
    path: str,
    sender: str,
    contents: str,
    mids: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> httpx.Response:
    messages = [
        _whatsapp(sender, content, mid)
        for content, mid in zip(names(contents), names(mids), strict=True)
    ]
    response: httpx.Response = client_of(app).post(
        path, json={"messages": messages}, headers=api_credentials
    )
    if response.status_code == 200:
        scenario_ids["contact_id"] = response.json()["results"][0]["contact_id"]
    return response


@then(
    parsers.parse('percorrer as mensagens do contato com limit {limit:d} traz "{contents}"'),
    converters={"contents": names},
)
def walk_messages(
    app: FastAPI,
    limit: int,
    contents: tuple[str, ...],
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = client_of(app).get(
            f"/contacts/{scenario_ids['contact_id']}/messages",
            params=params,
            headers=api_credentials,
        )
        assert page.status_code == 200, page.text
        seen += [message["content"] for message in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert tuple(seen) == contents, seen


@then(
    parsers.parse(
        'as mensagens recentes do contato são, em "GET {path:Path}", "{contents}"', extra_types=PATH
    ),
    converters={"contents": names},
)
def recent_in_detail(
    app: FastAPI,
    path: str,
    contents: tuple[str, ...],
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    detail = client_of(app).get(fill(path, scenario_ids), headers=api_credentials)
    assert detail.status_code == 200, detail.text
    got = tuple(message["content"] for message in detail.json()["recent_messages"])
    assert got == contents, got


def _exported(app: FastAPI, contact_id: str, credentials: dict[str, str]) -> tuple[str, ...]:
    export = client_of(app).get(f"/contacts/{contact_id}/export", headers=credentials)
    assert export.status_code == 200, export.text
    return tuple(message["content"] for message in export.json()["messages"])


@then(
    parsers.parse('a exportação do contato traz as mensagens "{contents}"'),
    converters={"contents": names},
)
def export_order(
    app: FastAPI,
    contents: tuple[str, ...],
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    got = _exported(app, scenario_ids["contact_id"], api_credentials)
    assert got == contents, got


@then(
    parsers.parse(
        'as mensagens "{contents}" de "{sender}", enviadas juntas a um commit em grupo, '
        "são exportadas nessa ordem"
    ),
    converters={"contents": names},
)
def group_commit_order(
    app: FastAPI, contents: tuple[str, ...], sender: str, api_credentials: dict[str, str]
) -> None:
    committer = GroupCommitter(app.state.database)
    sent = [
        IngestMessage.model_validate(_whatsapp(sender, content, f"wamid.grupo.{9 - n}"))
        for n, content in enumerate(contents)
    ]

    async def together() -> list[Any]:
        try:
            return list(await asyncio.gather(*(committer.submit(message) for message in sent)))
        finally:
            await committer.aclose()

    results = asyncio.run(together())
    assert {result.outcome for result in results} == {"accepted"}, results
    assert len({result.contact_id for result in results}) == 1, results
    got = _exported(app, str(results[0].contact_id), api_credentials)
    assert got == contents, got


@dataclass
class OpenWrite:
    """A contact written by a transaction left open, and others written through the API
    meanwhile (in threads: on SQLite they wait for the open transaction's write lock)."""

    connection: Connection
    transaction: Transaction
    others: list[Future[httpx.Response]]
    pool: ThreadPoolExecutor
    seen: list[str] = field(default_factory=list)
    end_cursor: str | None = None


@when(
    parsers.parse(
        "um contato é gravado por uma transação que fica aberta enquanto outros {count:d} "
        "contatos são gravados pela API"
    ),
    target_fixture="open_write",
)
def contact_written_late(
    app: FastAPI, count: int, api_credentials: dict[str, str], request: pytest.FixtureRequest
) -> OpenWrite:
    connection = engine_of(app).connect()
    transaction = connection.begin()
    connection.execute(
        insert(Contact).values(source="whatsapp", sender_id="5511900000001", attributes={})
    )
    pool = ThreadPoolExecutor(1)  # one after the other, as their senders send them
    others = [
        pool.submit(
            client_of(app).post,
            "/ingest/message",
            json=_whatsapp(f"55119000001{n:02d}", "oi", f"wamid.outro.{n}"),
            headers=api_credentials,
        )
        for n in range(count)
    ]
    with contextlib.suppress(TimeoutError):  # PostgreSQL commits them now; SQLite waits
        others[-1].result(timeout=2.0)
    state = OpenWrite(connection, transaction, others, pool)

    def close() -> None:
        if transaction.is_active:
            transaction.rollback()
        connection.close()
        pool.shutdown(wait=True)

    request.addfinalizer(close)
    return state


def _poll(app: FastAPI, path: str, state: OpenWrite, credentials: dict[str, str]) -> None:
    """Follow next_cursor from the state's end_cursor to the end of the list."""
    cursor = state.end_cursor
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client_of(app).get(path, params=params, headers=credentials)
        assert page.status_code == 200, page.text
        state.seen += [item["id"] for item in page.json()["data"]]
        state.end_cursor = page.json()["end_cursor"] or state.end_cursor
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return


@when(parsers.parse('eu percorro "GET {path:Path}" seguindo o next_cursor', extra_types=PATH))
def walk_while_open(
    app: FastAPI, path: str, open_write: OpenWrite, api_credentials: dict[str, str]
) -> None:
    _poll(app, path, open_write, api_credentials)


@when("a transação aberta faz commit")
def open_transaction_commits(open_write: OpenWrite) -> None:
    open_write.transaction.commit()
    for other in open_write.others:
        response = other.result(timeout=WAIT)
        assert response.status_code == 202, response.text


@when(
    parsers.parse('eu consulto "GET {path:Path}" de novo a partir do end_cursor', extra_types=PATH)
)
def poll_from_end(
    app: FastAPI, path: str, open_write: OpenWrite, api_credentials: dict[str, str]
) -> None:
    _poll(app, path, open_write, api_credentials)


@then("eu vi cada contato do banco exatamente uma vez, na ordem da lista")
def saw_each_contact_once(
    app: FastAPI, open_write: OpenWrite, api_credentials: dict[str, str]
) -> None:
    listed = client_of(app).get("/contacts", params={"limit": 200}, headers=api_credentials)
    everything = [item["id"] for item in listed.json()["data"]]
    assert len(everything) == 1 + len(open_write.others), everything
    assert open_write.seen == everything, (open_write.seen, everything)


@then(
    parsers.parse(
        'com "crm-core serve" no mesmo banco e clientes que gravam por {seconds:d} segundos, '
        "um leitor que segue o next_cursor e o end_cursor vê cada contato e cada negócio "
        "exatamente uma vez, e nenhuma leitura das mensagens perde uma mais antiga"
    )
)
def cursors_under_load(app: FastAPI, seconds: int) -> None:
    written = check_cursors_under_writers(app.state.settings.database_url, float(seconds))
    assert min(written.values()) > 0, written


@then(
    parsers.parse(
        "cada parâmetro e cada campo de texto de cada operação do esquema OpenAPI, com NUL ou um "
        "surrogate isolado, dá um problem+json 4xx"
    )
)
def every_text_boundary(app: FastAPI, api_credentials: dict[str, str]) -> None:
    client = client_of(app)
    client.headers.update(api_credentials)
    assert check_every_boundary(client) > 50


@given(
    parsers.parse('que o contato tem {count:d} negócios "{pipeline}"'), target_fixture="deal_ids"
)
def many_deals(
    app: FastAPI,
    count: int,
    pipeline: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> list[str]:
    body = {"contact_id": scenario_ids["contact_id"], "title": "negócio", "pipeline": pipeline}
    deal_ids = []
    for _ in range(count):
        response = client_of(app).post("/deals", json=body, headers=api_credentials)
        assert response.status_code == 201, response.text
        deal_ids.append(response.json()["id"])
    return deal_ids


@when(
    parsers.parse('{clients:d} clientes movem cada negócio ao mesmo tempo para "{stages}"'),
    converters={"stages": names},
    target_fixture="move_statuses",
)
def concurrent_moves(
    app: FastAPI,
    clients: int,
    stages: tuple[str, ...],
    deal_ids: list[str],
    api_credentials: dict[str, str],
) -> list[int]:
    assert len(stages) == clients

    def move(job: tuple[str, str]) -> int:
        deal_id, stage = job
        response = client_of(app).post(
            f"/deals/{deal_id}/stage", json={"stage": stage}, headers=api_credentials
        )
        return int(response.status_code)

    jobs = [(deal_id, stage) for deal_id in deal_ids for stage in stages]
    with ThreadPoolExecutor(clients * 4) as pool:
        return list(pool.map(move, jobs))


@then("cada movimento respondeu 200 ou 409")
def moves_answered(move_statuses: list[int]) -> None:
    assert set(move_statuses) <= {200, 409}, move_statuses
    assert 200 in move_statuses, move_statuses


@then(
    "o histórico de cada negócio é uma cadeia de transições permitidas que termina na etapa "
    "do negócio"
)
def coherent_histories(app: FastAPI, deal_ids: list[str], api_credentials: dict[str, str]) -> None:
    for deal_id in deal_ids:
        detail = client_of(app).get(f"/deals/{deal_id}", headers=api_credentials).json()
        history = detail["history"]
        pipeline = PIPELINES[detail["pipeline"]]
        assert history[0]["from_stage"] is None, history
        for before, after in itertools.pairwise(history):
            assert after["from_stage"] == before["to_stage"], history
            assert pipeline.allows(after["from_stage"], after["to_stage"]), history
        assert detail["stage"] == history[-1]["to_stage"], detail


@then(
    parsers.parse(
        'com "crm-core serve" no mesmo banco, {clients:d} clientes que gravam mensagens e '
        "negócios, movem negócios e listam contatos por {seconds:d} segundos não recebem "
        "nenhuma resposta 5xx"
    )
)
def many_clients(app: FastAPI, clients: int, seconds: int) -> None:
    url = app.state.settings.database_url
    answers = check_clients_without_server_errors(url, clients, float(seconds))
    assert answers > clients, answers


@then(
    parsers.parse(
        "as respostas {first:d} e {second:d} são problem+json que nomeiam a mensagem gravada "
        "na resposta {stored:d}"
    )
)
def conflicts_name_the_stored(
    api_responses: list[httpx.Response], first: int, second: int, stored: int
) -> None:
    original = api_responses[stored - 1].json()
    for position in (first, second):
        response = api_responses[position - 1]
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["stored_message"]["id"] == original["id"], problem
        assert problem["detail"], problem


@then(parsers.parse('a resposta traz o recibo da mensagem "{mid}" entregue antes'))
def receipt_of_earlier(response: httpx.Response, mid: str, scenario_ids: dict[str, str]) -> None:
    assert response.json()["id"] == scenario_ids[f"receipt:{mid}"], response.text


@then("crm_messages guarda exatamente estas mensagens, cada uma no contato do seu remetente:")
def messages_stored_exactly(app: FastAPI, datatable: list[list[str]]) -> None:
    """Every row of crm_messages, as (message id, content, sender): no row missing, none
    twice, none with another's content; and each row's contact is the contact of its sender."""
    header, *rows = datatable
    assert header == ["message_id", "conteúdo", "remetente"], header
    expected = sorted((mid, content, sender) for mid, content, sender in rows)
    query = select(
        Message.channel_message_id,
        Message.content,
        Message.sender_id,
        Message.contact_id,
        Contact.sender_id,
    ).join(Contact, Contact.id == Message.contact_id)
    with engine_of(app).connect() as connection:
        stored = connection.execute(query).all()
    assert sorted((row[0], row[1], row[2]) for row in stored) == expected, stored
    assert all(row[2] == row[4] for row in stored), "a message is filed under another contact"
    filed = {(row[2], row[3]) for row in stored}  # (sender, contact id)
    assert len(filed) == len({row[2] for row in stored}), "one sender, several contacts"
