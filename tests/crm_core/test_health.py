from __future__ import annotations

from fastapi.testclient import TestClient

from crm_core.config import Settings
from crm_core.main import create_app


def test_healthz_answers_while_the_process_is_up(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_answers_when_the_database_does(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_readyz_is_503_problem_when_the_database_does_not_answer() -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/nowhere", database_connect_timeout=2
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["type"] == "urn:aurora-crm:problem:database-unavailable"
    assert "127.0.0.1" not in response.text  # connection details stay in the log
