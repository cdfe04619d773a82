"""Contacts and their messages, as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MessagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    contact_id: uuid.UUID
    source: str
    sender_id: str = Field(description="The sender id as the channel sent it.")
    content: str
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    channel_message_id: str | None
    received_at: datetime


class MessageStatusPublic(BaseModel):
    """A status the channel reported for a message (WhatsApp: sent, delivered, read, failed)."""

    model_config = ConfigDict(from_attributes=True)

    status: str
    payload: dict[str, Any] = Field(
        description="The status as the channel sent it (timestamp, errors of a failure, ...)."
    )
    received_at: datetime


class MessageEventPublic(BaseModel):
    """A reaction, an edit or a revoke of the message, kept beside it."""

    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(description="reaction, edit or revoke")
    event_wamid: str
    payload: dict[str, Any] = Field(description="The event as the channel sent it.")
    received_at: datetime


class MessageDetail(MessagePublic):
    statuses: list[MessageStatusPublic] = Field(description="In the order they arrived.")
    events: list[MessageEventPublic] = Field(description="In the order they arrived.")


class MessagesPublic(BaseModel):
    data: list[MessagePublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end. Messages "
        "stored later appear before the first page, never between pages already read."
    )


class ContactPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    source: str
    sender_id: str = Field(description="The canonical sender id (see README, 'Contacts').")
    display_name: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None = Field(description="When the person's data was erased (LGPD).")


class ContactDetail(ContactPublic):
    recent_messages: list[MessagePublic] = Field(description="The latest messages, newest first.")


class ContactsPublic(BaseModel):
    data: list[ContactPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
    end_cursor: str | None = Field(
        description="Where this page ends: pass it as `cursor` later to get only the contacts "
        "created since (null for an empty list read without a cursor)."
    )


class ErasureReport(BaseModel):
    contact_id: uuid.UUID
    erased_at: datetime = Field(description="When the person's data was erased (the first time).")
    messages_erased: int = Field(description="Messages erased by this request.")
    deals_anonymised: int = Field(description="Deals anonymised by this request.")
    already_erased: bool = Field(
        description="True when the contact had been erased before: nothing was changed."
    )
