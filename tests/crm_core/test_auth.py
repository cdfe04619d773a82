"""API keys (hashed, scoped, revocable, `crm-core keys`) and per-source HMAC signatures."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_core.models import ApiKey, Base, Message
from crm_core.services import api_keys
from tests.crm_core.conftest import AppFactory, new_key

EXAMPLE: dict[str, Any] = {
    "source": "whatsapp",
    "sender_id": "5511999999999",
    "content": "teste",
    "metadata": {"message_id": "wamid.1"},
}


def stored(app: FastAPI) -> int:
    with app.state.database.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Message)).scalar_one())


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


@pytest.fixture
def app(sqlite_url: str, make_app: AppFactory) -> FastAPI:
    return make_app(sqlite_url, api_key_cache_seconds=0)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer crm_000000000000_" + "x" * 43],
    ids=["missing", "empty", "no-token", "blank-token", "basic", "unknown-key"],
)
def test_ingest_without_a_valid_key_is_401(app: FastAPI, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/ingest/message", json=EXAMPLE, headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert stored(app) == 0


def test_an_ingest_key_may_ingest(app: FastAPI) -> None:
    headers = {"Authorization": f"Bearer {new_key(app, 'ingest')}"}
    with TestClient(app) as client:
        assert client.post("/ingest/message", json=EXAMPLE, headers=headers).status_code == 202
    assert stored(app) == 1


def test_an_ingest_key_may_not_read_the_api(app: FastAPI) -> None:
    headers = {"Authorization": f"Bearer {new_key(app, 'ingest')}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/contacts", headers=headers)
    assert_problem(response, 403)


def test_a_revoked_key_is_refused(app: FastAPI) -> None:
    token = new_key(app, "ingest")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/ingest/message", json=EXAMPLE, headers=headers).status_code == 202
        with app.state.database.sessionmaker() as session:
            key = session.scalars(select(ApiKey)).one()
            api_keys.revoke_key(session, str(key.id))
        assert_problem(client.post("/ingest/message", json=EXAMPLE, headers=headers), 401)


def test_keys_are_stored_as_sha256_hashes_only(app: FastAPI) -> None:
    token = new_key(app, "readwrite")
    assert re.fullmatch(r"crm_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    with app.state.database.engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(select(ApiKey.__table__)).all()]
    assert not any(token in str(value) for row in rows for value in row)
    assert rows[0][4] == hashlib.sha256(token.encode()).hexdigest()


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_refused(app: FastAPI) -> None:
    token = new_key(app, "ingest")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/ingest/message", json=EXAMPLE, headers={"Authorization": f"Bearer {forged}"}
        )
    assert_problem(response, 401)


def test_auth_can_be_switched_off_for_local_trials(sqlite_url: str, make_app: AppFactory) -> None:
    app = make_app(sqlite_url, auth_enabled=False)
    with TestClient(app) as client:
        assert client.post("/ingest/message", json=EXAMPLE).status_code == 202


class CountingAuthenticator(api_keys.Authenticator):
    """Counts the database lookups, each held for a while to let requests pile up."""

    lookups = 0

    def _lookup(self, token: str, digest: str) -> api_keys.Principal | None:
        type(self).lookups += 1
        time.sleep(0.05)
        return super()._lookup(token, digest)


def test_requests_that_miss_the_cache_share_one_lookup(
    sqlite_url: str, make_app: AppFactory
) -> None:
    app = make_app(sqlite_url, api_key_cache_seconds=60)
    token = new_key(app, "ingest")
    authenticator = CountingAuthenticator(app.state.database.engine, 60)
    CountingAuthenticator.lookups = 0

    async def burst() -> list[api_keys.Principal | None]:
        return await asyncio.gather(*(authenticator.resolve(token) for _ in range(50)))

    principals = asyncio.run(burst())
    assert CountingAuthenticator.lookups == 1
    assert all(p is not None and p.scope == "ingest" for p in principals)


def test_an_answer_about_to_expire_is_refreshed_while_it_is_still_used(
    sqlite_url: str, make_app: AppFactory
) -> None:
    app = make_app(sqlite_url)
    token = new_key(app, "ingest")
    authenticator = CountingAuthenticator(app.state.database.engine, 10)
    CountingAuthenticator.lookups = 0

    async def scenario() -> tuple[api_keys.Principal | None, api_keys.Principal | None]:
        first = await authenticator.resolve(token)
        digest = api_keys.hash_key(token)
        _expires, principal = authenticator._cache[digest]
        authenticator._cache[digest] = (time.monotonic() + 1, principal)  # 1 s of 10 left
        with app.state.database.sessionmaker() as session:
            key = session.scalars(select(ApiKey)).one()
            api_keys.revoke_key(session, str(key.id))
        still = await authenticator.resolve(token)  # served from the cache, refresh started
        for _ in range(100):
            if not authenticator._lookups:
                break
            await asyncio.sleep(0.01)
        return first, still

    first, still = asyncio.run(scenario())
    assert first is not None
    assert still is not None
    assert CountingAuthenticator.lookups == 2  # the first answer, then the refresh
    assert authenticator._cache[api_keys.hash_key(token)][1] is None  # the revocation is seen
    assert asyncio.run(authenticator.resolve(token)) is None


# The command line


def crm_core(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_core.cli", *args],
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_creates_lists_and_revokes_keys(app: FastAPI, sqlite_url: str) -> None:
    created = crm_core(sqlite_url, "keys", "create", "--scope", "ingest", "--name", "whatsapp")
    assert created.returncode == 0, created.stderr
    token = re.search(r"key:\s+(\S+)", created.stdout)
    key_id = re.search(r"id:\s+(\S+)", created.stdout)
    assert token
    assert key_id
    headers = {"Authorization": f"Bearer {token[1]}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/ingest/message", json=EXAMPLE, headers=headers).status_code == 202
        listed = crm_core(sqlite_url, "keys", "list")
        assert key_id[1] in listed.stdout
        assert "active" in listed.stdout
        assert token[1] not in listed.stdout
        revoked = crm_core(sqlite_url, "keys", "revoke", key_id[1])
        assert revoked.returncode == 0, revoked.stderr
        assert_problem(client.post("/ingest/message", json=EXAMPLE, headers=headers), 401)
    again = crm_core(sqlite_url, "keys", "revoke", key_id[1])
    assert again.returncode == 1
    assert "already revoked" in again.stderr
    assert "Traceback" not in again.stderr


def test_the_cli_says_so_when_the_database_has_no_tables(tmp_path: Any) -> None:
    result = crm_core(f"sqlite:///{tmp_path / 'empty.db'}", "keys", "list")
    assert result.returncode == 1
    assert "alembic upgrade head" in result.stderr
    assert "Traceback" not in result.stderr


# Per-source signatures

SECRET = "segredo-do-webhook"


@pytest.fixture
def signed_app(sqlite_url: str, make_app: AppFactory) -> FastAPI:
    return make_app(sqlite_url, source_secrets={"whatsapp": SECRET})


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_signed(app: FastAPI, path: str, body: bytes, signature: str | None) -> Any:
    headers = {
        "Authorization": f"Bearer {new_key(app, 'ingest')}",
        "content-type": "application/json",
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    with TestClient(app, raise_server_exceptions=False) as client:
        return client.post(path, content=body, headers=headers)


def test_a_correctly_signed_body_is_stored(signed_app: FastAPI) -> None:
    body = json.dumps(EXAMPLE).encode()
    assert post_signed(signed_app, "/ingest/message", body, sign(body)).status_code == 202
    assert stored(signed_app) == 1


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=", "sha1=abc", "sha256=" + "0" * 64, "WRONG"],
    ids=["missing", "empty", "no-hex", "sha1", "wrong-hex", "garbage"],
)
def test_a_missing_or_wrong_signature_is_401_and_stores_nothing(
    signed_app: FastAPI, signature: str | None
) -> None:
    body = json.dumps(EXAMPLE).encode()
    assert_problem(post_signed(signed_app, "/ingest/message", body, signature), 401)
    assert stored(signed_app) == 0


def test_a_signature_of_another_body_is_refused(signed_app: FastAPI) -> None:
    body = json.dumps(EXAMPLE).encode()
    tampered = json.dumps({**EXAMPLE, "content": "outra"}).encode()
    assert_problem(post_signed(signed_app, "/ingest/message", tampered, sign(body)), 401)
    assert stored(signed_app) == 0


def test_a_source_without_a_secret_needs_no_signature(signed_app: FastAPI) -> None:
    body = json.dumps({**EXAMPLE, "source": "webchat", "sender_id": "sessao-1"}).encode()
    assert post_signed(signed_app, "/ingest/message", body, None).status_code == 202


def test_a_batch_with_a_signing_source_must_be_signed(signed_app: FastAPI) -> None:
    body = json.dumps({"messages": [EXAMPLE]}).encode()
    assert_problem(post_signed(signed_app, "/ingest/messages", body, None), 401)
    assert post_signed(signed_app, "/ingest/messages", body, sign(body)).status_code == 200
    assert stored(signed_app) == 1


def test_the_models_know_the_key_table() -> None:
    assert "crm_api_keys" in Base.metadata.tables
