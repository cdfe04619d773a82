"""`GET /messages/{id}`: one message, with the statuses and events its channel reported."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from crm_core.api.deps import ReadPrincipal
from crm_core.database import ReadSessionDep
from crm_core.exceptions import NotFoundError
from crm_core.models import Message, MessageEvent, MessageStatus
from crm_core.schemas.contact import (
    MessageDetail,
    MessageEventPublic,
    MessagePublic,
    MessageStatusPublic,
)
from crm_core.services.senders import WHATSAPP

router = APIRouter(prefix="/messages", tags=["contacts"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid API key", **_PROBLEM},
    403: {"description": "The API key's scope does not allow this route", **_PROBLEM},
    404: {"description": "No such message", **_PROBLEM},
    422: {"description": "A parameter is invalid", **_PROBLEM},
}


@router.get(
    "/{message_id}",
    summary="A message, its statuses and its events (reactions, edits, revokes)",
    responses=_ERRORS,
)
def get_message(
    message_id: uuid.UUID, session: ReadSessionDep, _principal: ReadPrincipal
) -> MessageDetail:
    """Statuses and events in the order they arrived; the message's own content is never
    changed by them (an edit or a revoke is an event beside it)."""
    message = session.get(Message, message_id)
    if message is None:
        raise NotFoundError(f"No message has the id {message_id}.")
    statuses: list[MessageStatus] = []
    events: list[MessageEvent] = []
    wamid = message.channel_message_id
    if wamid is not None and message.source == WHATSAPP:
        statuses = list(
            session.scalars(
                select(MessageStatus)
                .where(MessageStatus.wamid == wamid)
                .order_by(MessageStatus.txid, MessageStatus.seq)
            )
        )
        events = list(
            session.scalars(
                select(MessageEvent)
                .where(MessageEvent.message_wamid == wamid)
                .order_by(MessageEvent.txid, MessageEvent.seq)
            )
        )
    public = MessagePublic.model_validate(message)
    return MessageDetail.model_validate(
        {
            **public.model_dump(exclude={"metadata"}),
            "metadata_": public.metadata,  # the field's validation alias
            "statuses": [MessageStatusPublic.model_validate(row) for row in statuses],
            "events": [MessageEventPublic.model_validate(row) for row in events],
        }
    )
