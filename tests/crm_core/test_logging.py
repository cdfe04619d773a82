from __future__ import annotations

import json
import logging
import sys

import pytest
from fastapi.testclient import TestClient

from crm_core.config import Settings
from crm_core.log import JsonFormatter
from crm_core.main import create_app
from tests.crm_core.conftest import AppFactory, authorized_client


def _access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    return [line for line in lines if line["logger"] == "crm_core.access"]


def test_one_json_line_per_request(
    sqlite_url: str, make_app: AppFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with authorized_client(make_app(sqlite_url)) as client:
        capsys.readouterr()
        response = client.post(
            "/ingest/message",
            json={"source": "whatsapp", "sender_id": "5511999999999", "content": "oi"},
        )
        client.get("/healthz", headers={"x-request-id": "abc-123"})
    first, second = _access_lines(capsys)
    assert first["method"] == "POST"
    assert first["path"] == "/ingest/message"
    assert first["status"] == 202
    assert isinstance(first["duration_ms"], float)
    assert first["request_id"] == response.headers["x-request-id"]
    assert first["level"] == "INFO"
    assert second["request_id"] == "abc-123"


def test_a_hostile_request_id_is_replaced(sqlite_url: str) -> None:
    with TestClient(create_app(Settings(database_url=sqlite_url))) as client:
        response = client.get("/healthz", headers={"x-request-id": "x" * 500})
    assert response.headers["x-request-id"] != "x" * 500
    assert len(response.headers["x-request-id"]) == 32


def test_the_level_comes_from_the_settings(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(Settings(database_url=sqlite_url, log_level="WARNING"))) as client:
        capsys.readouterr()
        client.get("/healthz")
    assert _access_lines(capsys) == []
    assert logging.getLogger("crm_core").level == logging.WARNING


def test_extra_fields_and_exceptions_are_json() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "crm_core.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None
        )
        record.exc_info = sys.exc_info()
    record.request_id = "r1"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed x"
    assert entry["request_id"] == "r1"
    assert "ValueError: boom" in entry["exception"]
