"""The stage history of a deal: one row per move, the first one its creation."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, utcnow


class DealStageChange(Base):
    """A deal entering `to_stage` (from `from_stage`, NULL when the deal was created)."""

    __tablename__ = "crm_deal_stage_changes"
    __table_args__ = (
        Index("ix_crm_deal_stage_changes_deal_id_changed_at", "deal_id", "changed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    deal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("crm_deals.id", ondelete="RESTRICT"))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_by: Mapped[str] = mapped_column(String(64))
    """The API key id that made the change."""
