"""`POST /ingest/message`: the door through which every channel hands an incoming message.

In OS 004 (Genesis) the message is validated and acknowledged with a receipt; it is not
persisted, no contact or deal is created and no model is called.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, status

from crm_core.api.deps import require_json_body
from crm_core.schemas.ingest import IngestMessage, IngestReceipt

router = APIRouter(prefix="/ingest", tags=["ingest"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.post(
    "/message",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require_json_body)],
    summary="Accept one incoming message from a channel",
    responses={
        400: {"description": "The body is not valid JSON", **_PROBLEM},
        413: {"description": "The body is larger than the limit", **_PROBLEM},
        415: {"description": "The body is not application/json", **_PROBLEM},
        422: {"description": "A field is missing or invalid", **_PROBLEM},
    },
)
async def ingest_message(message: IngestMessage) -> IngestReceipt:
    """Validate the message and return a receipt (202). Nothing is stored in OS 004."""
    return IngestReceipt(id=uuid.uuid4(), received_at=datetime.now(UTC))
