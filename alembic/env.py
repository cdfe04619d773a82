"""Alembic environment: the URL comes from crm_core's settings, the models are the target."""

from __future__ import annotations

import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from crm_core.config import get_settings
from crm_core.database import create_db_engine, normalize_database_url
from crm_core.exceptions import ConfigurationError
from crm_core.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    try:
        return get_settings().database_url
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        sys.exit(f"alembic: configuration error: {exc}")


def run_migrations_offline() -> None:
    """Emit the SQL (`alembic upgrade head --sql`) for the configured database's dialect."""
    try:
        url = normalize_database_url(_database_url())
    except ConfigurationError as exc:
        sys.exit(f"alembic: configuration error: {exc}")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through a given connection (tests, tools) or one made from the settings."""
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        _run(connectable)
        return
    owned = connectable is None
    if connectable is None:
        try:
            connectable = create_db_engine(_database_url())
        except ConfigurationError as exc:
            sys.exit(f"alembic: configuration error: {exc}")
    assert isinstance(connectable, Engine)
    try:
        try:
            connection = connectable.connect()
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            sys.exit(f"alembic: cannot connect to {connectable.url!r}: {reason}")
        with connection:
            _run(connection)
    finally:
        if owned:
            connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
