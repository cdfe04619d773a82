"""Keyset pages: rows after a cursor, in a stable (timestamp, id) order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from crm_core.schemas.pagination import decode_cursor, encode_cursor

T = TypeVar("T")


def page(
    session: Session,
    query: Select[T],
    at: InstrumentedAttribute[Any],
    row_id: InstrumentedAttribute[Any],
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> tuple[Sequence[T], str | None]:
    """A page of `query` ordered by (at, id), and the next page's cursor (None at the end)."""
    key = tuple_(at, row_id)
    if cursor is not None:
        after = tuple_(*decode_cursor(cursor))
        query = query.where(key < after if newest_first else key > after)
    order = (at.desc(), row_id.desc()) if newest_first else (at.asc(), row_id.asc())
    rows = session.scalars(query.order_by(*order).limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(getattr(last, at.key), getattr(last, row_id.key))
