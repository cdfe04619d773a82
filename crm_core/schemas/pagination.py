"""Opaque cursors for keyset pagination: the (txid, seq) of the last row of a page."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import Query

from crm_core.problems import Problem

DEFAULT_PAGE = 50
MAX_PAGE = 200

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page.")]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=200,
        description="`next_cursor` of the previous page (or an `end_cursor`, to poll).",
    ),
]

_MAX_KEY = 2**63 - 1  # both parts are bigints


def encode_cursor(txid: int, seq: int) -> str:
    raw = json.dumps([txid, seq], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The (txid, seq) a cursor holds; Problem(400) for anything this API did not give out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        txid, seq = json.loads(raw)
        if not all(type(part) is int and 0 <= part <= _MAX_KEY for part in (txid, seq)):
            raise ValueError("not a key")
        return txid, seq
    except (ValueError, TypeError, binascii.Error):
        raise Problem(
            400,
            "The cursor is not one this API gave out; start again without it.",
            kind="invalid-cursor",
        ) from None
