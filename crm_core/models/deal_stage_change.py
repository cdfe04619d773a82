"""The stage history of a deal: one row per move, the first one its creation."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, Sequenced, utcnow


class DealStageChange(Sequenced, Base):
    """A deal entering `to_stage` (from `from_stage`, NULL when the deal was created).

    A deal's history is in `seq` order: moves of one deal are serialized (its row is locked,
    or the database written by one transaction at a time), and each takes its `seq` after
    the lock, so `seq` follows the order of the moves.
    """

    __tablename__ = "crm_deal_stage_changes"
    __table_args__ = (Index("ix_crm_deal_stage_changes_deal_id_seq", "deal_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    deal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_deals.id", ondelete="RESTRICT"))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(64))
    """The API key id that made the change."""
