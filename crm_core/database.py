"""The engine and its sessions: URL normalisation, SQLite pragmas, the session dependency."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from crm_core.exceptions import ConfigurationError, DatabaseUnavailableError

_POSTGRES_NAMES = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_NAMES = {"sqlite", "sqlite+pysqlite"}


def normalize_database_url(raw: str) -> URL:
    """Parse a database URL as people type it and pick the driver this project ships.

    `postgresql://`, `postgres://` and `postgresql+psycopg://` all run on psycopg 3;
    `sqlite:///path` (or `sqlite://` for memory) on the standard library's sqlite3.
    """
    text_url = raw.strip()
    if not text_url:
        raise ConfigurationError("DATABASE_URL is empty; unset it to use SQLite, or give a URL")
    try:
        url = make_url(text_url)
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            f"DATABASE_URL is not a database URL: {_redact(text_url)!r} "
            "(expected e.g. postgresql://user@host:5432/db or sqlite:///path/to/file.db)"
        ) from None
    if url.drivername in _POSTGRES_NAMES:
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in _SQLITE_NAMES:
        return url.set(drivername="sqlite+pysqlite")
    raise ConfigurationError(
        f"DATABASE_URL uses {url.drivername!r}, which is not supported: "
        "use postgresql:// (psycopg 3) or sqlite:///"
    )


def _redact(text_url: str) -> str:
    """Hide a password in a URL that could not be parsed."""
    scheme, sep, rest = text_url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return text_url


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_db_engine(raw_url: str, *, connect_timeout: int = 5, outbox: bool = True) -> Engine:
    """Build the engine for a URL; refuse, in one line, one that cannot work. With `outbox`
    off, the changes made through it write no events (crm_core.services.outbox)."""
    url = normalize_database_url(raw_url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        if is_memory_sqlite(url):
            kwargs["poolclass"] = StaticPool
        else:
            parent = Path(str(url.database)).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigurationError(
                    f"DATABASE_URL points to a SQLite file in {parent}, which does not exist"
                )
    else:
        kwargs["connect_args"] = {"connect_timeout": connect_timeout}
    engine = create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
    return engine if outbox else engine.execution_options(**{OUTBOX: False})


SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the one write lock before giving up (then a 503)."""

READ_ONLY = "crm_read_only"
"""Execution option of a connection whose transactions only read (`Database.read_sessionmaker`)."""


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """Enforce foreign keys (off by default in SQLite), wait on locks instead of failing, use
    the write-ahead log (readers and the writer no longer block each other), overwrite what a
    write removes with zeros (`secure_delete`: an erased message's bytes do not linger in the
    file's free space), and leave transactions to `_begin_sqlite` (the driver's own BEGIN comes
    too late: only before the first write, so what was read before it is read outside the
    transaction)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def truncate_sqlite_log(engine: Engine) -> bool:
    """SQLite: copy the write-ahead log into the database file and empty it
    (`PRAGMA wal_checkpoint(TRUNCATE)`), so that the old versions of pages a transaction
    rewrote (an erasure's) are gone from the log too. It waits, as any writer does, for
    readers still using the log; False when they kept it busy, True otherwise (and on
    PostgreSQL, where it does nothing)."""
    if engine.dialect.name != "sqlite":
        return True
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.close()
        return not busy
    finally:
        connection.close()


def _begin_sqlite(connection: Connection) -> None:
    """Start every SQLite transaction that may write with BEGIN IMMEDIATE: it takes the write
    lock first, so a read-then-write (a stage move, an erasure, a contact looked up then
    created) runs alone, as PostgreSQL's row locks make it run there, and a writer that must
    wait does so in SQLite's busy handler instead of failing with "database is locked".
    Read-only sessions begin DEFERRED and, under the write-ahead log, never wait.
    (SQLAlchemy's recipe for SQLite transactions, "Serializable isolation / Savepoints".)"""
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def insert_ignoring_conflicts(connection: Connection, table: Table, *columns: str) -> Insert:
    """`INSERT ... ON CONFLICT (columns) DO NOTHING` in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(columns))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(columns))


def next_seqs(connection: Connection, table: Table, count: int) -> list[int]:
    """`count` order-key numbers for new rows of `table`, increasing (as
    crm_core.models.base.Sequenced makes them: its identity's sequence on PostgreSQL; on
    SQLite, after the largest so far, inside the write transaction)."""
    if connection.dialect.name == "postgresql":
        query = text(f"SELECT nextval('{table.name}_seq_seq') FROM generate_series(1, :count)")
        return sorted(int(seq) for seq in connection.execute(query, {"count": count}).scalars())
    last = connection.execute(text(f"SELECT coalesce(max(seq), 0) FROM {table.name}")).scalar_one()
    return [int(last) + position for position in range(1, count + 1)]


OUTBOX = "crm_outbox"
"""Execution option of an engine whose changes write no events (`CRM_OUTBOX=false`)."""


def outbox_enabled(connection: Connection | Engine) -> bool:
    """Whether changes made through `connection` (or engine) write their outbox events."""
    return bool(connection.get_execution_options().get(OUTBOX, True))


class Database:
    """The engine and the session factory of one application."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker(bind=engine, expire_on_commit=False)
        self.read_sessionmaker = sessionmaker(
            bind=engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        """Sessions that only read: on SQLite they never take the write lock."""

    def ping(self) -> None:
        """Run a trivial query; raise DatabaseUnavailableError if the database does not answer."""
        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise DatabaseUnavailableError(reason) from exc

    def dispose(self) -> None:
        self.engine.dispose()


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """One session per request, closed when the request ends."""
    with database.sessionmaker() as session:
        yield session


def get_read_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """One read-only session per request (a route that writes nothing), closed at its end."""
    with database.read_sessionmaker() as session:
        yield session


DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
