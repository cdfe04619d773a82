"""Steps about OS 005's ingest: persistence, contacts, idempotency, batches, keys, signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pytest_bdd import given, parsers, then, when
from sqlalchemy import Engine, func, insert, select, text

from crm_core.config import Settings, get_settings
from crm_core.database import Database
from crm_core.main import create_app
from crm_core.models import ApiKey, Contact, IdempotencyKey, Message
from crm_core.models.base import utcnow
from crm_core.models.idempotency_key import PROCESSING
from crm_core.schemas.ingest import IngestMessage
from crm_core.services import idempotency
from crm_core.services.api_keys import create_key
from crm_core.services.group_commit import store_batch
from tests.bdd.support.databases import DatabaseUnderTest, LiveDatabase, alembic_config

WHATSAPP_EXAMPLE: dict[str, Any] = {
    "source": "whatsapp",
    "sender_id": "5511999999999",
    "content": "teste",
    "metadata": {"message_id": "wamid.HBgNNTUxMTk5OTk5OTk5ORUCABEYEjQ"},
}
PARALLEL = 50


class _PathType:
    """A parse type: `pattern` is what it matches, calling it converts the text."""

    pattern = r'/[^"\s]*'

    def __call__(self, text: str) -> str:
        return text


PATH = {"Path": _PathType()}
"""A request path in a step (`"/ingest/message"`): a slash, then no quote and no space."""


def fill(template: str, ids: dict[str, str]) -> str:
    """Put the ids the scenario learnt in place of `{contact_id}`, `{deal_id}`."""
    for name, value in ids.items():
        template = template.replace("{" + name + "}", value)
    assert not re.search(r"\{[a-z_]+_id\}", template), f"an id this scenario has not: {template}"
    return template


def client_of(app: FastAPI) -> TestClient:
    client: TestClient = app.state.scenario_client
    return client


def engine_of(app: FastAPI) -> Engine:
    engine: Engine = app.state.database.engine
    return engine


def _migrated_app(
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    environment: dict[str, str],
) -> FastAPI:
    """create_app() as `uvicorn crm_core.main:app` runs it, on a SQLite file migrated by
    `alembic upgrade head`; API keys are checked on every request (no cache), so a revocation
    takes effect at once."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CRM_API_KEY_CACHE_SECONDS", "0")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    monkeypatch.setattr(sys, "path", list(sys.path))  # alembic's prepend_sys_path
    command.upgrade(alembic_config(), "head")
    app = create_app()
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    app.state.scenario_client = client
    request.addfinalizer(lambda: client.__exit__(None, None, None))
    request.addfinalizer(app.state.database.dispose)
    return app


@given("o app do crm_core com o banco migrado", target_fixture="app")
def migrated_app(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> FastAPI:
    return _migrated_app(sqlite_url, monkeypatch, request, {})


@given(
    parsers.parse(
        'o app do crm_core com o banco migrado e o segredo "{secret}" para a origem "{source}"'
    ),
    target_fixture="app",
)
def migrated_app_with_secret(
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    secret: str,
    source: str,
) -> FastAPI:
    app = _migrated_app(
        sqlite_url, monkeypatch, request, {"CRM_SOURCE_SECRETS": json.dumps({source: secret})}
    )
    app.state.scenario_secret = secret
    return app


@given(parsers.parse('uma chave de API de escopo "{scope}"'))
def api_key_of_scope(app: FastAPI, scope: str, api_credentials: dict[str, str]) -> None:
    with app.state.database.sessionmaker() as session:
        key, token = create_key(session, scope, f"cenário {scope}")
    api_credentials["Authorization"] = f"Bearer {token}"
    app.state.scenario_key_id = str(key.id)


def _post(
    app: FastAPI,
    path: str,
    content: bytes,
    headers: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    response: httpx.Response = client_of(app).post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )
    api_responses.append(response)
    return response


@when(
    parsers.parse('eu envio ao "{path:Path}" o corpo:', extra_types=PATH), target_fixture="response"
)
def post_body(
    app: FastAPI,
    path: str,
    docstring: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
    scenario_ids: dict[str, str],
) -> httpx.Response:
    body = fill(docstring, scenario_ids).encode()
    return _post(app, path, body, api_credentials, api_responses)


@when(
    parsers.parse('eu envio {times:d} vezes ao "{path:Path}" o corpo:', extra_types=PATH),
    target_fixture="response",
)
def post_body_times(
    app: FastAPI,
    times: int,
    path: str,
    docstring: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    for _ in range(times):
        response = _post(app, path, docstring.encode(), api_credentials, api_responses)
    return response


@when(
    parsers.parse(
        'eu envio ao "{path:Path}" com a Idempotency-Key "{key}" o corpo:', extra_types=PATH
    ),
    target_fixture="response",
)
def post_with_key(
    app: FastAPI,
    path: str,
    key: str,
    docstring: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    headers = {**api_credentials, "Idempotency-Key": key}
    return _post(app, path, docstring.encode(), headers, api_responses)


@when(
    parsers.parse(
        'eu envio ao "{path:Path}" com a Idempotency-Key "{key}" o exemplo WhatsApp',
        extra_types=PATH,
    ),
    target_fixture="response",
)
def post_example_with_key(
    app: FastAPI,
    path: str,
    key: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    headers = {**api_credentials, "Idempotency-Key": key}
    return _post(app, path, json.dumps(WHATSAPP_EXAMPLE).encode(), headers, api_responses)


@when(
    parsers.parse('eu envio ao "{path:Path}" o exemplo WhatsApp', extra_types=PATH),
    target_fixture="response",
)
def post_example(
    app: FastAPI,
    path: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    return _post(app, path, json.dumps(WHATSAPP_EXAMPLE).encode(), api_credentials, api_responses)


@when(
    parsers.parse(
        'eu envio ao "{path:Path}" uma mensagem do WhatsApp de "{sender}"', extra_types=PATH
    ),
    target_fixture="response",
)
def post_whatsapp_from(
    app: FastAPI,
    path: str,
    sender: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    body = {"source": "whatsapp", "sender_id": sender, "content": f"oi de {sender}"}
    return _post(app, path, json.dumps(body).encode(), api_credentials, api_responses)


@when(
    parsers.parse(
        'eu envio ao "{path:Path}" o exemplo WhatsApp com a assinatura {kind:w}', extra_types=PATH
    ),
    target_fixture="response",
)
def post_signed_example(
    app: FastAPI,
    path: str,
    kind: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    body = json.dumps(WHATSAPP_EXAMPLE).encode()
    secrets = {"correta": app.state.scenario_secret, "errada": "outro-segredo"}
    headers = dict(api_credentials)
    if kind != "ausente":
        digest = hmac.new(secrets[kind].encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return _post(app, path, body, headers, api_responses)


@when(
    parsers.parse(
        'eu envio ao "{path:Path}" um lote de {count:d} mensagens distintas', extra_types=PATH
    ),
    target_fixture="response",
)
def post_batch(
    app: FastAPI,
    path: str,
    count: int,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    return _post(app, path, _batch(count), api_credentials, api_responses)


def _batch(count: int) -> bytes:
    messages = [
        {
            "source": "whatsapp",
            "sender_id": f"55119{index:08d}",
            "content": f"mensagem {index}",
            "metadata": {"message_id": f"wamid.lote.{index}"},
        }
        for index in range(count)
    ]
    return json.dumps({"messages": messages}).encode()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


_EXAMPLE_PREFIX = b'{"source":"whatsapp","sender_id":"5511999999999","content":"'
OUT_OF_BOUNDS: dict[str, tuple[str, bytes]] = {
    "NUL no conteúdo": ("/ingest/message", _EXAMPLE_PREFIX + b'a\\u0000b"}'),
    "UTF-8 inválido": ("/ingest/message", _EXAMPLE_PREFIX + b'\xff\xfe"}'),
    "metadata com 9 níveis": (
        "/ingest/message",
        json.dumps({**WHATSAPP_EXAMPLE, "metadata": _nested(9)}).encode(),
    ),
    "metadata acima de 16 KiB": (
        "/ingest/message",
        json.dumps({**WHATSAPP_EXAMPLE, "metadata": {"blob": "x" * 16_384}}).encode(),
    ),
    "corpo acima de 1 MiB": (
        "/ingest/message",
        json.dumps({**WHATSAPP_EXAMPLE, "content": "x" * 1_100_000}).encode(),
    ),
    "lote de 1001 mensagens": ("/ingest/messages", _batch(1001)),
}


@when(parsers.parse("eu envio ao ingest um corpo com {case}"), target_fixture="response")
def post_out_of_bounds(
    app: FastAPI,
    case: str,
    api_credentials: dict[str, str],
    api_responses: list[httpx.Response],
) -> httpx.Response:
    path, body = OUT_OF_BOUNDS[case]
    return _post(app, path, body, api_credentials, api_responses)


@given(
    parsers.parse(
        'que uma requisição com a Idempotency-Key "{key}" e o exemplo WhatsApp ainda está em '
        "andamento"
    )
)
def request_in_progress(app: FastAPI, key: str) -> None:
    """The row the first request commits before its work starts (crm_core.services.idempotency)."""
    fingerprint = idempotency.fingerprint(
        "POST", "/ingest/message", IngestMessage.model_validate(WHATSAPP_EXAMPLE).model_dump()
    )
    with engine_of(app).begin() as connection:
        connection.execute(
            insert(IdempotencyKey).values(
                id=uuid.uuid4(),
                principal=app.state.scenario_key_id,
                key=key,
                fingerprint=fingerprint,
                state=PROCESSING,
                created_at=utcnow(),
            )
        )


@when(
    parsers.parse('eu crio uma chave de API de escopo "{scope}" com "crm-core keys create"'),
    target_fixture="cli_key",
)
def cli_create_key(app: FastAPI, scope: str, api_credentials: dict[str, str]) -> dict[str, str]:
    result = _crm_core(app, "keys", "create", "--scope", scope, "--name", "cenário")
    token = re.search(r"^key:\s+(\S+)$", result.stdout, re.MULTILINE)
    key_id = re.search(r"^id:\s+(\S+)$", result.stdout, re.MULTILINE)
    assert token is not None, result.stdout
    assert key_id is not None, result.stdout
    api_credentials["Authorization"] = f"Bearer {token[1]}"
    return {"id": key_id[1], "token": token[1]}


@when('eu revogo a chave com "crm-core keys revoke"')
def cli_revoke_key(app: FastAPI, cli_key: dict[str, str]) -> None:
    result = _crm_core(app, "keys", "revoke", cli_key["id"])
    assert f"revoked {cli_key['id']}" in result.stdout, result.stdout


def _crm_core(app: FastAPI, *args: str) -> subprocess.CompletedProcess[str]:
    url = app.state.settings.database_url
    result = subprocess.run(
        [sys.executable, "-m", "crm_core.cli", *args],
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@then('a tabela "crm_api_keys" guarda só o hash SHA-256 da chave')
def key_stored_hashed(app: FastAPI, cli_key: dict[str, str]) -> None:
    with engine_of(app).connect() as connection:
        rows = [tuple(row) for row in connection.execute(select(ApiKey.__table__)).all()]
    assert len(rows) == 1, rows
    assert not any(cli_key["token"] in str(value) for value in rows[0]), "the key is stored"
    with engine_of(app).connect() as connection:
        stored = connection.execute(select(ApiKey.secret_hash)).scalar_one()
    assert stored == hashlib.sha256(cli_key["token"].encode()).hexdigest()


@then(parsers.parse('a tabela "{table}" do app tem {count:d} linha(s)'))
def table_has_rows(app: FastAPI, table: str, count: int) -> None:
    with engine_of(app).connect() as connection:
        found = connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
    assert found == count, f"{table} has {found} rows, not {count}"


@then(
    "a mensagem gravada tem o id e o contato do recibo, o conteúdo, o metadata e o message_id "
    "enviados"
)
def stored_message_matches(app: FastAPI, response: httpx.Response) -> None:
    receipt = response.json()
    sent = json.loads(response.request.content)
    with engine_of(app).connect() as connection:
        message = connection.execute(select(Message.__table__)).one()
        contact = connection.execute(select(Contact.__table__)).one()
    assert str(message.id) == receipt["id"]
    assert str(message.contact_id) == receipt["contact_id"] == str(contact.id)
    assert (message.source, message.sender_id) == (sent["source"], sent["sender_id"])
    assert message.content == sent["content"]
    assert message.metadata == sent["metadata"]
    assert message.channel_message_id == sent["metadata"]["message_id"]


@then(parsers.parse('o contato gravado tem o remetente "{sender}"'))
def stored_contact_sender(app: FastAPI, sender: str) -> None:
    with engine_of(app).connect() as connection:
        senders = connection.execute(select(Contact.sender_id)).scalars().all()
    assert senders == [sender], senders


@then(parsers.parse('as respostas tiveram os status "{statuses}"'))
def responses_statuses(api_responses: list[httpx.Response], statuses: str) -> None:
    got = [response.status_code for response in api_responses]
    assert got == [int(status) for status in statuses.split(",")], [
        (r.status_code, r.text[:200]) for r in api_responses
    ]


@then("as respostas trazem o mesmo recibo")
def same_receipt(api_responses: list[httpx.Response]) -> None:
    receipts = [response.json() for response in api_responses]
    assert all(receipt == receipts[0] for receipt in receipts), receipts


@then(parsers.parse("as respostas {first:d} e {second:d} trazem o mesmo recibo"))
def same_receipt_of(api_responses: list[httpx.Response], first: int, second: int) -> None:
    assert api_responses[first - 1].json() == api_responses[second - 1].json()


@then("as respostas trazem o mesmo contact_id")
def same_contact(api_responses: list[httpx.Response]) -> None:
    contacts = {response.json()["contact_id"] for response in api_responses}
    assert len(contacts) == 1, contacts


@then(parsers.parse('os resultados por item são "{statuses}"'))
def batch_statuses(response: httpx.Response, statuses: str) -> None:
    got = [item["status"] for item in response.json()["results"]]
    assert got == [status.strip() for status in statuses.split(",")], response.json()


@then(parsers.parse('o item {position:d} rejeitado traz um problem+json que aponta "{pointer}"'))
def rejected_item_points(response: httpx.Response, position: int, pointer: str) -> None:
    problem = response.json()["results"][position - 1]["problem"]
    assert {"type", "title", "status", "detail"} <= problem.keys(), problem
    assert pointer in {error["pointer"] for error in problem["errors"]}, problem


# Concurrency: the database's unique constraints decide which of 50 equal requests wins.


def _live_app(database: DatabaseUnderTest, request: pytest.FixtureRequest) -> TestClient:
    app = create_app(Settings(database_url=database.url, api_key_cache_seconds=5))
    request.addfinalizer(app.state.database.dispose)
    with app.state.database.sessionmaker() as session:
        token = create_key(session, "ingest", "concorrência")[1]
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _offline(database: DatabaseUnderTest, what: str) -> bool:
    if isinstance(database, LiveDatabase):
        return False
    uniques = {
        (table, unique.columns)
        for table in ("crm_messages", "crm_idempotency_keys")
        for unique in database.catalog().table(table).unique_constraints
    }
    assert ("crm_messages", ("source", "channel_message_id")) in uniques, uniques
    assert ("crm_idempotency_keys", ("principal", "key")) in uniques, uniques
    print(f"offline: {what}: checked the UNIQUE constraints that decide it in the PostgreSQL DDL")
    return True


def _messages_with(engine: Engine, content: str) -> int:
    query = select(func.count()).select_from(Message).where(Message.content == content)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


@then(
    parsers.parse(
        "{count:d} requisições HTTP paralelas idênticas com o mesmo message_id gravam "
        "exatamente 1 mensagem"
    )
)
def parallel_same_message_id(
    database: DatabaseUnderTest, request: pytest.FixtureRequest, count: int
) -> None:
    if _offline(database, "parallel requests with one message_id"):
        return
    body = {**WHATSAPP_EXAMPLE, "content": "paralelo-message-id"}
    with _live_app(database, request) as client, ThreadPoolExecutor(count) as pool:
        responses = list(
            pool.map(lambda _: client.post("/ingest/message", json=body), range(count))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * (count - 1) + [202], statuses
    assert len({response.json()["id"] for response in responses}) == 1
    assert _messages_with(client.app.state.database.engine, body["content"]) == 1  # type: ignore[attr-defined]


@then(
    parsers.parse(
        "{count:d} requisições HTTP paralelas idênticas com a mesma Idempotency-Key gravam "
        "exatamente 1 mensagem"
    )
)
def parallel_same_idempotency_key(
    database: DatabaseUnderTest, request: pytest.FixtureRequest, count: int
) -> None:
    if _offline(database, "parallel requests with one Idempotency-Key"):
        return
    body = {"source": "whatsapp", "sender_id": "5511999999999", "content": "paralelo-chave"}
    headers = {"Idempotency-Key": "paralelo-1"}
    with _live_app(database, request) as client, ThreadPoolExecutor(count) as pool:
        responses = list(
            pool.map(
                lambda _: client.post("/ingest/message", json=body, headers=headers), range(count)
            )
        )
    statuses = [response.status_code for response in responses]
    assert statuses.count(202) == 1, statuses
    assert set(statuses) <= {200, 202, 409}, statuses
    assert _messages_with(client.app.state.database.engine, body["content"]) == 1  # type: ignore[attr-defined]


@then(
    parsers.parse(
        "{count:d} transações paralelas com a mesma mensagem gravam exatamente 1 mensagem"
    )
)
def parallel_transactions(database: DatabaseUnderTest, count: int) -> None:
    if _offline(database, "parallel transactions"):
        return
    assert isinstance(database, LiveDatabase)
    body = {**WHATSAPP_EXAMPLE, "content": "paralelo-transações"}
    body["metadata"] = {"message_id": "wamid.transacoes"}
    message = IngestMessage.model_validate(body)
    target = Database(database.engine)
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda _: store_batch(target, [message])[0], range(count)))
    assert sum(not result.duplicate for result in results) == 1
    assert len({result.id for result in results}) == 1
    assert _messages_with(database.engine, body["content"]) == 1
