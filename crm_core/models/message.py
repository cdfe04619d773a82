"""A message a channel handed to the ingest, kept exactly as it was accepted."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.models.base import Base, Sequenced, utcnow

if TYPE_CHECKING:
    from crm_core.models.contact import Contact


class Message(Sequenced, Base):
    """One accepted message of one contact.

    `(source, channel_message_id)` is unique, so a channel that delivers the same message
    twice (WhatsApp retries a webhook until it gets a 2xx) stores it once. Messages without a
    channel id (NULL) are never considered equal to each other. A contact's messages are
    listed in (`txid`, `seq`) order: the order they arrived in, a batch's in its own order.
    """

    __tablename__ = "crm_messages"
    __table_args__ = (
        UniqueConstraint("source", "channel_message_id"),
        Index("ix_crm_messages_contact_id_txid_seq", "contact_id", "txid", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crm_contacts.id", ondelete="RESTRICT")
    )
    source: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(String(128))
    """The sender id exactly as the channel sent it (the contact holds the canonical form)."""
    content: Mapped[str] = mapped_column(Text)
    # `metadata` is reserved on declarative classes: the attribute has another name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    channel_message_id: Mapped[str | None] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    contact: Mapped[Contact] = relationship(back_populates="messages")

    def __repr__(self) -> str:
        return f"Message(id={self.id!s}, source={self.source!r}, contact_id={self.contact_id!s})"
