"""Declarative base: constraint naming convention, JSON/JSONB and UTC timestamp types, and the
commit-ordered key (`seq`, `txid`) that every listed table carries."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Identity, MetaData, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
"""JSON documents: JSONB on PostgreSQL (indexable, binary), JSON text elsewhere."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that always comes back in UTC, SQLite included.

    SQLite has no time zone type: values are stored as UTC text and given back their
    tzinfo on the way out. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give timestamps a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.lru_cache(maxsize=256)  # the messages of one commit share their time
def utc_text(moment: datetime) -> str:
    """ISO 8601 (RFC 3339) with a `Z`, as the API writes every UTC timestamp."""
    return moment.isoformat().replace("+00:00", "Z")


class Base(DeclarativeBase):
    """Base of every model: one MetaData with predictable constraint names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONType,
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
    }


class TimestampMixin:
    """created_at / updated_at, timezone-aware, set by the application in UTC."""

    created_at: Mapped[datetime] = mapped_column(
        default=utcnow, server_default=func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )


class current_txid(FunctionElement[int]):
    """The id of the writing transaction, as a bigint: `pg_current_xact_id()` on PostgreSQL
    (an xid8, which never wraps around); 0 on SQLite, which runs one write transaction at a
    time and so needs none (see `Sequenced`)."""

    type = BigInteger()
    inherit_cache = True


@compiles(current_txid, "postgresql")
def _current_txid_postgresql(element: current_txid, compiler: SQLCompiler, **kw: Any) -> str:
    return "(pg_current_xact_id()::text)::bigint"


@compiles(current_txid)
def _current_txid_default(element: current_txid, compiler: SQLCompiler, **kw: Any) -> str:
    return "0"


class next_seq(FunctionElement[int]):
    """The next `seq` of a table: its identity's sequence on PostgreSQL; on SQLite, one more
    than the largest so far, read inside the write transaction (write transactions there run
    one at a time, so no two get the same number and numbers follow commit order). A statement
    that inserts several rows at once on SQLite must give each its own `seq`."""

    type = BigInteger()
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own class attribute)
        *FunctionElement._traverse_internals,
        ("table", InternalTraversal.dp_string),
    ]

    def __init__(self, table: str) -> None:
        self.table = table
        super().__init__()


@compiles(next_seq, "postgresql")
def _next_seq_postgresql(element: next_seq, compiler: SQLCompiler, **kw: Any) -> str:
    return f"nextval('{element.table}_seq_seq')"


@compiles(next_seq)
def _next_seq_default(element: next_seq, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(SELECT coalesce(max(seq), 0) + 1 FROM {element.table})"


class Sequenced:
    """The key every list is ordered and paged by: (`txid`, `seq`).

    `seq` grows with each row in the order rows are written (a batch's rows in its order);
    `txid` is the writing transaction's id. On PostgreSQL, writers run side by side and commit
    in any order, so a row may commit after a row with a larger `seq` was already read; but
    a transaction's id is never smaller than that of any transaction still running when a
    reader took its snapshot (`pg_snapshot_xmin`). A reader that only returns rows below that
    horizon, ordered by (`txid`, `seq`), therefore never passes a row that commits later
    (crm_core.services.pages). On SQLite, `txid` is 0 and `seq` alone follows commit order.
    """

    @declared_attr
    def seq(cls) -> Mapped[int]:
        return mapped_column(
            BigInteger,
            Identity(),
            default=next_seq(cls.__tablename__),  # type: ignore[attr-defined]
            index=True,
            unique=True,  # a unique index: ix_<table>_seq
            sort_order=900,
        )

    @declared_attr
    def txid(cls) -> Mapped[int]:
        return mapped_column(BigInteger, server_default=current_txid(), sort_order=901)
