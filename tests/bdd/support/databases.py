"""The databases the scenarios run on: SQLite, and PostgreSQL live or offline.

SQLite is always live (a file in the test's tmp_path). PostgreSQL is live, on a throwaway
database from the root conftest's `postgres_url`, when AURORA_TEST_POSTGRES_URL is set or
AURORA_REQUIRE_POSTGRES demands it (then a missing or silent server fails the scenario, it never
falls back). Otherwise it is offline: the DDL that alembic (`upgrade head --sql`) or the models
render for the postgresql dialect, replayed into a `Catalog`. Each scenario records which one it
used (`database` in the test's user_properties, and in the terminal summary).
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from typing import Literal, ParamSpec

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import CreateIndex, CreateTable

from crm_core.config import get_settings
from crm_core.database import create_db_engine
from crm_core.models import Base
from tests.bdd.support.catalog import Catalog
from tests.conftest import POSTGRES_ENV, REPO_ROOT, REQUIRE_POSTGRES_ENV

Mode = Literal["live", "offline"]
AlembicAction = Literal["upgrade", "downgrade"]

DATABASE_PROPERTY = "database"
"""The user_properties key under which a scenario records the database it ran on."""

OFFLINE_POSTGRES_URL = "postgresql://aurora@postgres.offline.invalid/aurora"
"""Gives alembic the postgresql dialect in --sql mode; nothing ever connects to it."""


class Backend(StrEnum):
    """A database kind, spelled as the feature files spell it."""

    SQLITE = "SQLite"
    POSTGRESQL = "PostgreSQL"


def live_url(backend: Backend, sqlite_url: str, request: pytest.FixtureRequest) -> str:
    """The URL of a live database of `backend` for a scenario: the SQLite file, or a throwaway
    PostgreSQL database (skipped without a server, failed when AURORA_REQUIRE_POSTGRES demands
    one); the scenario records which."""
    url = sqlite_url
    if backend is Backend.POSTGRESQL:
        url = request.getfixturevalue("postgres_url")
    request.node.user_properties.append((DATABASE_PROPERTY, f"{backend} live"))
    return url


def postgres_mode() -> Mode:
    """Live when a PostgreSQL server is configured or demanded; offline only when neither."""
    configured = bool(os.environ.get(POSTGRES_ENV, "").strip())
    required = os.environ.get(REQUIRE_POSTGRES_ENV, "") not in ("", "0", "false")
    return "live" if configured or required else "offline"


def alembic_config(output_buffer: io.StringIO | None = None) -> Config:
    """The repository's alembic.ini, without letting alembic reconfigure the test's logging."""
    config = Config(str(REPO_ROOT / "alembic.ini"), output_buffer=output_buffer)
    config.attributes["configure_logger"] = False
    return config


def dialect_named(name: str) -> Dialect:
    """A dialect without an engine: the project's driver for PostgreSQL, pysqlite for SQLite."""
    driver = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+pysqlite"}[name]
    return make_url(f"{driver}://").get_dialect()()


def models_ddl(dialect: Dialect) -> str:
    """The DDL the models' metadata renders for a dialect (tables, then their indexes)."""
    statements = []
    for table in Base.metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        statements.extend(
            str(CreateIndex(index).compile(dialect=dialect)).strip()
            for index in sorted(table.indexes, key=lambda index: str(index.name))
        )
    return ";\n".join(statements) + ";\n"


class DatabaseUnderTest(ABC):
    """One empty database of one kind, for one scenario."""

    mode: Mode

    def __init__(self, backend: Backend, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = backend
        self.url = url
        self._monkeypatch = monkeypatch
        # alembic's prepend_sys_path (alembic.ini) grows sys.path on every command.
        monkeypatch.setattr(sys, "path", list(sys.path))

    @property
    def description(self) -> str:
        where = make_url(self.url).render_as_string(hide_password=True)
        return f"{self.backend} {self.mode} ({where})"

    def alembic(self, action: AlembicAction, target: str) -> None:
        """Run `alembic <action> <target>` through alembic's command API, with DATABASE_URL
        pointed at this database, as the OS's validation procedure does."""
        self._monkeypatch.setenv("DATABASE_URL", self.url)
        get_settings.cache_clear()
        try:
            self._alembic(action, target)
        finally:
            get_settings.cache_clear()

    @abstractmethod
    def _alembic(self, action: AlembicAction, target: str) -> None: ...

    @abstractmethod
    def create_model_tables(self) -> None:
        """Create the models' tables from their metadata (what the ORM expects to find)."""

    @abstractmethod
    def catalog(self) -> Catalog:
        """The database's catalog as it is now."""


class LiveDatabase(DatabaseUnderTest):
    """A real database: a SQLite file, or a throwaway PostgreSQL database."""

    mode: Mode = "live"

    def __init__(
        self,
        backend: Backend,
        url: str,
        monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest,
    ) -> None:
        super().__init__(backend, url, monkeypatch)
        self.engine: Engine = create_db_engine(url)
        request.addfinalizer(self.engine.dispose)

    def _alembic(self, action: AlembicAction, target: str) -> None:
        run = command.upgrade if action == "upgrade" else command.downgrade
        run(alembic_config(), target)

    def create_model_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    def catalog(self) -> Catalog:
        return Catalog.reflect(self.engine)


class OfflinePostgres(DatabaseUnderTest):
    """PostgreSQL without a server: the DDL rendered for its dialect, replayed in a Catalog."""

    mode: Mode = "offline"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(Backend.POSTGRESQL, OFFLINE_POSTGRES_URL, monkeypatch)
        self._catalog = Catalog("offline postgresql DDL")
        self._revision: str | None = None

    def _alembic(self, action: AlembicAction, target: str) -> None:
        output = io.StringIO()
        config = alembic_config(output)
        run = command.upgrade if action == "upgrade" else command.downgrade
        # Offline, alembic cannot read the current revision: the range starts where we are.
        run(config, f"{self._revision or 'base'}:{target}", sql=True)
        self._replay(f"alembic {action} {target} --sql", output.getvalue())
        script = ScriptDirectory.from_config(config).get_revision(target)
        self._revision = script.revision if script is not None else None

    def create_model_tables(self) -> None:
        self._replay("models' metadata", models_ddl(dialect_named("postgresql")))

    def catalog(self) -> Catalog:
        return self._catalog

    def _replay(self, origin: str, ddl: str) -> None:
        print(f"offline: replaying the postgresql DDL of {origin}")
        self._catalog = self._catalog.apply(ddl)


def open_database(
    backend: Backend, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> DatabaseUnderTest:
    """An empty database of `backend`, live or offline as `postgres_mode()` decides, recorded."""
    database: DatabaseUnderTest
    if backend is Backend.SQLITE:
        url: str = request.getfixturevalue("sqlite_url")
        database = LiveDatabase(backend, url, monkeypatch, request)
    elif postgres_mode() == "live":
        # Fails (never skips) when AURORA_REQUIRE_POSTGRES is set and no server answers.
        url = request.getfixturevalue("postgres_url")
        database = LiveDatabase(backend, url, monkeypatch, request)
    else:
        database = OfflinePostgres(monkeypatch)
    request.node.user_properties.append((DATABASE_PROPERTY, database.description))
    print(f"database: {database.description}")
    return database


# Rows written with Core on the models' tables, so that a broken ORM mapping elsewhere (say,
# a relationship without its foreign key) does not hide what the database itself enforces.


def insert_contact(engine: Engine, source: str, sender_id: str) -> uuid.UUID:
    contacts = Base.metadata.tables["crm_contacts"]
    contact_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            insert(contacts).values(id=contact_id, source=source, sender_id=sender_id)
        )
    return contact_id


def insert_deal(engine: Engine, contact_id: uuid.UUID) -> uuid.UUID:
    deals = Base.metadata.tables["crm_deals"]
    deal_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            insert(deals).values(
                id=deal_id,
                contact_id=contact_id,
                title="Consórcio Rodobens",
                pipeline="rodobens",
                stage="lead",
            )
        )
    return deal_id


P = ParamSpec("P")
Violation = Literal["unique", "foreign_key", "other"]

_SQLSTATES: dict[str, Violation] = {"23505": "unique", "23503": "foreign_key"}
_SQLITE_ERRORS: dict[str, Violation] = {
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
}


def refusal(write: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> Violation | None:
    """Run a write; None when the database accepts it, else the kind of constraint it broke."""
    try:
        write(*args, **kwargs)
    except IntegrityError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        sqlite_error = getattr(exc.orig, "sqlite_errorname", None)
        return _SQLSTATES.get(str(sqlstate)) or _SQLITE_ERRORS.get(str(sqlite_error)) or "other"
    return None
