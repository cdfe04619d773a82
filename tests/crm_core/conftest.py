"""Fixtures for the runtime's tests: an application on a throwaway database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm_core.config import Settings
from crm_core.database import Database, create_db_engine
from crm_core.main import create_app
from crm_core.models import Base
from crm_core.services.api_keys import create_key

AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(request: pytest.FixtureRequest) -> AppFactory:
    """Build an app on a URL with the models' tables created, disposed after the test."""

    def build(database_url: str, **settings: object) -> FastAPI:
        app = create_app(Settings(database_url=database_url, **settings))  # type: ignore[arg-type]
        Base.metadata.create_all(app.state.database.engine)
        request.addfinalizer(app.state.database.dispose)
        return app

    return build


def new_key(app: FastAPI, scope: str = "readwrite") -> str:
    """Create an API key in the app's database, as `crm-core keys create` does."""
    with app.state.database.sessionmaker() as session:
        return create_key(session, scope, f"test {scope}")[1]


def authorized_client(app: FastAPI, scope: str = "readwrite") -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {new_key(app, scope)}"
    return client


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The application's Database on an empty database of each kind, with the models' tables."""
    engine = create_db_engine(database_url)
    Base.metadata.create_all(engine)
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def client(sqlite_url: str, make_app: AppFactory) -> Iterator[TestClient]:
    """A client with a read/write key, of an application on a SQLite file with the tables."""
    with authorized_client(make_app(sqlite_url)) as test_client:
        yield test_client


@pytest.fixture
def any_client(database_url: str, make_app: AppFactory) -> Iterator[TestClient]:
    """The same, once on SQLite and once on PostgreSQL."""
    with authorized_client(make_app(database_url)) as test_client:
        yield test_client
