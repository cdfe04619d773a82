"""Steps about the HTTP application: the ingest route and its answers (AC-03)."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import fastapi.routing
import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pytest_bdd import given, parsers, then, when

from crm_core.config import get_settings
from crm_core.main import create_app
from crm_core.models.api_key import SCOPE_INGEST
from crm_core.services.api_keys import create_key
from tests.bdd.support.databases import alembic_config

PROBLEM_MEDIA_TYPE = "application/problem+json"


def registered_routes(app: FastAPI) -> list[APIRoute]:
    """The app's path operations, wherever they were included from.

    Since FastAPI 0.137 `app.routes` is a tree (an included router is one `_IncludedRouter`
    node) and `fastapi.routing.iter_route_contexts` walks it; before that, `app.routes` was
    already the flat list of routes.
    """
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    candidates = (
        [context.original_route for context in walk(app.routes)] if walk else list(app.routes)
    )
    return [route for route in candidates if isinstance(route, APIRoute)]


def find_route(app: FastAPI, method: str, path: str) -> APIRoute:
    routes = registered_routes(app)
    matches = [route for route in routes if route.path == path and method in (route.methods or ())]
    registered = sorted(f"{' '.join(sorted(route.methods or ()))} {route.path}" for route in routes)
    assert len(matches) == 1, f"{method} {path}: {len(matches)} routes; registered: {registered}"
    return matches[0]


@given('o app criado por "crm_core.main.create_app()"', target_fixture="app")
def the_app(
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    api_credentials: dict[str, str],
) -> FastAPI:
    # create_app() with no arguments reads the settings, as `uvicorn crm_core.main:app` does;
    # DATABASE_URL points them at a SQLite file of this test, migrated as the README says.
    # Since OS 005 the ingest stores what it accepts and requires an API key: the operator's
    # `crm-core keys create --scope ingest` is done here, and the scenario's requests carry it.
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    monkeypatch.setattr(sys, "path", list(sys.path))  # alembic's prepend_sys_path
    command.upgrade(alembic_config(), "head")
    app = create_app()
    request.addfinalizer(app.state.database.dispose)
    with app.state.database.sessionmaker() as session:
        token = create_key(session, SCOPE_INGEST, "cenário")[1]
    api_credentials["Authorization"] = f"Bearer {token}"
    return app


@then(parsers.parse('a rota "{method:w} {path}" está registrada no app'))
def route_is_registered(app: FastAPI, method: str, path: str) -> None:
    find_route(app, method, path)


@then(parsers.parse('a rota "{method:w} {path}" está no esquema OpenAPI do app'))
def route_is_in_openapi(app: FastAPI, method: str, path: str) -> None:
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    assert method.lower() in paths.get(path, {}), f"OpenAPI paths: {sorted(paths)}"


@then(
    parsers.parse(
        'a rota "{method:w} {path}" também está no app "{module}:{attribute}" que o uvicorn serve'
    )
)
def route_is_in_served_app(method: str, path: str, module: str, attribute: str) -> None:
    served = getattr(importlib.import_module(module), attribute)
    assert isinstance(served, FastAPI), f"{module}:{attribute} is {served!r}, not a FastAPI app"
    find_route(served, method, path)


@when(
    parsers.parse('eu envio "{method:w} {path}" com Content-Type "{content_type}" e o corpo:'),
    target_fixture="response",
)
def send(
    app: FastAPI,
    method: str,
    path: str,
    content_type: str,
    docstring: str,
    api_credentials: dict[str, str],
) -> Iterator[httpx.Response]:
    headers = {**api_credentials, "content-type": content_type}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client.request(method, path, content=docstring.encode(), headers=headers)


@then(parsers.parse("a resposta tem o status {status:d}"))
def response_status(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, f"{response.status_code}: {response.text}"


@then(parsers.parse('a resposta é um recibo "{status}" com um id e a hora de recebimento em UTC'))
def response_is_receipt(response: httpx.Response, status: str) -> None:
    receipt = response.json()
    assert receipt["status"] == status, receipt
    uuid.UUID(receipt["id"])
    received_at = datetime.fromisoformat(receipt["received_at"])
    assert received_at.utcoffset() == timedelta(0), f"{received_at!r} is not UTC"
    now = datetime.now(UTC)
    assert now - timedelta(minutes=1) <= received_at <= now, received_at


@then(parsers.parse("a resposta é um problem+json com o status {status:d}"))
def response_is_problem(response: httpx.Response, status: int) -> None:
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, response.headers
    problem = response.json()
    assert problem["status"] == status, problem
    missing = {"type", "title", "status", "detail"} - problem.keys()
    assert not missing, f"problem+json without {sorted(missing)}: {problem}"
    assert problem["detail"], problem
