"""Storing accepted messages: contact resolution, deduplication and erasure checks, in one
transaction.

Everything here works on a batch, because a batch is what the database is good at: one
request of `POST /ingest/messages`, or several concurrent `POST /ingest/message` requests
grouped into one commit (crm_core.services.group_commit). The unique constraints decide what
is new, so two transactions racing over the same contact or the same channel message id end
with one row each, on PostgreSQL and on SQLite alike.

What becomes of each message (`StoredMessage.outcome`):

- `accepted`: stored now, with its contact (created when the sender is new);
- `duplicate`: its (source, channel message id) is stored already with the same content from
  the same person (either form of their number): a re-delivery, answered with the original;
- `conflict`: that id is stored with other content or from another sender, or belonged to an
  erased message of another sender: nothing of it is kept, and the caller is told;
- `erased`: it is a message of a person whose data was erased (a tombstone names its id and
  sender, crm_core.services.tombstones): nothing of it is stored, ever again.

The storing is written once, as steps that each ask the database one thing (`FindContacts`,
`InsertMessages`, ...): PostgreSQL runs each as one statement over arrays, on a sync or an async
connection; SQLite runs each with SQLAlchemy Core. Messages are numbered (`seq`) in the order
they came, so a batch is listed in its own order (crm_core.models.base.Sequenced).
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic_core import to_json
from sqlalchemy import Connection, Table, func, select

from crm_core.database import insert_ignoring_conflicts, outbox_enabled
from crm_core.exceptions import DatabaseUnavailableError
from crm_core.models import Contact, ErasureTombstone, Message
from crm_core.models.base import utc_text, utcnow
from crm_core.schemas.ingest import IngestMessage
from crm_core.services import outbox
from crm_core.services.tombstones import message_digest, sender_digest, tombstone_key

CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
TOMBSTONES: Table = ErasureTombstone.__table__  # type: ignore[assignment]

Outcome = Literal["accepted", "duplicate", "conflict", "erased"]
ContactKey = tuple[str, str]  # (source, canonical sender id)
ChannelKey = tuple[str, str]  # (source, channel message id)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What became of one message (see the module's docstring).

    `id`, `contact_id` and `received_at` name the row: the message's own (`accepted`), the
    original (`duplicate`), the stored message that holds its id (`conflict`; None when that
    message was erased), or nothing (`erased`).
    """

    outcome: Outcome
    id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    received_at: datetime | None = None

    @property
    def duplicate(self) -> bool:
        return self.outcome == "duplicate"

    @property
    def refused(self) -> bool:
        """Nothing of the message was kept (`conflict` or `erased`)."""
        return self.outcome in ("conflict", "erased")

    def receipt(self) -> dict[str, Any]:
        """The receipt of an accepted message or of a duplicate's original."""
        assert self.id is not None
        assert self.contact_id is not None
        assert self.received_at is not None
        return {
            "id": str(self.id),
            "status": "accepted",
            "received_at": utc_text(self.received_at),
            "contact_id": str(self.contact_id),
        }

    def row(self) -> dict[str, str] | None:
        """The stored message a conflict names (None when there is none)."""
        if self.id is None or self.contact_id is None or self.received_at is None:
            return None
        return {
            "id": str(self.id),
            "contact_id": str(self.contact_id),
            "received_at": utc_text(self.received_at),
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


# The steps: what the storing asks the database, one request at a time.


@dataclass(frozen=True, slots=True)
class FindContacts:
    """The contacts of these keys (never an erased one: its sender id is `erased:<id>`): rows
    of (source, sender_id, id).

    On PostgreSQL the rows found stay share-locked (FOR KEY SHARE) until the commit: an
    erasure running meanwhile (which locks its contact FOR UPDATE) is waited for, and the
    contact it erased is then not found; one that starts later waits for this transaction,
    and erases what it stored.
    """

    keys: list[ContactKey]


@dataclass(frozen=True, slots=True)
class CreateContacts:
    """Create the contacts of these keys, numbered in this order, unless they exist (with
    `events`, each one created with its `contact.created` event)."""

    keys: list[ContactKey]
    now: datetime
    events: bool = False


@dataclass(frozen=True, slots=True)
class FindStored:
    """The stored messages with these channel keys: rows of (source, channel_message_id, id,
    contact_id, received_at, content, the contact's canonical sender id)."""

    keys: list[ChannelKey]


@dataclass(frozen=True, slots=True)
class FindTombstones:
    """The tombstones with these message digests: rows of (message_digest, sender_digest)."""

    digests: list[str]


@dataclass(frozen=True, slots=True)
class InsertMessages:
    """Insert these rows (each with its contact), numbered in this order, skipping any whose
    channel key is stored: rows of (id,) for those inserted (with `events`, each with its
    `message.received` event)."""

    rows: list[dict[str, Any]]
    now: datetime
    events: bool = False


@dataclass(frozen=True, slots=True)
class InsertKnown:
    """PostgreSQL only, the usual case in one statement: insert the rows whose sender is a
    contact already (share-locked, as `FindContacts` does), that no tombstone names and whose
    channel key is not stored: rows of (id, contact_id) for those inserted (with `events`,
    each with its `message.received` event)."""

    rows: list[dict[str, Any]]
    now: datetime
    events: bool = False


Request = FindContacts | CreateContacts | FindStored | FindTombstones | InsertMessages | InsertKnown
Rows = list[tuple[Any, ...]]
R = TypeVar("R")
Steps = Generator[Request, Rows, R]


@dataclass(frozen=True, slots=True)
class _Stored:
    """A stored message, as a later message with its channel key is compared with it."""

    id: uuid.UUID
    contact_id: uuid.UUID
    received_at: datetime
    content: str
    canonical_sender: str


@dataclass(slots=True)
class _Plan:
    """A batch laid out for storing: each message's new row id, canonical sender, channel key,
    tombstone digest, and the first message of the batch with the same channel key."""

    messages: Sequence[IngestMessage]
    now: datetime
    key: bytes
    ids: list[uuid.UUID]
    canonical: list[str]
    channel: list[ChannelKey | None]
    first: list[int]
    digests: list[str | None]

    @classmethod
    def of(cls, messages: Sequence[IngestMessage], now: datetime, key: bytes) -> _Plan:
        canonical = [message.canonical_sender_id for message in messages]
        channel: list[ChannelKey | None] = []
        first: list[int] = []
        digests: list[str | None] = []
        first_of: dict[ChannelKey, int] = {}
        for index, message in enumerate(messages):
            channel_id = message.channel_message_id
            if channel_id is None:
                channel.append(None)
                first.append(index)
                digests.append(None)
                continue
            pair = (message.source, channel_id)
            channel.append(pair)
            first.append(first_of.setdefault(pair, index))
            digests.append(message_digest(key, message.source, channel_id))
        ids = new_ids(len(messages))
        return cls(messages, now, key, ids, canonical, channel, first, digests)

    def contact_key(self, index: int) -> ContactKey:
        return (self.messages[index].source, self.canonical[index])

    def candidates(self) -> list[int]:
        """The messages that would be rows, in arrival order: every message without a channel
        id, and the first of each channel key."""
        return [index for index in range(len(self.messages)) if self.first[index] == index]

    def row(self, index: int, contact_id: uuid.UUID | None = None) -> dict[str, Any]:
        message = self.messages[index]
        return {
            "id": self.ids[index],
            "contact_id": contact_id,
            "source": message.source,
            "canonical": self.canonical[index],
            "sender_id": message.sender_id,
            "content": message.content,
            "metadata": message.metadata,
            "channel_message_id": message.channel_message_id,
            "digest": self.digests[index],
            "received_at": self.now,
        }

    def results(
        self,
        inserted: dict[uuid.UUID, uuid.UUID],
        stored: dict[ChannelKey, _Stored],
        tombstones: dict[str, str],
    ) -> list[StoredMessage | None]:
        """Each message's outcome, given the rows inserted (id -> contact id), the stored
        messages and the tombstones met; None where these do not decide it yet."""
        results: list[StoredMessage | None] = []
        for index, message in enumerate(self.messages):
            own = self.ids[index]
            if own in inserted:
                results.append(StoredMessage("accepted", own, inserted[own], self.now))
                continue
            pair, digest = self.channel[index], self.digests[index]
            if pair is None or digest is None:
                results.append(None)
                continue
            if digest in tombstones:
                sender = sender_digest(self.key, pair[0], pair[1], self.canonical[index])
                erased = hmac.compare_digest(tombstones[digest], sender)
                results.append(StoredMessage("erased") if erased else StoredMessage("conflict"))
                continue
            original = stored.get(pair)
            first = self.first[index]
            if original is None and self.ids[first] in inserted:
                original = _Stored(
                    self.ids[first],
                    inserted[self.ids[first]],
                    self.now,
                    self.messages[first].content,
                    self.canonical[first],
                )
            if original is None:
                results.append(None)
                continue
            same = (original.content, original.canonical_sender) == (
                message.content,
                self.canonical[index],
            )
            outcome: Outcome = "duplicate" if same else "conflict"
            results.append(
                StoredMessage(outcome, original.id, original.contact_id, original.received_at)
            )
        return results


def known_steps(
    messages: Sequence[IngestMessage], now: datetime, key: bytes, events: bool = True
) -> Steps[list[StoredMessage | None]]:
    """The usual case in one statement (PostgreSQL): store the messages whose sender is known
    and that are new; their outcomes, and None for each message left for `store_steps`."""
    plan = _Plan.of(messages, now, key)
    returned = yield InsertKnown([plan.row(index) for index in plan.candidates()], now, events)
    return plan.results(dict(returned), {}, {})


def store_steps(
    messages: Sequence[IngestMessage], now: datetime, key: bytes, events: bool = True
) -> Steps[list[StoredMessage]]:
    """Store a batch (any messages): every message's outcome, in order; with `events`, each
    contact created and message stored is written to the outbox too."""
    plan = _Plan.of(messages, now, key)
    candidates = plan.candidates()
    wanted = list(dict.fromkeys(plan.contact_key(index) for index in candidates))
    found = {(s, sender): contact for s, sender, contact in (yield FindContacts(sorted(wanted)))}
    # After FindContacts: an erasure of one of these senders has committed (or waits for us),
    # so its tombstones are seen here.
    tombstones: dict[str, str] = {}
    stored: dict[ChannelKey, _Stored] = {}
    digests = sorted({digest for digest in plan.digests if digest is not None})
    if digests:
        tombstones = {row[0]: row[1] for row in (yield FindTombstones(digests))}
        pairs = {
            pair
            for pair, digest in zip(plan.channel, plan.digests, strict=True)
            if pair is not None and digest not in tombstones
        }
        if pairs:
            stored = _stored_by_key((yield FindStored(sorted(pairs))))
    new = [
        index
        for index in candidates
        if plan.channel[index] is None
        or (plan.digests[index] not in tombstones and plan.channel[index] not in stored)
    ]
    missing = [k for k in dict.fromkeys(plan.contact_key(i) for i in new) if k not in found]
    if missing:
        yield CreateContacts(missing, now, events)
        created = yield FindContacts(sorted(missing))
        found.update({(s, sender): contact for s, sender, contact in created})
    inserted: dict[uuid.UUID, uuid.UUID] = {}
    if new:
        rows = [plan.row(index, found[plan.contact_key(index)]) for index in new]
        ids = {row[0] for row in (yield InsertMessages(rows, now, events))}
        inserted = {row["id"]: row["contact_id"] for row in rows if row["id"] in ids}
        lost = {plan.channel[i] for i in new if plan.ids[i] not in ids}
        if lost:  # stored by a concurrent transaction since FindStored
            keys = sorted(pair for pair in lost if pair is not None)
            stored.update(_stored_by_key((yield FindStored(keys))))
    results = plan.results(inserted, stored, tombstones)
    if any(result is None for result in results):
        # A message stored concurrently, then erased, between two of these steps.
        raise DatabaseUnavailableError("a concurrent erasure changed this batch; retry it")
    return [result for result in results if result is not None]


def _stored_by_key(rows: Rows) -> dict[ChannelKey, _Stored]:
    return {
        (source, channel_id): _Stored(message_id, contact_id, at.astimezone(UTC), content, sender)
        for source, channel_id, message_id, contact_id, at, content, sender in rows
    }


def leftovers(first: Sequence[StoredMessage | None]) -> list[int]:
    """The positions `known_steps` left for `store_steps`."""
    return [index for index, result in enumerate(first) if result is None]


def merge(
    first: Sequence[StoredMessage | None], rest: Sequence[int], stored: Sequence[R]
) -> list[StoredMessage | R]:
    """The results of `known_steps`, completed at `rest` by those of `store_steps` (or by the
    error each of those messages met)."""
    results: list[StoredMessage | R | None] = list(first)
    for index, result in zip(rest, stored, strict=True):
        results[index] = result
    return [result for result in results if result is not None]


def batch_steps(
    messages: Sequence[IngestMessage], now: datetime, key: bytes, events: bool = True
) -> Steps[list[StoredMessage]]:
    """`known_steps`, then `store_steps` for what it left: a batch in one transaction."""
    first = yield from known_steps(messages, now, key, events)
    rest = leftovers(first)
    if not rest:
        return [result for result in first if result is not None]
    stored = yield from store_steps([messages[i] for i in rest], now, key, events)
    return merge(first, rest, stored)


# PostgreSQL: each request is one statement over arrays (unnest), whatever the batch size, so
# it is parsed and planned once, and each pair is an index lookup (a join with the batch) even
# when the table's statistics are stale: so contacts are joined on their unique key alone (an
# erased contact's sender id is `erased:<id>`, a prefix no sender may use). The arrays are
# bound in binary (%(name)b), which psycopg encodes several times faster than their text form.
# A materialized CTE numbers the rows (nextval) once, in arrival order; rows are then inserted
# in one fixed order (by their unique key), so that concurrent batches cannot deadlock on the
# indexes.

PG_FIND_CONTACTS = (
    "SELECT c.source, c.sender_id, c.id FROM unnest(%(sources)b::varchar[], "
    "%(senders)b::varchar[]) AS k (source, sender_id) "
    "JOIN crm_contacts AS c ON c.source = k.source AND c.sender_id = k.sender_id "
    "ORDER BY c.source, c.sender_id FOR KEY SHARE OF c"
)
_PG_CONTACTS_NUMBERED = (
    "WITH b AS MATERIALIZED (SELECT k.source, k.sender_id, nextval('crm_contacts_seq_seq') "
    "AS seq FROM unnest(%(sources)b::varchar[], %(senders)b::varchar[]) AS k (source, sender_id)"
    ")"
)
_PG_CONTACTS_INSERT = (
    "INSERT INTO crm_contacts (id, source, sender_id, attributes, created_at, updated_at, seq) "
    "SELECT gen_random_uuid(), b.source, b.sender_id, '{}'::jsonb, %(now)b, %(now)b, b.seq "
    "FROM b ORDER BY b.source, b.sender_id ON CONFLICT (source, sender_id) DO NOTHING"
)
PG_CREATE_CONTACTS = f"{_PG_CONTACTS_NUMBERED} {_PG_CONTACTS_INSERT}"
PG_CREATE_CONTACTS_EVENTS = (
    f"{_PG_CONTACTS_NUMBERED}, ins AS ({_PG_CONTACTS_INSERT} RETURNING id, source, sender_id, "
    f"seq) {outbox.pg_events_of(outbox.CONTACT_CREATED, outbox.PG_CONTACT_DATA, 'i.id')}"
)
PG_FIND_STORED = (
    "SELECT m.source, m.channel_message_id, m.id, m.contact_id, m.received_at, m.content, "
    "c.sender_id FROM unnest(%(sources)b::varchar[], %(channel_ids)b::varchar[]) "
    "AS k (source, channel_message_id) JOIN crm_messages AS m "
    "ON m.source = k.source AND m.channel_message_id = k.channel_message_id "
    "JOIN crm_contacts AS c ON c.id = m.contact_id"
)
PG_FIND_TOMBSTONES = (
    "SELECT message_digest, sender_digest FROM crm_erasure_tombstones "
    "WHERE message_digest = ANY(%(digests)b::varchar[])"
)
_PG_NUMBERED = (
    "WITH b AS MATERIALIZED (SELECT u.*, nextval('crm_messages_seq_seq') AS seq FROM unnest("
    "%(ids)b::uuid[], {contacts}%(sources)b::varchar[], %(canonical)b::varchar[], "
    "%(senders)b::varchar[], %(contents)b::text[], %(metadata)b::jsonb[], "
    "%(channel_ids)b::varchar[], %(digests)b::varchar[]) AS u (id, {contact}source, canonical, "
    "sender_id, content, metadata, channel_message_id, digest))"
)
_PG_MESSAGES_INSERT = (
    "INSERT INTO crm_messages (id, contact_id, source, sender_id, content, metadata, "
    "channel_message_id, received_at, seq) "
)
_PG_INSERT_ANY = (
    _PG_MESSAGES_INSERT + "SELECT b.id, b.contact_id, b.source, b.sender_id, b.content, "
    "b.metadata, b.channel_message_id, %(now)b, b.seq FROM b ORDER BY b.source, "
    "b.channel_message_id ON CONFLICT (source, channel_message_id) DO NOTHING"
)
_PG_INSERT_KNOWN = (
    _PG_MESSAGES_INSERT + "SELECT b.id, c.id, b.source, b.sender_id, b.content, b.metadata, "
    "b.channel_message_id, %(now)b, b.seq FROM b JOIN crm_contacts AS c "
    "ON c.source = b.source AND c.sender_id = b.canonical "
    "WHERE NOT EXISTS (SELECT 1 FROM crm_erasure_tombstones AS t "
    "WHERE t.message_digest = b.digest) "
    "ORDER BY b.source, b.channel_message_id FOR KEY SHARE OF c "
    "ON CONFLICT (source, channel_message_id) DO NOTHING"
)
_ANY = _PG_NUMBERED.format(contacts="%(contact_ids)b::uuid[], ", contact="contact_id, ")
_KNOWN = _PG_NUMBERED.format(contacts="", contact="")
PG_INSERT_MESSAGES = f"{_ANY} {_PG_INSERT_ANY} RETURNING id"
PG_INSERT_KNOWN = f"{_KNOWN} {_PG_INSERT_KNOWN} RETURNING id, contact_id"
# With the outbox on, the same statements append each inserted message's event too.
_MESSAGE_EVENTS = (
    " RETURNING id, contact_id, source, sender_id, content, metadata, channel_message_id, seq), "
    "ev AS ("
    + outbox.pg_events_of(outbox.MESSAGE_RECEIVED, outbox.PG_MESSAGE_DATA, "i.contact_id")
    + ")"
)
PG_INSERT_MESSAGES_EVENTS = f"{_ANY}, ins AS ({_PG_INSERT_ANY}{_MESSAGE_EVENTS} SELECT id FROM ins"
PG_INSERT_KNOWN_EVENTS = (
    f"{_KNOWN}, ins AS ({_PG_INSERT_KNOWN}{_MESSAGE_EVENTS} SELECT id, contact_id FROM ins"
)

Statement = tuple[str, dict[str, Any]]


def pg_statement(request: Request) -> Statement:
    """The one PostgreSQL statement (psycopg's text and parameters) that runs a request."""
    if isinstance(request, FindContacts | CreateContacts):
        keys: dict[str, Any] = {
            "sources": [source for source, _ in request.keys],
            "senders": [sender for _, sender in request.keys],
        }
        if isinstance(request, FindContacts):
            return PG_FIND_CONTACTS, keys
        if request.events:
            now = {"now": request.now, "now_text": utc_text(request.now)}
            return PG_CREATE_CONTACTS_EVENTS, {**keys, **now}
        return PG_CREATE_CONTACTS, {**keys, "now": request.now}
    if isinstance(request, FindStored):
        return PG_FIND_STORED, {
            "sources": [source for source, _ in request.keys],
            "channel_ids": [channel_id for _, channel_id in request.keys],
        }
    if isinstance(request, FindTombstones):
        return PG_FIND_TOMBSTONES, {"digests": request.digests}
    rows = request.rows
    parameters = {
        "ids": [row["id"] for row in rows],
        "sources": [row["source"] for row in rows],
        "canonical": [row["canonical"] for row in rows],
        "senders": [row["sender_id"] for row in rows],
        "contents": [row["content"] for row in rows],
        "metadata": [to_json(row["metadata"]).decode() for row in rows],
        "channel_ids": [row["channel_message_id"] for row in rows],
        "digests": [row["digest"] for row in rows],
        "now": request.now,
    }
    if request.events:
        parameters["now_text"] = utc_text(request.now)
    if isinstance(request, InsertKnown):
        return (PG_INSERT_KNOWN_EVENTS if request.events else PG_INSERT_KNOWN), parameters
    statement = PG_INSERT_MESSAGES_EVENTS if request.events else PG_INSERT_MESSAGES
    return statement, {**parameters, "contact_ids": [row["contact_id"] for row in rows]}


def run_pg_steps(connection: Connection, steps: Steps[R]) -> R:
    """Run the steps on the DBAPI connection under `connection`'s transaction (PostgreSQL)."""
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        try:
            request = next(steps)
            while True:
                cursor.execute(*pg_statement(request))
                rows = cursor.fetchall() if cursor.description else []
                request = steps.send(rows)
        except StopIteration as done:
            result: R = done.value
            return result


# SQLite: each request through SQLAlchemy Core, inside a transaction that holds the write lock
# from its start (crm_core.database), so nothing changes between two steps.


def run_sqlite_steps(connection: Connection, steps: Steps[R]) -> R:
    """Run the steps on a SQLite connection, in its transaction."""
    try:
        request = next(steps)
        while True:
            request = steps.send(_sqlite(connection, request))
    except StopIteration as done:
        result: R = done.value
        return result


def _sqlite(connection: Connection, request: Request) -> Rows:
    if isinstance(request, FindContacts):
        return _pairs(
            connection,
            select(CONTACTS.c.source, CONTACTS.c.sender_id, CONTACTS.c.id).where(
                CONTACTS.c.erased_at.is_(None)
            ),
            CONTACTS.c.source,
            CONTACTS.c.sender_id,
            request.keys,
        )
    if isinstance(request, CreateContacts):
        base = _last_seq(connection, CONTACTS)
        rows: list[dict[str, Any]] = [
            {
                "id": contact_id,
                "source": source,
                "sender_id": sender_id,
                "attributes": {},
                "created_at": request.now,
                "updated_at": request.now,
                "seq": base + position,
            }
            for position, ((source, sender_id), contact_id) in enumerate(
                zip(request.keys, new_ids(len(request.keys)), strict=True), start=1
            )
        ]
        statement = insert_ignoring_conflicts(connection, CONTACTS, "source", "sender_id")
        created = set(connection.execute(statement.returning(CONTACTS.c.id), rows).scalars())
        if request.events:
            outbox.append(
                connection,
                [
                    outbox.NewEvent(
                        outbox.CONTACT_CREATED,
                        str(row["id"]),
                        outbox.contact_data(
                            row["id"], row["source"], row["sender_id"], request.now
                        ),
                        contact_id=row["id"],
                        time=request.now,
                    )
                    for row in rows
                    if row["id"] in created
                ],
            )
        return []
    if isinstance(request, FindStored):
        query = select(
            MESSAGES.c.source,
            MESSAGES.c.channel_message_id,
            MESSAGES.c.id,
            MESSAGES.c.contact_id,
            MESSAGES.c.received_at,
            MESSAGES.c.content,
            CONTACTS.c.sender_id,
        ).join(CONTACTS, CONTACTS.c.id == MESSAGES.c.contact_id)
        return _pairs(
            connection, query, MESSAGES.c.source, MESSAGES.c.channel_message_id, request.keys
        )
    if isinstance(request, FindTombstones):
        query = select(TOMBSTONES.c.message_digest, TOMBSTONES.c.sender_digest).where(
            TOMBSTONES.c.message_digest.in_(request.digests)
        )
        return [tuple(row) for row in connection.execute(query)]
    if isinstance(request, InsertKnown):
        raise NotImplementedError("InsertKnown is PostgreSQL's")
    base = _last_seq(connection, MESSAGES)
    rows = [
        {
            "id": row["id"],
            "contact_id": row["contact_id"],
            "source": row["source"],
            "sender_id": row["sender_id"],
            "content": row["content"],
            "metadata": row["metadata"],
            "channel_message_id": row["channel_message_id"],
            "received_at": request.now,
            "seq": base + position,
        }
        for position, row in enumerate(request.rows, start=1)
    ]
    statement = insert_ignoring_conflicts(
        connection, MESSAGES, "source", "channel_message_id"
    ).returning(MESSAGES.c.id)
    inserted = list(connection.execute(statement, rows).scalars())
    if request.events:
        kept = set(inserted)
        outbox.append(
            connection,
            [
                outbox.NewEvent(
                    outbox.MESSAGE_RECEIVED,
                    str(row["id"]),
                    outbox.message_data(row, row["contact_id"], request.now),
                    contact_id=row["contact_id"],
                    time=request.now,
                )
                for row in rows
                if row["id"] in kept
            ],
        )
    return [(message_id,) for message_id in inserted]


def _last_seq(connection: Connection, table: Table) -> int:
    return int(connection.execute(select(func.coalesce(func.max(table.c.seq), 0))).scalar_one())


def _pairs(
    connection: Connection, query: Any, first: Any, second: Any, keys: Sequence[tuple[str, str]]
) -> Rows:
    """The rows of `query` whose (first, second) is one of `keys`: two IN lists rather than
    one row-value IN, and the few extra rows their cross product may match dropped."""
    if not keys:
        return []
    wanted = set(keys)
    found = connection.execute(
        query.where(
            first.in_(sorted({a for a, _ in keys})), second.in_(sorted({b for _, b in keys}))
        )
    )
    return [tuple(row) for row in found if (row[0], row[1]) in wanted]


def store_messages(
    connection: Connection, messages: Sequence[IngestMessage]
) -> list[StoredMessage]:
    """Store each message once, in the caller's transaction; one result per message, in order
    (see the module's docstring for the outcomes)."""
    now = utcnow()
    key = tombstone_key(connection)
    events = outbox_enabled(connection)
    if connection.dialect.name == "postgresql":
        return run_pg_steps(connection, batch_steps(messages, now, key, events))
    return run_sqlite_steps(connection, store_steps(messages, now, key, events))
