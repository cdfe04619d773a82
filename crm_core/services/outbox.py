"""The transactional outbox (OS 007): every change that matters is written as an event in the
transaction that makes the change, so an event exists if and only if its change committed.

The events are read in commit order (the (`txid`, `seq`) key of the lists,
crm_core.services.pages) by `GET /events` and by the relay to NATS JetStream
(crm_core.services.relay), and served as CloudEvents 1.0 in the JSON event format
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md).

The types (`EVENT_TYPES`) are stable: a consumer may rely on a type's name and on the keys of
its `data`; new keys may be added, none removed or renamed. `data` holds ids and what changed,
never a secret. `message.received` and `contact.created` carry the person's data (the message,
the sender's number): erasing the contact replaces the `data` of every event about them with
`{"contact_id": ..., "erased": true}` in the erasure's transaction (`redact`), and the erasure
is itself an event (`contact.erased`), which tells consumers to delete the copies they hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from crm_core.database import next_seqs, outbox_enabled
from crm_core.models import OutboxEvent, RelayPosition
from crm_core.models.base import utc_text, utcnow
from crm_core.services.pages import Page, page

EVENTS: Table = OutboxEvent.__table__  # type: ignore[assignment]

PREFIX = "br.aurora.crm."
MESSAGE_RECEIVED = PREFIX + "message.received"
MESSAGE_STATUS = PREFIX + "message.status"
MESSAGE_REACTION = PREFIX + "message.reaction"
MESSAGE_EDITED = PREFIX + "message.edited"
MESSAGE_REVOKED = PREFIX + "message.revoked"
CONTACT_CREATED = PREFIX + "contact.created"
CONTACT_ERASED = PREFIX + "contact.erased"
DEAL_CREATED = PREFIX + "deal.created"
DEAL_STAGE_CHANGED = PREFIX + "deal.stage_changed"

EVENT_TYPES: dict[str, str] = {
    MESSAGE_RECEIVED: "A message was stored (subject: its id); data: the message as "
    "GET /messages/{id} shows it.",
    MESSAGE_STATUS: "WhatsApp reported a status of a message (subject: its wamid); data: "
    "status, the message and contact ids when the message is ours.",
    MESSAGE_REACTION: "A reaction to a message (subject: the reaction's wamid); data: the "
    "wamid reacted to, the message and contact ids when the message is ours.",
    MESSAGE_EDITED: "An edit of a message (subject: the edit's wamid); data as a reaction's.",
    MESSAGE_REVOKED: "A message was revoked (subject: the revoke's wamid); data as a reaction's.",
    CONTACT_CREATED: "A contact was created by its first message (subject: its id); data: "
    "id, source, canonical sender id, created_at.",
    CONTACT_ERASED: "A contact's data was erased at the person's request (LGPD; subject: "
    "its id): delete every copy of its data.",
    DEAL_CREATED: "A deal was created (subject: its id); data: the deal as GET /deals/{id} "
    "shows it, without its history.",
    DEAL_STAGE_CHANGED: "A deal moved to another stage (subject: its id); data: deal_id, "
    "from_stage, to_stage, changed_by, changed_at.",
}
"""Every event type, with what it means."""

WHATSAPP_EVENT_TYPES = {
    "reaction": MESSAGE_REACTION,
    "edit": MESSAGE_EDITED,
    "revoke": MESSAGE_REVOKED,
}
"""The type of the event of each kind of WhatsApp message event (crm_core.models.whatsapp)."""

SPECVERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type (one of `EVENT_TYPES`), subject, JSON-ready data and the
    contact it is about (None when it is about no one); `time` is the change's time (now when
    None)."""

    type: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    contact_id: uuid.UUID | None = None
    time: datetime | None = None


def append(connection: Connection, events: Sequence[NewEvent]) -> int:
    """Write `events`, in this order, in the connection's transaction: the number written (0
    when the outbox is off, `CRM_OUTBOX=false`)."""
    if not events or not outbox_enabled(connection):
        return 0
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "type": event.type,
            "subject": event.subject,
            "time": event.time or now,
            "contact_id": event.contact_id,
            "data": event.data,
            "seq": seq,
        }
        for event, seq in zip(events, next_seqs(connection, EVENTS, len(events)), strict=True)
    ]
    connection.execute(insert(EVENTS), rows)
    return len(rows)


def erased_data(contact_id: uuid.UUID) -> dict[str, Any]:
    """What an event about an erased contact holds instead of its data."""
    return {"contact_id": str(contact_id), "erased": True}


WAMID_SUBJECTS = (MESSAGE_STATUS, MESSAGE_REACTION, MESSAGE_EDITED, MESSAGE_REVOKED)
"""The types whose subject is a wamid (an id of the person's message on WhatsApp)."""


def redact(connection: Connection, contact_id: uuid.UUID) -> int:
    """Replace the data of every event about the contact with `erased_data`, and a wamid
    subject with the contact's id (the erasure's transaction): the number of events redacted.
    Their ids, types and order stay, so a consumer's cursor still holds."""
    subject = case((EVENTS.c.type.in_(WAMID_SUBJECTS), str(contact_id)), else_=EVENTS.c.subject)
    result = connection.execute(
        update(EVENTS)
        .where(EVENTS.c.contact_id == contact_id)
        .values(data=erased_data(contact_id), subject=subject)
    )
    return int(getattr(result, "rowcount", 0))


# The data of each type, as the SQLite path builds it in Python and PostgreSQL's statements
# build it in SQL (crm_core.services.ingest): the two are kept equal by the OS 007 scenarios,
# which read both databases' events against GET /messages/{id}.


def message_data(
    row: dict[str, Any], contact_id: uuid.UUID, received_at: datetime
) -> dict[str, Any]:
    """The data of `message.received`: the message as GET /messages/{id} shows it."""
    return {
        "id": str(row["id"]),
        "contact_id": str(contact_id),
        "source": row["source"],
        "sender_id": row["sender_id"],
        "content": row["content"],
        "metadata": row["metadata"],
        "channel_message_id": row["channel_message_id"],
        "received_at": utc_text(received_at),
    }


PG_MESSAGE_DATA = (
    "jsonb_build_object('id', i.id, 'contact_id', i.contact_id, 'source', i.source, "
    "'sender_id', i.sender_id, 'content', i.content, 'metadata', i.metadata, "
    "'channel_message_id', i.channel_message_id, 'received_at', %(now_text)s::text)"
)


def contact_data(
    contact_id: uuid.UUID, source: str, sender_id: str, now: datetime
) -> dict[str, Any]:
    """The data of `contact.created`."""
    return {
        "id": str(contact_id),
        "source": source,
        "sender_id": sender_id,
        "created_at": utc_text(now),
    }


PG_CONTACT_DATA = (
    "jsonb_build_object('id', i.id, 'source', i.source, 'sender_id', i.sender_id, "
    "'created_at', %(now_text)s::text)"
)


def pg_events_of(kind: str, data: str, contact: str) -> str:
    """The SQL that appends one event of type `kind` for each row of the CTE `ins` (which
    returns `id` and `seq`), in `seq` order, with `data` and `contact` as SQL over `i` (a row
    of `ins`). The subquery's ORDER BY with OFFSET 0 is evaluated before the outer nextval, so
    the events are numbered in the rows' order."""
    return (
        "INSERT INTO crm_events (id, type, subject, time, contact_id, data, seq) "
        f"SELECT gen_random_uuid(), '{kind}', i.id::text, %(now)b, {contact}, {data}, "
        "nextval('crm_events_seq_seq') FROM (SELECT * FROM ins ORDER BY seq OFFSET 0) AS i"
    )


# Reading: the feed.


def cloud_event(row: OutboxEvent, source: str) -> dict[str, Any]:
    """The event as a CloudEvents 1.0 JSON object (`source`: the producer's URI-reference,
    `CRM_EVENT_SOURCE`)."""
    return {
        "specversion": SPECVERSION,
        "id": str(row.id),
        "source": source,
        "type": row.type,
        "subject": row.subject,
        "time": utc_text(row.time),
        "datacontenttype": DATA_CONTENT_TYPE,
        "data": row.data,
    }


def read_events(
    session: Session, *, cursor: str | None, limit: int, types: Sequence[str] = ()
) -> Page[OutboxEvent]:
    """The events after `cursor` (oldest first, in commit order), only of `types` when given.
    Raises Problem(400) for a cursor this API did not give out."""
    query = select(OutboxEvent)
    if types:
        query = query.where(OutboxEvent.type.in_(sorted(set(types))))
    return page(session, query, OutboxEvent, cursor=cursor, limit=limit)


# Retention.


@dataclass(frozen=True, slots=True)
class Pruned:
    """What `prune` did: events deleted, and events old enough kept because the relay has not
    published them yet."""

    deleted: int
    kept_unpublished: int


def prune(session: Session, older_than: timedelta, *, relay_stream: str | None) -> Pruned:
    """Delete the events older than `older_than`, but never one a relay has not published.

    With `relay_stream` (a relay is configured: `CRM_NATS_URL`, `CRM_NATS_STREAM`), only events
    at or before that stream's recorded position, and none while it has none. Without, the
    positions recorded by any relay (a stream used before) are respected all the same: only
    events at or before the least advanced one."""
    cutoff = utcnow() - older_than
    old = OutboxEvent.time < cutoff
    query = select(RelayPosition.txid, RelayPosition.seq)
    if relay_stream is not None:
        query = query.where(RelayPosition.stream == relay_stream)
    positions = session.execute(query).all()
    condition: Any = old
    if positions:
        least = min((txid, seq) for txid, seq in positions)
        condition = and_(old, tuple_(OutboxEvent.txid, OutboxEvent.seq) <= tuple_(*least))
    elif relay_stream is not None:
        condition = false()
    deleted = session.execute(delete(OutboxEvent).where(condition))
    waiting = session.scalar(select(func.count()).select_from(OutboxEvent).where(old)) or 0
    session.commit()
    return Pruned(int(getattr(deleted, "rowcount", 0)), int(waiting))
