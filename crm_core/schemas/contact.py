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


class MessagesPublic(BaseModel):
    data: list[MessagePublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
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
    next_cursor: str | None


class ErasureReport(BaseModel):
    contact_id: uuid.UUID
    erased_at: datetime
    messages_erased: int
    deals_anonymised: int
