"""Storing accepted messages: contact resolution and deduplication in one transaction.

Everything here works on a batch, because a batch is what the database is good at: one
request of `POST /ingest/messages`, or several concurrent `POST /ingest/message` requests
grouped into one commit (crm_core.services.group_commit). The unique constraints decide what
is new, so two transactions racing over the same contact or the same channel message id end
with one row each, on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, Table, select, text
from sqlalchemy.dialects import postgresql, sqlite

from crm_core.models import Contact, Message
from crm_core.models.base import UTCDateTime, utcnow
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


# On PostgreSQL a batch is sent as arrays (unnest / = ANY): one statement text whatever the
# batch size, so it is parsed and planned once, instead of a VALUES or IN list per size.
_PG_INSERT_CONTACTS = text(
    "INSERT INTO crm_contacts (id, source, sender_id, attributes, created_at, updated_at) "
    "SELECT id, source, sender_id, '{}'::jsonb, :now, :now FROM unnest("
    "CAST(:ids AS uuid[]), CAST(:sources AS varchar[]), CAST(:senders AS varchar[])"
    ") AS batch (id, source, sender_id) "
    "ON CONFLICT (source, sender_id) DO NOTHING"
)
# A join with the batch, so that each pair is an index lookup even when the table's
# statistics are stale (a table that grew fast since its last ANALYZE).
_PG_SELECT_CONTACTS = text(
    "SELECT c.source, c.sender_id, c.id "
    "FROM unnest(CAST(:sources AS varchar[]), CAST(:senders AS varchar[])) "
    "AS k (source, sender_id) "
    "JOIN crm_contacts AS c ON c.source = k.source AND c.sender_id = k.sender_id"
)
_PG_INSERT_MESSAGES = text(
    "INSERT INTO crm_messages "
    "(id, contact_id, source, sender_id, content, metadata, channel_message_id, received_at) "
    "SELECT id, contact_id, source, sender_id, content, metadata, channel_message_id, :now "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:contact_ids AS uuid[]), "
    "CAST(:sources AS varchar[]), CAST(:senders AS varchar[]), CAST(:contents AS text[]), "
    "CAST(:metadata AS jsonb[]), CAST(:channel_ids AS varchar[])) "
    "AS batch (id, contact_id, source, sender_id, content, metadata, channel_message_id) "
    "ON CONFLICT (source, channel_message_id) DO NOTHING RETURNING id"
)

_PG_SELECT_MESSAGES = text(
    "SELECT m.source, m.channel_message_id, m.id, m.contact_id, m.received_at "
    "FROM unnest(CAST(:sources AS varchar[]), CAST(:channel_ids AS varchar[])) "
    "AS k (source, channel_message_id) "
    "JOIN crm_messages AS m "
    "ON m.source = k.source AND m.channel_message_id = k.channel_message_id"
).columns(received_at=UTCDateTime())


def resolve_contacts(
    connection: Connection, keys: Sequence[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], uuid.UUID]:
    """The contact id of each (source, canonical sender id), creating the missing contacts."""
    distinct = sorted(set(keys))  # one order everywhere, so concurrent batches cannot deadlock
    if connection.dialect.name == "postgresql":
        sources = [source for source, _ in distinct]
        senders = [sender_id for _, sender_id in distinct]
        connection.execute(
            _PG_INSERT_CONTACTS,
            {
                "ids": [uuid.uuid4() for _ in distinct],
                "sources": sources,
                "senders": senders,
                "now": now,
            },
        )
        found = connection.execute(_PG_SELECT_CONTACTS, {"sources": sources, "senders": senders})
        return {(source, sender_id): contact_id for source, sender_id, contact_id in found}
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
    # Two IN lists rather than one row-value IN: PostgreSQL plans the latter slowly (tens of
    # milliseconds for 32 pairs). The few extra rows the cross product may match are dropped.
    found = connection.execute(
        select(CONTACTS.c.source, CONTACTS.c.sender_id, CONTACTS.c.id).where(
            CONTACTS.c.source.in_(sorted({source for source, _ in distinct})),
            CONTACTS.c.sender_id.in_(sorted({sender_id for _, sender_id in distinct})),
        )
    )
    wanted = set(distinct)
    return {
        (source, sender_id): contact_id
        for source, sender_id, contact_id in found
        if (source, sender_id) in wanted
    }


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
    inserted = _insert_messages(connection, ordered, now)
    originals = _originals(connection, [row for row in rows if row["id"] not in inserted])
    results = []
    for index, row_index in enumerate(row_of):
        row = rows[row_index]
        if row["id"] in inserted:
            results.append(StoredMessage(row["id"], row["contact_id"], now, not own[index]))
        else:
            results.append(originals[(row["source"], row["channel_message_id"])])
    return results


def _insert_messages(
    connection: Connection, rows: Sequence[dict[str, Any]], now: datetime
) -> set[uuid.UUID]:
    """Insert the rows, skipping those whose channel message id is stored; the ids inserted."""
    if connection.dialect.name == "postgresql":
        result = connection.execute(
            _PG_INSERT_MESSAGES,
            {
                "ids": [row["id"] for row in rows],
                "contact_ids": [row["contact_id"] for row in rows],
                "sources": [row["source"] for row in rows],
                "senders": [row["sender_id"] for row in rows],
                "contents": [row["content"] for row in rows],
                "metadata": [_json(row["metadata"]) for row in rows],
                "channel_ids": [row["channel_message_id"] for row in rows],
                "now": now,
            },
        )
        return {uuid.UUID(str(value)) for value in result.scalars()}
    statement = insert_ignoring_conflicts(
        connection, MESSAGES, "source", "channel_message_id"
    ).returning(MESSAGES.c.id)
    return set(connection.execute(statement, rows).scalars())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _originals(
    connection: Connection, rows: Sequence[dict[str, Any]]
) -> dict[tuple[str, str], StoredMessage]:
    """The stored rows that the given (not inserted) rows duplicate."""
    if not rows:
        return {}
    keys = sorted({(row["source"], row["channel_message_id"]) for row in rows})
    if connection.dialect.name == "postgresql":
        pg_found = connection.execute(
            _PG_SELECT_MESSAGES,
            {"sources": [key[0] for key in keys], "channel_ids": [key[1] for key in keys]},
        )
        return {
            (source, channel_id): StoredMessage(message_id, contact_id, received_at, True)
            for source, channel_id, message_id, contact_id, received_at in pg_found
        }
    found = connection.execute(
        select(
            MESSAGES.c.source,
            MESSAGES.c.channel_message_id,
            MESSAGES.c.id,
            MESSAGES.c.contact_id,
            MESSAGES.c.received_at,
        ).where(
            MESSAGES.c.source.in_(sorted({source for source, _ in keys})),
            MESSAGES.c.channel_message_id.in_(sorted({channel_id for _, channel_id in keys})),
        )
    )
    wanted = set(keys)
    return {
        (source, channel_id): StoredMessage(message_id, contact_id, received_at, duplicate=True)
        for source, channel_id, message_id, contact_id, received_at in found
        if (source, channel_id) in wanted
    }
