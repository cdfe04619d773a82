"""Opaque cursors for keyset pagination: the (timestamp, id) of the last row of a page."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Query

from crm_core.problems import Problem

DEFAULT_PAGE = 50
MAX_PAGE = 200

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
CursorParam = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise Problem(
            400,
            "The cursor is not one this API gave out; start again without it.",
            kind="invalid-cursor",
        ) from None
