"""What an erasure leaves behind so that it lasts: tombstones, and the key that makes them.

LGPD art. 18, VI gives the person the right to have their data eliminated; art. 16 lets the
controller keep only what a legal or regulatory duty requires. An erasure (crm_core.services.
privacy) removes the person's data, but a channel can deliver one of their old messages again
(WhatsApp re-delivers an unacknowledged webhook for hours; a history sync replays old
conversations). The tombstone is how the ingest recognises such a message and stores nothing of
it, without keeping anything that identifies the person.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, utcnow


class ErasureTombstone(Base):
    """One erased message that had a channel message id ("marca de eliminação").

    Both columns are HMAC-SHA256 digests (hex) under the instance's tombstone key
    (`InstanceSecret`): `message_digest` of (source, channel message id), and
    `sender_digest` of (source, channel message id, canonical sender id). Neither holds the
    message, the id or the phone number, and the sender digest cannot be tested against a
    guessed number without the message id, which for WhatsApp is a random `wamid`.
    """

    __tablename__ = "crm_erasure_tombstones"

    message_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    sender_digest: Mapped[str] = mapped_column(String(64))
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstanceSecret(Base):
    """A random secret of this installation, made once and kept (`erasure-tombstones`: the
    32-byte HMAC key of the tombstones). Changing it would make every tombstone unrecognisable,
    so nothing rotates it."""

    __tablename__ = "crm_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
