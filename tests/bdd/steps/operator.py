"""Steps of OS 005's operator criteria (AC-20 to AC-24): amounts shown one way, stages that
say whether a deal ended there, bodies the server cannot read refused with 415 or 413 (even
by a client that writes the whole body first), the command line answering a mistake with one
line, senders read as people and WhatsApp write them, and the documentation served offline
with the key it needs."""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from pytest_bdd import given, parsers, then, when
from sqlalchemy.engine import make_url

from crm_core.config import Settings
from crm_core.main import create_app
from tests.bdd.steps.ingest import PATH, WHATSAPP_EXAMPLE, client_of
from tests.bdd.support.databases import Backend, live_url
from tests.bdd.support.live_server import LiveServer, chunked, live_server, message, raw_exchange
from tests.bdd.support.names import names
from tests.bdd.support.serving import BIN, free_port
from tests.conftest import REPO_ROOT

# AC-20: amounts and stages


@then(
    parsers.parse(
        'o valor do negócio é "{amount}" na resposta e em cada leitura dele: '
        '"GET /deals/{{deal_id}}", "GET /deals", a mudança para a etapa "{stage}" e a '
        "exportação do contato"
    )
)
def amount_everywhere(
    app: FastAPI,
    response: httpx.Response,
    amount: str,
    stage: str,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> None:
    client = client_of(app)
    deal_id, contact_id = scenario_ids["deal_id"], scenario_ids["contact_id"]
    shown = {"POST /deals": response.json()["amount"]}
    read = client.get(f"/deals/{deal_id}", headers=api_credentials)
    shown["GET /deals/{id}"] = read.json()["amount"]
    listed = client.get("/deals", params={"contact_id": contact_id}, headers=api_credentials)
    shown["GET /deals"] = next(d["amount"] for d in listed.json()["data"] if d["id"] == deal_id)
    moved = client.post(f"/deals/{deal_id}/stage", json={"stage": stage}, headers=api_credentials)
    assert moved.status_code == 200, moved.text
    shown["POST /deals/{id}/stage"] = moved.json()["amount"]
    export = client.get(f"/contacts/{contact_id}/export", headers=api_credentials)
    shown["GET /contacts/{id}/export"] = next(
        d["amount"] for d in export.json()["deals"] if d["id"] == deal_id
    )
    assert all(value == amount for value in shown.values()), shown
    assert Decimal(amount) == Decimal(json.loads(response.request.content)["amount"])


def _stages(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{pipeline['slug']}.{stage['slug']}", stage)
        for pipeline in response.json()
        for stage in pipeline["stages"]
    ]


@then('toda etapa sem próximas etapas é "terminal", e só ela')
def terminal_iff_no_next(response: httpx.Response) -> None:
    wrong = [
        where
        for where, stage in _stages(response)
        if stage["terminal"] != (stage["next_stages"] == [])
    ]
    assert not wrong, wrong
    assert any(stage["terminal"] for _, stage in _stages(response))


@then(
    parsers.parse('as etapas encerradas ("closed") são "{stages}"'),
    converters={"stages": names},
)
def closed_stages(response: httpx.Response, stages: tuple[str, ...]) -> None:
    closed = {where for where, stage in _stages(response) if stage["closed"]}
    assert closed == set(stages), closed
    terminal = {where for where, stage in _stages(response) if stage["terminal"]}
    assert terminal <= closed, terminal - closed


# AC-21: a content coding the server does not decode


def _coded(body: bytes, coding: str) -> bytes:
    """`body` in the content coding named (RFC 9110 §8.4.1); a coding this module has no
    encoder for (br) is sent as it is, still labelled: the server must refuse it unread."""
    if coding == "gzip":
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    return body


@when(
    parsers.parse(
        'eu envio a "{path:Path}" o exemplo WhatsApp com Content-Encoding "{coding}"',
        extra_types=PATH,
    ),
    target_fixture="response",
)
def post_coded(
    app: FastAPI, path: str, coding: str, api_credentials: dict[str, str]
) -> httpx.Response:
    document: dict[str, Any] = dict(WHATSAPP_EXAMPLE)
    if path == "/ingest/messages":
        document = {"messages": [WHATSAPP_EXAMPLE]}
    body = _coded(json.dumps(document).encode(), coding)
    headers = {**api_credentials, "content-type": "application/json", "content-encoding": coding}
    response: httpx.Response = client_of(app).post(path, content=body, headers=headers)
    return response


@then(parsers.parse('a resposta tem o cabeçalho "{name}" com o valor "{value}"'))
def response_header(response: httpx.Response, name: str, value: str) -> None:
    assert response.headers.get(name) == value, dict(response.headers)


# AC-22: the command line


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str


@when(parsers.parse('eu rodo "crm-core {arguments}"'), target_fixture="finished")
def run_cli(arguments: str, sqlite_url: str) -> Finished:
    result = subprocess.run(
        [str(BIN / "crm-core"), *arguments.split()],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Finished(result.returncode, result.stdout, result.stderr)


@then(parsers.parse("o comando termina com o código {code:d}"))
def exit_code(finished: Finished, code: int) -> None:
    assert finished.code == code, finished


@then(parsers.parse('a saída de erro é uma linha só, que cita "{word}", sem traceback'))
def one_line(finished: Finished, word: str) -> None:
    lines = finished.stderr.splitlines()
    assert len(lines) == 1, finished.stderr
    assert word in lines[0], lines[0]
    assert "Traceback" not in finished.stderr + finished.stdout


@dataclass
class Served:
    url: str
    secret: str
    port: int = 0
    lines: list[str] = field(default_factory=list)


@given(
    parsers.parse(
        'a URL de um banco {backend:w} vivo, com a senha "{secret}" quando o banco tem senha'
    ),
    converters={"backend": Backend},
    target_fixture="served",
)
def database_with_password(
    backend: Backend, secret: str, sqlite_url: str, request: pytest.FixtureRequest
) -> Served:
    url = live_url(backend, sqlite_url, request)
    if backend is Backend.POSTGRESQL:
        # the test server trusts loopback, so any password is accepted and none is needed
        url = make_url(url).set(password=secret).render_as_string(hide_password=False)
    return Served(url, secret)


@when(parsers.parse('eu inicio "crm-core serve --workers {workers:d}" nesse banco'))
def start_serve(served: Served, workers: int) -> None:
    served.port = free_port()
    process = subprocess.Popen(
        [str(BIN / "crm-core"), "serve", "--port", str(served.port), "--workers", str(workers)],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": served.url, "CRM_LOG_LEVEL": "INFO"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    try:
        while sum("listening on" in line for line in served.lines) < workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{workers} workers did not say they listen in 60 s: {served.lines}")
            try:
                served.lines.append(lines.get(timeout=remaining))
            except queue.Empty:
                continue
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        while not lines.empty():
            served.lines.append(lines.get())


@then(
    parsers.parse(
        "cada um dos {workers:d} workers registra uma linha com o endereço em que escuta, o "
        "número de workers e o banco"
    )
)
def listening_lines(served: Served, workers: int) -> None:
    entries = []
    for line in served.lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "listening on" in str(entry.get("message", "")):
            entries.append(entry)
    assert sorted(entry["worker"] for entry in entries) == list(range(1, workers + 1)), entries
    shown = make_url(served.url).render_as_string(hide_password=True)
    for entry in entries:
        assert f"http://127.0.0.1:{served.port}" in entry["message"], entry
        assert entry["workers"] == workers, entry
        # the backend (the driver may be named), then user, "***" for a password, host, database
        scheme, _, rest = entry["database"].partition("://")
        assert scheme.split("+")[0] == shown.partition("://")[0].split("+")[0], entry
        assert rest == shown.partition("://")[2], entry


@then(parsers.parse('nenhuma linha do servidor mostra "{secret}"'))
def secret_hidden(served: Served, secret: str) -> None:
    assert served.lines, "the server said nothing"
    assert not any(secret in line for line in served.lines), served.lines


# AC-21: a body over the limit, read by a client that writes it all first


@given(
    "o crm_core servido de verdade num banco migrado, com o limite de corpo padrão",
    target_fixture="live",
)
def served_for_real(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path) as running:
        yield running


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


@when(
    parsers.parse(
        'um cliente {kind} envia a "{path:Path}" uma mensagem de {megabytes:d} MB',
        extra_types=PATH,
    ),
    target_fixture="answer",
)
def send_oversize(live: LiveServer, kind: str, path: str, megabytes: int) -> Answer:
    body = message(megabytes * 1_000_000)
    if "urllib" in kind:
        request = urllib.request.Request(
            live.url + path,
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {live.key}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answered:
                return Answer(answered.status, answered.headers["Content-Type"], answered.read())
        except urllib.error.HTTPError as refused:
            return Answer(refused.code, refused.headers["Content-Type"], refused.read())
    assert "chunks" in kind, kind
    head = [f"POST {path} HTTP/1.1", "Content-Type: application/json"]
    status, headers, answer = raw_exchange(
        live, [*head, "Transfer-Encoding: chunked"], chunked(body)
    )
    return Answer(status, headers.get("content-type", ""), answer)


@then("o cliente lê a resposta 413 em problem+json, que cita o limite")
def reads_413(answer: Answer) -> None:
    assert answer.status == 413, answer
    assert answer.content_type == "application/problem+json", answer
    problem = json.loads(answer.body)
    assert problem["status"] == 413, problem
    assert str(Settings.model_fields["max_body_bytes"].default) in problem["detail"], problem


@then("o servidor não gravou nenhum contato")
def nothing_stored_live(live: LiveServer) -> None:
    listed = live.get("/contacts?limit=10")
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == [], listed.json()


# AC-24: the documentation, offline, and the key it declares


@when(parsers.parse('eu abro "{page}" sem chave'), target_fixture="response")
@when(parsers.parse('eu leio "{page}" sem chave'), target_fixture="response")
def open_anonymous(app: FastAPI, page: str) -> httpx.Response:
    response: httpx.Response = client_of(app).get(page)
    assert response.status_code == 200, response.text
    return response


_LINKED = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


@then(
    "a página carrega só arquivos que o próprio servidor serve, e a política de conteúdo só "
    "permite a própria origem"
)
def page_is_self_contained(app: FastAPI, response: httpx.Response) -> None:
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in policy, policy
    assert "http" not in policy, policy
    linked = _LINKED.findall(response.text)
    assert linked, response.text
    for url in linked:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = client_of(app).get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert not re.search(r"https?://", response.text.replace(str(response.url), "")), response.text


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


@then("o documento declara um esquema de segurança HTTP bearer")
def bearer_scheme(response: httpx.Response) -> None:
    schemes = response.json()["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")], schemes


SIGNATURE_AUTHENTICATED = {("/webhooks/whatsapp", "post")}
"""The operations whose authentication is the body's signature (X-Hub-Signature-256), not an
API key: the WhatsApp webhook (OS 006), to which Meta cannot send a key."""


@then("cada operação declara a chave exatamente quando recusa com 401 quem chega sem ela")
def security_matches_refusals(
    app: FastAPI, response: httpx.Response, request: pytest.FixtureRequest
) -> None:
    document = response.json()
    (scheme,) = document["components"]["securitySchemes"]
    found = _operations(document)
    assert len(found) >= 10, found
    assert {(path, method) for path, method, _ in found} >= SIGNATURE_AUTHENTICATED
    # The signed routes answer 404 until configured: checked on an app that has their secrets.
    settings = app.state.settings.model_copy(
        update={
            "whatsapp_verify_token": SecretStr("token-do-cenario"),
            "whatsapp_app_secret": SecretStr("segredo-do-cenario"),
        }
    )
    configured = create_app(settings)
    request.addfinalizer(configured.state.database.dispose)
    with TestClient(configured, raise_server_exceptions=False) as client:
        for path, method, operation in found:
            url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            refused = client.request(method, url, json={"source": "x"}).status_code == 401
            declared = operation.get("security") == [{scheme: []}]
            if (path, method) in SIGNATURE_AUTHENTICATED:
                headers = {p["name"]: p for p in operation.get("parameters", [])}
                signature = headers.get("X-Hub-Signature-256", {})
                assert refused, (method, path)
                assert not declared, (method, path, operation.get("security"))
                assert signature.get("in") == "header", operation
                assert signature.get("required"), operation
                continue
            assert declared == refused, (method, path, operation.get("security"))
