"""The audit log: who exported or erased whose personal data, and when."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, Sequenced, utcnow


class AuditEvent(Sequenced, Base):
    """One audited action (`contact.export`, `contact.erase`) on one subject.

    Append-only by convention: nothing in crm_core updates or deletes these rows. The subject
    id is not a foreign key, so the record outlives whatever it describes.
    """

    __tablename__ = "crm_audit_log"
    __table_args__ = (Index("ix_crm_audit_log_subject_id_seq", "subject_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    action: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID]
    actor: Mapped[str] = mapped_column(String(64))
    """The API key id that acted (`anonymous` when authentication is off)."""
    request_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
