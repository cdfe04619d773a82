"""Erasure tombstones: how the ingest recognises a message of erased data, keeping none of it.

When a contact is erased (crm_core.services.privacy), each of its messages that had a channel
message id leaves a tombstone (crm_core.models.erasure.ErasureTombstone): an HMAC-SHA256 digest
of (source, channel message id), and one of (source, channel message id, canonical sender id),
under a random key of this installation. A message that arrives later with a tombstoned id is
refused (410, stored nowhere) when its sender is the erased one, and is a conflict (409) when
another sender claims the id. The digests cannot be read back; testing one needs the key and
the channel's message id (a random `wamid` on WhatsApp), so they say nothing about the person.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from sqlalchemy import Connection, Table, select

from crm_core.database import insert_ignoring_conflicts
from crm_core.models import ErasureTombstone, InstanceSecret
from crm_core.models.base import utcnow

KEY_NAME = "erasure-tombstones"
KEY_BYTES = 32
_CACHE = "crm_tombstone_key"  # in the pooled connection's `info`

SECRETS: Table = InstanceSecret.__table__  # type: ignore[assignment]
TOMBSTONES: Table = ErasureTombstone.__table__  # type: ignore[assignment]


def message_digest(key: bytes, source: str, channel_message_id: str) -> str:
    """Hex HMAC-SHA256 of (source, channel message id): how a tombstone is looked up."""
    return _digest(key, "message", source, channel_message_id)


def sender_digest(key: bytes, source: str, channel_message_id: str, canonical_sender: str) -> str:
    """Hex HMAC-SHA256 of (source, channel message id, canonical sender id)."""
    return _digest(key, "sender", source, channel_message_id, canonical_sender)


def _digest(key: bytes, *parts: str) -> str:
    # NUL cannot occur in any part (the ingest refuses it), so the joined parts are unambiguous.
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def tombstone_key(connection: Connection) -> bytes:
    """The installation's tombstone key, made on first use.

    Remembered on the pooled connection once read back as committed; a key this call has just
    made is not, since its transaction may still roll back."""
    cached: bytes | None = connection.info.get(_CACHE)
    if cached is not None:
        return cached
    query = select(SECRETS.c.value).where(SECRETS.c.name == KEY_NAME)
    value = connection.execute(query).scalar()
    if value is not None:
        connection.info[_CACHE] = bytes(value)
        return bytes(value)
    connection.execute(
        insert_ignoring_conflicts(connection, SECRETS, "name").values(
            name=KEY_NAME, value=os.urandom(KEY_BYTES), created_at=utcnow()
        )
    )
    return bytes(connection.execute(query).scalar_one())


def bury(
    connection: Connection,
    key: bytes,
    messages: Iterable[tuple[str, str, str]],
) -> int:
    """Write the tombstones of erased messages, each given as (source, channel message id,
    canonical sender id); a tombstone already there is kept. The number written."""
    now = utcnow()
    rows = {
        message_digest(key, source, channel_id): sender_digest(key, source, channel_id, sender)
        for source, channel_id, sender in messages
    }
    if not rows:
        return 0
    statement = insert_ignoring_conflicts(connection, TOMBSTONES, "message_digest")
    connection.execute(
        statement,
        [
            {"message_digest": digest, "sender_digest": sender, "erased_at": now}
            for digest, sender in sorted(rows.items())
        ],
    )
    return len(rows)
