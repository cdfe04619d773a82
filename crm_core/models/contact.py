"""A person, as known on one channel."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.models.base import Base, Sequenced, TimestampMixin

if TYPE_CHECKING:
    from crm_core.models.deal import Deal
    from crm_core.models.message import Message


class Contact(Sequenced, TimestampMixin, Base):
    """A person on one channel, identified by (source, sender_id).

    `sender_id` is the canonical form (see crm_core.services.senders): for WhatsApp, E.164
    digits with Brazilian mobiles always written with their ninth digit.
    """

    __tablename__ = "crm_contacts"
    __table_args__ = (
        UniqueConstraint("source", "sender_id"),
        Index("ix_crm_contacts_txid_seq", "txid", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    erased_at: Mapped[datetime | None]
    """When the person's data was erased (LGPD); the row stays for its deals' figures, and it
    takes no new message nor deal."""

    deals: Mapped[list[Deal]] = relationship(back_populates="contact", passive_deletes="all")
    messages: Mapped[list[Message]] = relationship(back_populates="contact", passive_deletes="all")

    def __repr__(self) -> str:
        return f"Contact(id={self.id!s}, source={self.source!r}, sender_id={self.sender_id!r})"
