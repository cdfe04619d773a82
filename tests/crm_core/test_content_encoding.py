"""A request body in a content coding the API does not decode is refused with 415 (RFC 9110
§15.5.16), naming what it accepts in Accept-Encoding, and nothing of it is stored."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_core.models import Contact, Deal, DealStageChange, Message

MESSAGE = {"source": "whatsapp", "sender_id": "5511999999999", "content": "oi"}
CODINGS: list[tuple[str, Any]] = [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("br", lambda raw: raw),  # refused by name, whatever the bytes
    ("GZIP", gzip.compress),
    ("identity, gzip", gzip.compress),
    ("gzip, identity", gzip.compress),
    ("x-unknown", lambda raw: raw),
]


def _bodies(client: TestClient) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """For each route that takes a body (method, path template): a real path and a valid body."""
    contact_id = client.post("/ingest/message", json={**MESSAGE, "sender_id": "5511900000000"})
    deal = client.post(
        "/deals",
        json={"contact_id": contact_id.json()["contact_id"], "title": "x", "pipeline": "rodobens"},
    ).json()
    return {
        ("post", "/ingest/message"): ("/ingest/message", MESSAGE),
        ("post", "/ingest/messages"): ("/ingest/messages", {"messages": [MESSAGE]}),
        ("post", "/deals"): (
            "/deals",
            {"contact_id": deal["contact_id"], "title": "Consórcio", "pipeline": "rodobens"},
        ),
        ("post", "/deals/{deal_id}/stage"): (
            f"/deals/{deal['id']}/stage",
            {"stage": "qualificacao"},
        ),
        # refused for its coding before its signature is read (Meta sends no content coding)
        ("post", "/webhooks/whatsapp"): (
            "/webhooks/whatsapp",
            {"object": "whatsapp_business_account", "entry": []},
        ),
    }


def _counts(client: TestClient) -> tuple[int, ...]:
    engine = client.app.state.database.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return tuple(
            connection.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Message, Contact, Deal, DealStageChange)
        )


def test_every_route_that_takes_a_body_is_covered(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    with_body = {
        (method, path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }
    assert with_body == set(_bodies(client))


@pytest.mark.parametrize(("coding", "encode"), CODINGS)
def test_an_encoded_body_is_refused_with_415_and_stores_nothing(
    any_client: TestClient, coding: str, encode: Any
) -> None:
    bodies = _bodies(any_client)
    before = _counts(any_client)
    for (method, _template), (path, document) in bodies.items():
        response = any_client.request(
            method,
            path,
            content=encode(json.dumps(document).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert response.status_code == 415, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["accept-encoding"] == "identity"
        problem = response.json()
        assert problem["status"] == 415
        assert problem["type"].endswith("unsupported-content-encoding")
        assert {"type", "title", "detail", "instance", "request_id"} <= problem.keys()
        assert problem["instance"] == path
        assert problem["request_id"] == response.headers["x-request-id"]
    assert _counts(any_client) == before


def test_an_identity_coding_is_read_as_no_coding(client: TestClient) -> None:
    for coding in ("identity", "Identity", " identity "):
        response = client.post(
            "/ingest/message",
            content=json.dumps(MESSAGE).encode(),
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        )
        assert response.status_code in (200, 202), response.text
