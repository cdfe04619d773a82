"""API keys: who may call the API, and for what. Only a hash of each key is kept."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, utcnow

SCOPE_INGEST = "ingest"
SCOPE_READ = "read"
SCOPE_READWRITE = "readwrite"
SCOPES = (SCOPE_INGEST, SCOPE_READ, SCOPE_READWRITE)
NAME_MAX_LENGTH = 100


class ApiKey(Base):
    """A bearer key `crm_<prefix>_<secret>`: the prefix finds the row, the hash proves it.

    `ingest` keys may only post messages; `read` keys may only read (the lists, the records
    and the event feed, never an export); `readwrite` keys may use the whole API. A revoked
    key (`revoked_at` set) is refused like an unknown one.
    """

    __tablename__ = "crm_api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('ingest', 'read', 'readwrite')", name="scope_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    scope: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the whole key, in hex."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!s}, name={self.name!r}, scope={self.scope!r})"
