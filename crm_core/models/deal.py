"""A business opportunity (a vehicle sale, a consortium quota, a legal case) of one contact."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.models.base import Base, Sequenced, TimestampMixin

if TYPE_CHECKING:
    from crm_core.models.contact import Contact


class Deal(Sequenced, TimestampMixin, Base):
    """A deal in a pipeline stage.

    The contact foreign key is ON DELETE RESTRICT: deals are business records and must not
    vanish with a contact, so a contact that has deals cannot be deleted (personal data is
    erased by anonymising the contact instead).
    """

    __tablename__ = "crm_deals"
    __table_args__ = (
        CheckConstraint("amount IS NULL OR amount >= 0", name="amount_not_negative"),
        CheckConstraint("length(currency) = 3", name="currency_iso_4217"),
        Index("ix_crm_deals_txid_seq", "txid", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("crm_contacts.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    pipeline: Mapped[str] = mapped_column(String(32), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="BRL", server_default="BRL")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    contact: Mapped[Contact] = relationship(back_populates="deals")

    def __repr__(self) -> str:
        return f"Deal(id={self.id!s}, pipeline={self.pipeline!r}, stage={self.stage!r})"
