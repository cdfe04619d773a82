"""Storing accepted messages: contact resolution and deduplication in one transaction.

Everything here works on a batch, because a batch is what the database is good at: one
request of `POST /ingest/messages`, or several concurrent `POST /ingest/message` requests
grouped into one commit (crm_core.services.group_commit). The unique constraints decide what
is new, so two transactions racing over the same contact or the same channel message id end
with one row each, on PostgreSQL and on SQLite alike.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic_core import to_json
from sqlalchemy import Connection, Insert, Table, select
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
            "received_at": utc_text(self.received_at),
            "contact_id": str(self.contact_id),
        }


_UUID_FIELDS = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits
_UUID_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)


def new_ids(count: int) -> list[uuid.UUID]:
    """`count` random (version 4) UUIDs, as `uuid.uuid4` makes them, from one read of the
    system's random source instead of one read each."""
    raw = os.urandom(16 * count)
    from_bytes = int.from_bytes
    return [
        uuid.UUID(int=(from_bytes(raw[i : i + 16]) & _UUID_FIELDS) | _UUID_VERSION_4)
        for i in range(0, 16 * count, 16)
    ]


@functools.lru_cache(maxsize=256)  # the messages of one commit share their time
def utc_text(moment: datetime) -> str:
    """ISO 8601 with a `Z`, as the API writes every UTC timestamp."""
    return moment.isoformat().replace("+00:00", "Z")


def insert_ignoring_conflicts(connection: Connection, table: Table, *columns: str) -> Insert:
    """`INSERT ... ON CONFLICT (columns) DO NOTHING` in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(columns))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(columns))


# On PostgreSQL a batch is sent as arrays (unnest): one statement text whatever the batch size,
# so it is parsed and planned once, and each pair is an index lookup (a join with the batch)
# even when the table's statistics are stale. The arrays are bound in binary (%(name)b), which
# psycopg encodes several times faster than their text form. The statements are psycopg's, run
# by the sync path (the DBAPI connection under SQLAlchemy's transaction) and the async one.
PG_INSERT_CONTACTS = (
    "INSERT INTO crm_contacts (id, source, sender_id, attributes, created_at, updated_at) "
    "SELECT gen_random_uuid(), source, sender_id, '{}'::jsonb, %(now)b, %(now)b FROM unnest("
    "%(sources)b::varchar[], %(senders)b::varchar[]) AS b (source, sender_id) "
    "ON CONFLICT (source, sender_id) DO NOTHING"
)
PG_SELECT_CONTACTS = (
    "SELECT c.source, c.sender_id, c.id FROM unnest(%(sources)b::varchar[], "
    "%(senders)b::varchar[]) AS k (source, sender_id) "
    "JOIN crm_contacts AS c ON c.source = k.source AND c.sender_id = k.sender_id"
)
PG_INSERT_MESSAGES = (
    "INSERT INTO crm_messages "
    "(id, contact_id, source, sender_id, content, metadata, channel_message_id, received_at) "
    "SELECT id, contact_id, source, sender_id, content, metadata, channel_message_id, %(now)b "
    "FROM unnest(%(ids)b::uuid[], %(contact_ids)b::uuid[], %(sources)b::varchar[], "
    "%(senders)b::varchar[], %(contents)b::text[], %(metadata)b::jsonb[], "
    "%(channel_ids)b::varchar[]) "
    "AS b (id, contact_id, source, sender_id, content, metadata, channel_message_id) "
    "ON CONFLICT (source, channel_message_id) DO NOTHING RETURNING id"
)
# The usual case in one statement: store the messages whose sender is already a contact, in
# the order that every batch uses (so that concurrent ones cannot deadlock); a message of a new
# sender, or one already stored, is left for `pg_steps`. The group committer runs it as a
# transaction of its own, a batch inside its one transaction (`pg_batch_steps`). Like the
# statements above, it takes the batch as arrays bound in binary.
PG_INSERT_KNOWN = (
    "INSERT INTO crm_messages "
    "(id, contact_id, source, sender_id, content, metadata, channel_message_id, received_at) "
    "SELECT b.id, c.id, b.source, b.sender_id, b.content, b.metadata, b.channel_message_id, "
    "%(now)b FROM unnest(%(ids)b::uuid[], %(sources)b::varchar[], %(canonical)b::varchar[], "
    "%(senders)b::varchar[], %(contents)b::text[], %(metadata)b::jsonb[], "
    "%(channel_ids)b::varchar[]) WITH ORDINALITY "
    "AS b (id, source, canonical, sender_id, content, metadata, channel_message_id, position) "
    "JOIN crm_contacts AS c ON c.source = b.source AND c.sender_id = b.canonical "
    "ORDER BY b.position "
    "ON CONFLICT (source, channel_message_id) DO NOTHING RETURNING id, contact_id"
)
PG_SELECT_MESSAGES = (
    "SELECT m.source, m.channel_message_id, m.id, m.contact_id, m.received_at "
    "FROM unnest(%(sources)b::varchar[], %(channel_ids)b::varchar[]) "
    "AS k (source, channel_message_id) JOIN crm_messages AS m "
    "ON m.source = k.source AND m.channel_message_id = k.channel_message_id"
)

Statement = tuple[str, dict[str, Any]]
T = TypeVar("T")
PgSteps = Generator[Statement, list[tuple[Any, ...]], list["StoredMessage"]]


@dataclass(slots=True)
class _Plan:
    """A batch laid out as rows: duplicates inside it point at their first occurrence."""

    now: datetime
    contact_keys: list[tuple[str, str]]  # distinct (source, canonical sender), sorted
    rows: list[dict[str, Any]]
    row_keys: list[tuple[str, str]]  # each row's contact key
    row_of: list[int]  # message index -> index of its row (its own or its original's)
    own: list[bool]  # whether that row was made for this message

    @classmethod
    def of(cls, messages: Sequence[IngestMessage], now: datetime) -> _Plan:
        first_of: dict[tuple[str, str], int] = {}
        rows: list[dict[str, Any]] = []
        row_keys: list[tuple[str, str]] = []
        row_of: list[int] = []
        own: list[bool] = []
        ids = new_ids(len(messages))
        for message, row_id in zip(messages, ids, strict=True):
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
            row_keys.append((message.source, message.canonical_sender_id))
            rows.append(
                {
                    "id": row_id,
                    "contact_id": None,
                    "source": message.source,
                    "sender_id": message.sender_id,
                    "content": message.content,
                    "metadata": message.metadata,
                    "channel_message_id": channel_id,
                    "received_at": now,
                }
            )
        # One order everywhere, so that concurrent batches cannot deadlock on the indexes.
        return cls(now, sorted(set(row_keys)), rows, row_keys, row_of, own)

    def attach(self, contact_ids: dict[tuple[str, str], uuid.UUID]) -> list[dict[str, Any]]:
        """Give each row its contact; the rows in the order they are inserted."""
        for row, key in zip(self.rows, self.row_keys, strict=True):
            row["contact_id"] = contact_ids[key]
        return [self.rows[index] for index in self.insert_order()]

    def insert_order(self) -> list[int]:
        """The rows' positions in the one order every batch inserts them in."""
        return sorted(
            range(len(self.rows)),
            key=lambda i: (self.rows[i]["source"], self.rows[i]["channel_message_id"] or ""),
        )

    def not_inserted(self, inserted: set[uuid.UUID]) -> list[tuple[str, str]]:
        missing = {
            (row["source"], row["channel_message_id"])
            for row in self.rows
            if row["id"] not in inserted
        }
        return sorted(missing)

    def results(
        self, inserted: set[uuid.UUID], originals: dict[tuple[str, str], StoredMessage]
    ) -> list[StoredMessage]:
        results = []
        for index, row_index in enumerate(self.row_of):
            row = self.rows[row_index]
            if row["id"] in inserted:
                duplicate = not self.own[index]
                results.append(StoredMessage(row["id"], row["contact_id"], self.now, duplicate))
            else:
                results.append(originals[(row["source"], row["channel_message_id"])])
        return results


KnownSteps = Generator[Statement, list[tuple[Any, ...]], list["StoredMessage | None"]]


def pg_known_steps(messages: Sequence[IngestMessage], now: datetime) -> KnownSteps:
    """Store, in one statement, the messages whose sender is a contact already and that are not
    stored yet: their results, and None for each other message (for `pg_steps`)."""
    plan = _Plan.of(messages, now)
    order = plan.insert_order()
    rows = [plan.rows[i] for i in order]
    returned = yield (
        PG_INSERT_KNOWN,
        {
            "ids": [row["id"] for row in rows],
            "sources": [row["source"] for row in rows],
            "canonical": [plan.row_keys[i][1] for i in order],
            "senders": [row["sender_id"] for row in rows],
            "contents": [row["content"] for row in rows],
            "metadata": [to_json(row["metadata"]).decode() for row in rows],
            "channel_ids": [row["channel_message_id"] for row in rows],
            "now": now,
        },
    )
    contact_of: dict[uuid.UUID, uuid.UUID] = dict(returned)
    results: list[StoredMessage | None] = []
    for index, row_index in enumerate(plan.row_of):
        row_id = plan.rows[row_index]["id"]
        contact_id = contact_of.get(row_id)
        if contact_id is None:
            results.append(None)
        else:
            results.append(StoredMessage(row_id, contact_id, now, not plan.own[index]))
    return results


def leftovers(first: Sequence[StoredMessage | None]) -> list[int]:
    """The positions `pg_known_steps` left for `pg_steps`."""
    return [index for index, result in enumerate(first) if result is None]


def pg_steps(messages: Sequence[IngestMessage], now: datetime) -> PgSteps:
    """The statements that store a batch on PostgreSQL, each sent its predecessor's rows."""
    plan = _Plan.of(messages, now)
    sources = [source for source, _ in plan.contact_keys]
    senders = [sender_id for _, sender_id in plan.contact_keys]
    found = yield PG_SELECT_CONTACTS, {"sources": sources, "senders": senders}
    contact_ids = {(source, sender): contact for source, sender, contact in found}
    if len(contact_ids) < len(plan.contact_keys):  # new senders: create their contacts
        new = [key for key in plan.contact_keys if key not in contact_ids]
        keys = {"sources": [source for source, _ in new], "senders": [sender for _, sender in new]}
        yield PG_INSERT_CONTACTS, {**keys, "now": now}
        created = yield PG_SELECT_CONTACTS, keys
        contact_ids.update({(source, sender): contact for source, sender, contact in created})
    rows = plan.attach(contact_ids)
    returned = yield (
        PG_INSERT_MESSAGES,
        {
            "ids": [row["id"] for row in rows],
            "contact_ids": [row["contact_id"] for row in rows],
            "sources": [row["source"] for row in rows],
            "senders": [row["sender_id"] for row in rows],
            "contents": [row["content"] for row in rows],
            "metadata": [to_json(row["metadata"]).decode() for row in rows],
            "channel_ids": [row["channel_message_id"] for row in rows],
            "now": now,
        },
    )
    inserted = {row[0] for row in returned}
    missing = plan.not_inserted(inserted)
    originals: dict[tuple[str, str], StoredMessage] = {}
    if missing:
        stored = yield (
            PG_SELECT_MESSAGES,
            {
                "sources": [source for source, _ in missing],
                "channel_ids": [channel_id for _, channel_id in missing],
            },
        )
        originals = {
            (source, channel_id): StoredMessage(message_id, contact_id, at.astimezone(UTC), True)
            for source, channel_id, message_id, contact_id, at in stored
        }
    return plan.results(inserted, originals)


def merge(
    first: Sequence[StoredMessage | None], rest: Sequence[int], stored: Sequence[T]
) -> list[StoredMessage | T]:
    """The results of `pg_known_steps`, completed at `rest` by those of `pg_steps` (or by the
    error each of those messages met)."""
    results: list[StoredMessage | T | None] = list(first)
    for index, result in zip(rest, stored, strict=True):
        results[index] = result
    return [result for result in results if result is not None]


def pg_batch_steps(messages: Sequence[IngestMessage], now: datetime) -> PgSteps:
    """`pg_known_steps`, then `pg_steps` for what it left: a batch stored in one transaction."""
    first = yield from pg_known_steps(messages, now)
    rest = leftovers(first)
    if not rest:
        return [result for result in first if result is not None]
    stored = yield from pg_steps([messages[i] for i in rest], now)
    return merge(first, rest, stored)


def run_pg_steps(connection: Connection, steps: Generator[Statement, Any, Any]) -> Any:
    """Run the steps on the DBAPI connection under `connection`'s transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        try:
            statement, parameters = next(steps)
            while True:
                cursor.execute(statement, parameters)
                rows = cursor.fetchall() if cursor.description else []
                statement, parameters = steps.send(rows)
        except StopIteration as done:
            stored: list[StoredMessage] = done.value
            return stored


def resolve_contacts(
    connection: Connection, keys: Sequence[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], uuid.UUID]:
    """The contact id of each (source, canonical sender id), creating the missing contacts
    (the SQLite path; PostgreSQL runs `pg_steps`)."""
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
    # Two IN lists rather than one row-value IN; the few extra rows the cross product of the
    # two lists may match are dropped.
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
    if connection.dialect.name == "postgresql":
        stored: list[StoredMessage] = run_pg_steps(connection, pg_batch_steps(messages, now))
        return stored
    plan = _Plan.of(messages, now)
    rows = plan.attach(resolve_contacts(connection, plan.contact_keys, now))
    inserted = _insert_messages(connection, rows)
    return plan.results(inserted, _originals(connection, plan.not_inserted(inserted)))


def _insert_messages(connection: Connection, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert the rows, skipping those whose channel message id is stored; the ids inserted."""
    statement = insert_ignoring_conflicts(
        connection, MESSAGES, "source", "channel_message_id"
    ).returning(MESSAGES.c.id)
    return set(connection.execute(statement, rows).scalars())


def _originals(
    connection: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], StoredMessage]:
    """The stored rows that the given (source, channel message id) pairs name."""
    if not keys:
        return {}
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
