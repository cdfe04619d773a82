"""What a WhatsApp delivery says about messages besides the messages themselves: the status
of a message (sent, delivered, read, failed), and the events that refer to an earlier message
(a reaction, an edit, a revoke). Both are keyed by Meta's message id (`wamid`), not by our
message row: a status may come for a message another system sent, and an event may arrive
before the message it refers to."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, Sequenced, utcnow

MAX_WAMID_CHARS = 256


class MessageStatus(Sequenced, Base):
    """One status of one message, stored once: (`wamid`, `status`) is unique, so Meta's
    re-deliveries of a status webhook keep a single row. `payload` is the status object as
    Meta sent it (timestamp, conversation, pricing, `errors` of a failed message, ...)."""

    __tablename__ = "crm_message_statuses"
    __table_args__ = (UniqueConstraint("wamid", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    wamid: Mapped[str] = mapped_column(String(MAX_WAMID_CHARS))
    status: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageEvent(Sequenced, Base):
    """A reaction, an edit or a revoke of an earlier message (`message_wamid`), kept beside
    it: the earlier message is never changed. The event is stored once, by its own wamid
    (`event_wamid`, unique). `payload` is the inbound message object as Meta sent it."""

    __tablename__ = "crm_message_events"
    __table_args__ = (UniqueConstraint("event_wamid"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    event_wamid: Mapped[str] = mapped_column(String(MAX_WAMID_CHARS))
    message_wamid: Mapped[str] = mapped_column(String(MAX_WAMID_CHARS), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
