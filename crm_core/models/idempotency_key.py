"""Idempotency-Key records (IETF draft-ietf-httpapi-idempotency-key-header)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, utcnow

PROCESSING = "processing"
COMPLETED = "completed"


class IdempotencyKey(Base):
    """One Idempotency-Key of one client, with the fingerprint of its first request.

    The row is committed as `processing` before the request's work starts, so a second
    request with the same key meets it (409 while it runs); the work's own transaction turns
    it `completed` with the response to replay. `(principal, key)` is unique: the database,
    not the application, decides which of two concurrent requests is the first.
    """

    __tablename__ = "crm_idempotency_keys"
    __table_args__ = (
        UniqueConstraint("principal", "key"),
        CheckConstraint("state IN ('processing', 'completed')", name="state_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    principal: Mapped[str] = mapped_column(String(64))
    """Who used the key: the API key's id, or `anonymous` when authentication is off."""
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """sha256 of the method, the path and the raw body of the first request."""
    state: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
