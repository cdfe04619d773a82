"""Fixtures for the runtime's tests: an application on a throwaway database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from crm_core.config import Settings
from crm_core.main import create_app


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    """A client of an application on an empty SQLite file."""
    app = create_app(Settings(database_url=sqlite_url))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
