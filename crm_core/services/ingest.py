"""Storing accepted messages: contact resolution and deduplication in one transaction.

Everything here works on a batch, because a batch is what the database is good at: one
request of `POST /ingest/messages`, or several concurrent `POST /ingest/message` requests
grouped into one commit (crm_core.services.group_commit). The unique constraints decide what
is new, so two transactions racing over the same contact or the same channel message id end
with one row each, on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from crm_core.models import Contact, Message
from crm_core.models.base import utcnow
from crm_core.schemas.ingest import IngestMessage

CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """Where a message ended up: its row, and whether that row was already there."""

    id: uuid.UUID
    contact_id: uuid.UUID
    received_at: datetime
    duplicate: bool

    def receipt(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "status": "accepted",
            "received_at": self.received_at.isoformat(),
            "contact_id": str(self.contact_id),
        }


def insert_ignoring_conflicts(connection: Connection, table: Table, *columns: str) -> Insert:
    """`INSERT ... ON CONFLICT (columns) DO NOTHING` in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(columns))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(columns))


def resolve_contacts(
    connection: Connection, keys: Sequence[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], uuid.UUID]:
    """The contact id of each (source, canonical sender id), creating the missing contacts."""
    distinct = sorted(set(keys))  # one order everywhere, so concurrent batches cannot deadlock
    rows = [
        {
            "id": uuid.uuid4(),
            "source": source,
            "sender_id": sender_id,
            "attributes": {},
            "created_at": now,
            "updated_at": now,
        }
        for source, sender_id in distinct
    ]
    connection.execute(insert_ignoring_conflicts(connection, CONTACTS, "source", "sender_id"), rows)
    found = connection.execute(
        select(CONTACTS.c.source, CONTACTS.c.sender_id, CONTACTS.c.id).where(
            tuple_(CONTACTS.c.source, CONTACTS.c.sender_id).in_(distinct)
        )
    )
    return {(source, sender_id): contact_id for source, sender_id, contact_id in found}


def store_messages(
    connection: Connection, messages: Sequence[IngestMessage]
) -> list[StoredMessage]:
    """Store each message once, in the caller's transaction; one result per message, in order.

    A message whose (source, channel message id) is already stored, or appears earlier in the
    same batch, is a duplicate: its result is the original row's.
    """
    now = utcnow()
    contact_ids = resolve_contacts(
        connection, [(m.source, m.canonical_sender_id) for m in messages], now
    )
    first_of: dict[tuple[str, str], int] = {}
    rows: list[dict[str, Any]] = []
    row_of: list[int] = []  # message index -> index of the row (its own or its original's)
    own: list[bool] = []  # whether that row was made for this message
    for message in messages:
        channel_id = message.channel_message_id
        key = (message.source, channel_id) if channel_id is not None else None
        if key is not None and key in first_of:
            row_of.append(first_of[key])
            own.append(False)
            continue
        if key is not None:
            first_of[key] = len(rows)
        row_of.append(len(rows))
        own.append(True)
        rows.append(
            {
                "id": uuid.uuid4(),
                "contact_id": contact_ids[(message.source, message.canonical_sender_id)],
                "source": message.source,
                "sender_id": message.sender_id,
                "content": message.content,
                "metadata": message.metadata,
                "channel_message_id": channel_id,
                "received_at": now,
            }
        )
    # Sorted by channel id, so that concurrent batches take the unique index's locks in one order.
    ordered = sorted(rows, key=lambda row: (row["source"], row["channel_message_id"] or ""))
    statement = insert_ignoring_conflicts(
        connection, MESSAGES, "source", "channel_message_id"
    ).returning(MESSAGES.c.id)
    inserted = set(connection.execute(statement, ordered).scalars())
    originals = _originals(connection, [row for row in rows if row["id"] not in inserted])
    results = []
    for index, row_index in enumerate(row_of):
        row = rows[row_index]
        if row["id"] in inserted:
            results.append(StoredMessage(row["id"], row["contact_id"], now, not own[index]))
        else:
            results.append(originals[(row["source"], row["channel_message_id"])])
    return results


def _originals(
    connection: Connection, rows: Sequence[dict[str, Any]]
) -> dict[tuple[str, str], StoredMessage]:
    """The stored rows that the given (not inserted) rows duplicate."""
    if not rows:
        return {}
    keys = sorted({(row["source"], row["channel_message_id"]) for row in rows})
    found = connection.execute(
        select(
            MESSAGES.c.source,
            MESSAGES.c.channel_message_id,
            MESSAGES.c.id,
            MESSAGES.c.contact_id,
            MESSAGES.c.received_at,
        ).where(tuple_(MESSAGES.c.source, MESSAGES.c.channel_message_id).in_(keys))
    )
    return {
        (source, channel_id): StoredMessage(message_id, contact_id, received_at, duplicate=True)
        for source, channel_id, message_id, contact_id, received_at in found
    }
