"""The outbox: every change that matters, written as an event in the transaction that makes the
change (crm_core.services.outbox), and the relay's position in it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, Sequenced, utcnow

MAX_EVENT_TYPE_CHARS = 64
MAX_SUBJECT_CHARS = 256


class OutboxEvent(Sequenced, Base):
    """One event, served as a CloudEvents 1.0 event by `GET /events` and published by the
    relay. Read in (`txid`, `seq`) order, the commit order the lists use
    (crm_core.services.pages).

    `type` is one of crm_core.services.outbox.EVENT_TYPES; `subject` the id of what changed (a
    message, contact or deal id, or a wamid); `time` when the change was made (UTC); `data`
    the event's JSON object. `contact_id` names the person the event is about, when there is
    one: erasing the contact replaces the `data` of each of its events
    (crm_core.services.outbox.redact)."""

    __tablename__ = "crm_events"
    __table_args__ = (
        Index("ix_crm_events_txid_seq", "txid", "seq"),
        Index("ix_crm_events_contact_id", "contact_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(MAX_EVENT_TYPE_CHARS))
    subject: Mapped[str] = mapped_column(String(MAX_SUBJECT_CHARS))
    time: Mapped[datetime] = mapped_column(default=utcnow)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RelayPosition(Base):
    """How far the relay has published the outbox to one JetStream stream: the order key
    (`txid`, `seq`) and id of the last event JetStream acknowledged. Written in the
    transaction that read the events, only after every acknowledgement came back."""

    __tablename__ = "crm_relay_positions"

    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
