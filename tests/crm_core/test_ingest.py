"""POST /ingest/message: the OS 004 example, every kind of bad input, and the limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import to_json

from crm_core.config import Settings
from crm_core.main import create_app
from crm_core.schemas.ingest import (
    MAX_CONTENT_CHARS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    metadata_walk,
)
from crm_core.services.ingest import new_ids
from tests.crm_core.conftest import AppFactory, authorized_client

EXAMPLE: dict[str, Any] = {
    "source": "whatsapp",
    "sender_id": "5511999999999",
    "content": "teste",
    "metadata": {},
}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail", "instance"} <= problem.keys()
    assert problem["detail"]
    return problem


def test_the_os_example_is_accepted_with_a_receipt(client: TestClient) -> None:
    before = datetime.now(UTC)
    response = client.post("/ingest/message", json=EXAMPLE)
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["status"] == "accepted"
    uuid.UUID(receipt["id"])
    received_at = datetime.fromisoformat(receipt["received_at"])
    assert received_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= received_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_each_receipt_has_its_own_id(client: TestClient) -> None:
    ids = {client.post("/ingest/message", json=EXAMPLE).json()["id"] for _ in range(5)}
    assert len(ids) == 5


def test_metadata_may_be_omitted_and_content_may_be_empty(client: TestClient) -> None:
    body = {key: value for key, value in EXAMPLE.items() if key != "metadata"}
    assert client.post("/ingest/message", json={**body, "content": ""}).status_code == 202


def test_null_metadata_is_refused(client: TestClient) -> None:
    assert_problem(client.post("/ingest/message", json={**EXAMPLE, "metadata": None}), 422)


INVALID_BODIES = [
    pytest.param({**EXAMPLE, "source": "WhatsApp"}, "source", id="source-not-lowercase"),
    pytest.param({**EXAMPLE, "source": "what's app"}, "source", id="source-not-a-slug"),
    pytest.param({**EXAMPLE, "source": "x" * 33}, "source", id="source-too-long"),
    pytest.param({**EXAMPLE, "sender_id": ""}, "sender_id", id="sender-empty"),
    pytest.param({**EXAMPLE, "sender_id": "1" * 129}, "sender_id", id="sender-too-long"),
    pytest.param({**EXAMPLE, "sender_id": " 55119"}, "sender_id", id="sender-padded"),
    pytest.param({**EXAMPLE, "sender_id": "55\n11"}, "sender_id", id="sender-control-char"),
    pytest.param({**EXAMPLE, "sender_id": 5511999999999}, "sender_id", id="sender-a-number"),
    pytest.param({**EXAMPLE, "content": 42}, "content", id="content-a-number"),
    pytest.param({**EXAMPLE, "content": "a\u0000b"}, "content", id="content-nul"),
    pytest.param(
        {**EXAMPLE, "content": "x" * (MAX_CONTENT_CHARS + 1)}, "content", id="content-too-long"
    ),
    pytest.param({**EXAMPLE, "metadata": [1, 2]}, "metadata", id="metadata-a-list"),
    pytest.param({**EXAMPLE, "metadata": "{}"}, "metadata", id="metadata-a-string"),
    pytest.param(
        {**EXAMPLE, "metadata": {"blob": "x" * MAX_METADATA_BYTES}},
        "metadata",
        id="metadata-too-large",
    ),
    pytest.param({**EXAMPLE, "metadata": {"k": "\u0000"}}, "metadata", id="metadata-nul"),
    pytest.param({**EXAMPLE, "channel": "x"}, "channel", id="unknown-field"),
    pytest.param({"source": "whatsapp"}, "sender_id", id="missing-fields"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
def test_invalid_bodies_get_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(client.post("/ingest/message", json=body), 422)
    assert problem["type"] == "urn:aurora-crm:problem:validation-error"
    assert field in {error["field"] for error in problem["errors"]}
    assert f"#/{field}" in {error["pointer"] for error in problem["errors"]}
    assert field in problem["detail"]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_metadata_depth_is_bounded(client: TestClient) -> None:
    ok = client.post("/ingest/message", json={**EXAMPLE, "metadata": _nested(MAX_METADATA_DEPTH)})
    assert ok.status_code == 202
    too_deep = {**EXAMPLE, "metadata": _nested(MAX_METADATA_DEPTH + 1)}
    problem = assert_problem(client.post("/ingest/message", json=too_deep), 422)
    assert "levels" in problem["errors"][0]["detail"]


def test_metadata_of_exactly_the_limit_is_accepted_and_one_byte_more_refused(
    client: TestClient,
) -> None:
    """Measured as stored, compact UTF-8 JSON, with characters of two bytes in it."""
    text = "é" * 8000
    text += "x" * (MAX_METADATA_BYTES - len(to_json({"blob": text})))
    assert len(to_json({"blob": text})) == MAX_METADATA_BYTES
    exact = client.post("/ingest/message", json={**EXAMPLE, "metadata": {"blob": text}})
    assert exact.status_code == 202, exact.text
    over = {**EXAMPLE, "metadata": {"blob": text + "x"}}
    problem = assert_problem(client.post("/ingest/message", json=over), 422)
    assert f"{MAX_METADATA_BYTES + 1} bytes" in problem["errors"][0]["detail"]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
)


@given(st.dictionaries(st.text(), JSON_VALUES))
def test_the_metadata_size_bound_is_never_below_the_stored_size(metadata: dict[str, Any]) -> None:
    """The size check only serialises metadata whose bound passes the limit: the bound must
    hold for every document, or an oversized one would be let through."""
    _, bound, _ = metadata_walk(metadata)
    assert bound >= len(to_json(metadata))


def test_new_ids_are_distinct_random_version_4_uuids() -> None:
    ids = new_ids(10_000)
    assert len(set(ids)) == len(ids)
    assert {(i.version, i.variant) for i in ids} == {(4, uuid.RFC_4122)}
    assert new_ids(0) == []


def test_lone_surrogates_are_refused(client: TestClient) -> None:
    raw = b'{"source":"whatsapp","sender_id":"1","content":"\\ud800","metadata":{}}'
    response = client.post(
        "/ingest/message", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'{"source": "whatsapp",}', b"\xff\xfe\x00", b""],
    ids=["truncated", "text", "trailing-comma", "not-utf8", "empty"],
)
def test_malformed_json_gets_400_or_422(client: TestClient, raw: bytes) -> None:
    response = client.post(
        "/ingest/message", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


def test_malformed_json_is_a_400_named_as_such(client: TestClient) -> None:
    response = client.post(
        "/ingest/message", content=b"{", headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 400)
    assert problem["type"] == "urn:aurora-crm:problem:malformed-json"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", None],
)
def test_a_body_that_is_not_json_gets_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/ingest/message", content=json.dumps(EXAMPLE), headers=headers)
    assert_problem(response, 415)


def test_json_with_a_charset_or_a_json_suffix_is_accepted(client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.aurora+json"):
        response = client.post(
            "/ingest/message", content=json.dumps(EXAMPLE), headers={"content-type": content_type}
        )
        assert response.status_code == 202, content_type


@pytest.fixture
def small_limit_client(sqlite_url: str, make_app: AppFactory) -> Iterator[TestClient]:
    with authorized_client(make_app(sqlite_url, max_body_bytes=1024)) as test_client:
        yield test_client


def test_a_declared_oversized_body_gets_413(small_limit_client: TestClient) -> None:
    body = json.dumps({**EXAMPLE, "content": "x" * 2000})
    response = small_limit_client.post(
        "/ingest/message", content=body, headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 413)
    assert "1024 bytes" in problem["detail"]


def test_a_streamed_oversized_body_gets_413(small_limit_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"source":"whatsapp","sender_id":"1","content":"'
        for _ in range(10):
            yield b"x" * 200
        yield b'","metadata":{}}'

    response = small_limit_client.post(
        "/ingest/message", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_a_body_within_the_limit_passes(small_limit_client: TestClient) -> None:
    assert small_limit_client.post("/ingest/message", json=EXAMPLE).status_code == 202


def test_unknown_paths_and_methods_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.get("/ingest/message"), 405)


def test_an_unexpected_error_is_a_500_problem_without_internals(sqlite_url: str) -> None:
    app = create_app(Settings(database_url=sqlite_url))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    problem = assert_problem(response, 500)
    assert "secret internals" not in response.text
    assert problem["request_id"] == response.headers["x-request-id"]


def test_the_route_is_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/ingest/message"]["post"]
    assert "202" in operation["responses"]
    assert {"400", "413", "415", "422"} <= operation["responses"].keys()
    assert client.get("/docs").status_code == 200
