"""Keyset pages in commit-safe order: rows after a cursor, by (txid, seq).

A cursor is the (txid, seq) of the last row a page returned. On PostgreSQL, writers commit in
any order, so a page only returns rows whose `txid` is below the oldest transaction still
running when the page was read (`pg_snapshot_xmin(pg_current_snapshot())`, PostgreSQL's
"Snapshot Information Functions"): every such transaction has ended, so no row with a smaller
key can appear later, and a cursor never passes a row that is still in flight. A row written
while a page is read shows up on a later page, after the rows the cursor already passed,
never behind them. On SQLite one transaction writes at a time and `seq` is numbered inside it,
so `seq` order is commit order already (see crm_core.models.base.Sequenced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, ColumnClause, Select, literal_column, tuple_
from sqlalchemy.orm import Session

from crm_core.schemas.pagination import decode_cursor, encode_cursor

T = TypeVar("T")

VISIBLE_HORIZON: ColumnClause[int] = literal_column(
    "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint", BigInteger()
)
"""The id of the oldest transaction running when the statement began (PostgreSQL)."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list.

    `next_cursor` continues to the next page (None on the last one); `end_cursor` is where
    this page ends (the cursor given, when it is empty): asked for later, it returns exactly
    the rows written since, so a reader that polls from it sees every row once.
    """

    rows: Sequence[T]
    next_cursor: str | None
    end_cursor: str | None


def page(
    session: Session,
    query: Select[Any],
    model: Any,
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> Page[Any]:
    """A page of `query` (over a `Sequenced` model) in (txid, seq) order, oldest first or
    newest first. Raises Problem(400) for a cursor this API did not give out."""
    key = tuple_(model.txid, model.seq)
    if cursor is not None:
        after = tuple_(*decode_cursor(cursor))
        query = query.where(key < after if newest_first else key > after)
    if session.get_bind().dialect.name == "postgresql":
        query = query.where(model.txid < VISIBLE_HORIZON)
    order = (model.txid.desc(), model.seq.desc()) if newest_first else (model.txid, model.seq)
    rows = session.scalars(query.order_by(*order).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    end = encode_cursor(rows[-1].txid, rows[-1].seq) if rows else cursor
    return Page(rows, end if more else None, end)
