"""Fixtures shared by the whole suite: throwaway SQLite and PostgreSQL databases.

PostgreSQL tests use the server named by AURORA_TEST_POSTGRES_URL (an admin URL such as
postgresql://postgres@127.0.0.1:5432/postgres). Each test that asks for one gets its own
database, created for it and dropped afterwards. Without the variable those tests skip;
with AURORA_REQUIRE_POSTGRES=1 (set by .ci/run) a missing or unreachable server fails them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from crm_core.config import get_settings
from crm_core.database import create_db_engine, normalize_database_url

POSTGRES_ENV = "AURORA_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "AURORA_REQUIRE_POSTGRES"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _postgres_admin_url() -> str:
    raw = os.environ.get(POSTGRES_ENV, "").strip()
    required = os.environ.get(REQUIRE_POSTGRES_ENV, "") not in ("", "0", "false")
    if not raw:
        reason = f"{POSTGRES_ENV} is not set, so the PostgreSQL tests are skipped"
        if required:
            pytest.fail(f"{reason}, but {REQUIRE_POSTGRES_ENV} demands them", pytrace=False)
        pytest.skip(reason)
    return raw


@pytest.fixture(scope="session")
def postgres_admin_engine() -> Iterator[Engine]:
    """An autocommit engine on the test server's maintenance database."""
    url = normalize_database_url(_postgres_admin_url())
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL at {url!r} ({POSTGRES_ENV}) does not answer: {exc.orig}", pytrace=False
        )
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin_engine: Engine) -> Iterator[str]:
    """The URL of a new, empty database, dropped when the test ends."""
    name = f"aurora_test_{secrets.token_hex(6)}"
    with postgres_admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_admin_engine.url.set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with postgres_admin_engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a new SQLite file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database of each kind, built as the application builds it."""
    db_engine = create_db_engine(database_url)
    yield db_engine
    db_engine.dispose()


@pytest.fixture
def use_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point DATABASE_URL (and so the settings, alembic and the app) at the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name()
