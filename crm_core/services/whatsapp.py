"""A WhatsApp Cloud API delivery, read and stored in one transaction.

Meta posts a delivery (`object: "whatsapp_business_account"`) holding entries, each with
changes; a change of field `messages` carries inbound messages, status updates of messages,
the senders' profiles and the business number it came to (`metadata.phone_number_id`,
`display_phone_number`). Other change fields (`account_update`, templates, ...) are not
about conversations: they are acknowledged and ignored.

What is stored, all in the caller's transaction:

- each inbound message, through the ingest's own write path (crm_core.services.ingest
  .store_messages) as a message of source `whatsapp`: once by its wamid, filed under the same
  contact as through `POST /ingest/message`, never stored for an erased person (tombstone);
  every type is stored, the whole message object Meta sent kept in its metadata;
- each reaction, edit and revoke as an event of the message it refers to
  (`crm_message_events`, once by its own wamid); the earlier message is never changed;
- each status as a row of `crm_message_statuses`, once per (wamid, status), also for a
  message that is not ours (sent by another system).

Statuses and events that refer to a message of erased data (a tombstone names its wamid) are
not stored. Meta re-delivers a delivery until it gets a 2xx: every part of a re-delivery is
stored at most once, by the database's unique constraints, also under concurrent re-deliveries.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import Connection, Table, and_, select, update

from crm_core.database import insert_ignoring_conflicts, next_seqs, outbox_enabled
from crm_core.models import Contact, ErasureTombstone, Message, MessageEvent, MessageStatus
from crm_core.models.base import utc_text, utcnow
from crm_core.models.whatsapp import MAX_WAMID_CHARS
from crm_core.schemas.ingest import MAX_CONTENT_CHARS, IngestMessage
from crm_core.schemas.text import unstorable
from crm_core.services import outbox
from crm_core.services.ingest import StoredMessage, new_ids, store_messages
from crm_core.services.senders import WHATSAPP, InvalidSenderError, canonical_sender_id
from crm_core.services.tombstones import message_digest, tombstone_key

logger = logging.getLogger("crm_core.whatsapp")

BUSINESS_ACCOUNT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"
EVENT_KINDS = ("reaction", "edit", "revoke")
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

STATUSES: Table = MessageStatus.__table__  # type: ignore[assignment]
EVENTS: Table = MessageEvent.__table__  # type: ignore[assignment]
CONTACTS: Table = Contact.__table__  # type: ignore[assignment]
TOMBSTONES: Table = ErasureTombstone.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]


# The shape of a delivery: only what is read is declared; everything else is allowed, and
# kept where it is stored (forward compatible with the fields Meta adds).


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Change(_Open):
    field: str
    value: dict[str, Any] = Field(default_factory=dict)


class Entry(_Open):
    changes: list[Change] = Field(default_factory=list)


class Delivery(_Open):
    """A webhook delivery of the WhatsApp Cloud API."""

    object: Literal["whatsapp_business_account"]
    entry: list[Entry] = Field(default_factory=list)


class WhatsAppMessage(IngestMessage):
    """An inbound message as the ingest stores it. Its sender (`wa_id`) comes from a signed
    delivery, so it is Meta's word: it is never refused by a numbering-plan check; when
    crm_core.services.senders refuses it, its digits are its contact's id."""

    @field_validator("sender_id")
    @classmethod
    def _sender_valid_for_source(cls, value: str, info: ValidationInfo) -> str:
        return value

    @property
    def canonical_sender_id(self) -> str:
        return whatsapp_contact_id(self.sender_id)


def whatsapp_contact_id(wa_id: str) -> str:
    """The contact id of a WhatsApp `wa_id`: the canonical sender id of `POST /ingest/message`
    (E.164 digits, Brazilian ninth digit), or its digits when that refuses it."""
    try:
        return canonical_sender_id(WHATSAPP, wa_id)
    except InvalidSenderError:
        return "".join(char for char in wa_id if char.isdigit()) or wa_id


@dataclass(slots=True)
class DeliveryPlan:
    """What one delivery asks to store, in the order it came."""

    messages: list[IngestMessage] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # contact id -> profile name
    statuses: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # parts that name no message (no id), counted, never stored


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of a delivery: counts, no personal data."""

    messages: int
    duplicates: int
    erased: int
    conflicts: int
    statuses: int
    events: int
    skipped: int

    def body(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "duplicate_messages": self.duplicates,
            "erased_messages": self.erased,
            "conflicting_messages": self.conflicts,
            "statuses": self.statuses,
            "events": self.events,
            "skipped": self.skipped,
        }


def read_delivery(document: Any) -> DeliveryPlan:
    """The plan of a parsed delivery; ValidationError when it is not a WhatsApp Business
    Account webhook (not an object, another `object`, entries or changes malformed)."""
    delivery = Delivery.model_validate(storable_document(document))
    plan = DeliveryPlan()
    for entry in delivery.entry:
        for change in entry.changes:
            if change.field == MESSAGES_FIELD:
                _read_value(change.value, plan)
    return plan


def storable_document(document: Any) -> Any:
    """The document with every string the databases cannot hold (a NUL, a lone surrogate:
    crm_core.schemas.text) made storable, each such character replaced by U+FFFD: a signed
    delivery is Meta's word, never refused for its text, and never a database error."""
    if isinstance(document, str):
        return _storable_text(document)
    if isinstance(document, list):
        return [storable_document(item) for item in document]
    if isinstance(document, dict):
        return {_storable_text(key): storable_document(value) for key, value in document.items()}
    return document


def _storable_text(text: str) -> str:
    if unstorable(text) is None:
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def _read_value(value: dict[str, Any], plan: DeliveryPlan) -> None:
    business = value.get("metadata")
    business = business if isinstance(business, dict) else {}
    number = {
        key: business[key]
        for key in ("phone_number_id", "display_phone_number")
        if isinstance(business.get(key), str)
    }
    for profile in _objects(value.get("contacts")):
        name = (profile.get("profile") or {}).get("name") if isinstance(profile, dict) else None
        wa_id = profile.get("wa_id")
        if isinstance(name, str) and name.strip() and isinstance(wa_id, str) and wa_id:
            plan.names.setdefault(whatsapp_contact_id(wa_id), name.strip()[:200])
    for message in _objects(value.get("messages")):
        _read_message(message, number, plan)
    for status in _objects(value.get("statuses")):
        wamid, state = status.get("id"), status.get("status")
        if not (_wamid(wamid) and isinstance(state, str) and 0 < len(state) <= 32):
            plan.skipped += 1
            continue
        plan.statuses.append({"wamid": wamid, "status": state, "payload": {**status, **number}})


def _objects(items: Any) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _wamid(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_WAMID_CHARS


def _read_message(message: dict[str, Any], number: dict[str, str], plan: DeliveryPlan) -> None:
    wamid, sender, kind = message.get("id"), message.get("from"), message.get("type")
    if not isinstance(kind, str) or not kind:
        kind = "unsupported"
    if not (isinstance(wamid, str) and _wamid(wamid) and isinstance(sender, str) and sender):
        plan.skipped += 1
        return
    if kind in EVENT_KINDS:
        referenced = _referenced(message, kind)
        if referenced is None:
            plan.skipped += 1
            return
        plan.events.append(
            {
                "event_wamid": wamid,
                "message_wamid": referenced,
                "kind": kind,
                "payload": {**message, **number},
            }
        )
        return
    plan.messages.append(_ingest_message(message, wamid, sender, kind, number))


def _referenced(message: dict[str, Any], kind: str) -> str | None:
    """The wamid an event refers to: `reaction.message_id`, or for an edit or a revoke the
    original message's id (`original_message_id`, `message_id`, or the `context.id`)."""
    body = message.get(kind)
    body = body if isinstance(body, dict) else {}
    context = message.get("context")
    context = context if isinstance(context, dict) else {}
    for candidate in (
        body.get("message_id"),
        body.get("original_message_id"),
        context.get("id"),
    ):
        if _wamid(candidate):
            return str(candidate)
    return None


def _ingest_message(
    message: dict[str, Any], wamid: str, sender: str, kind: str, number: dict[str, str]
) -> IngestMessage:
    media = message.get(kind) if kind in MEDIA_TYPES else None
    metadata: dict[str, Any] = {"message_id": wamid, "type": kind, **number}
    if isinstance(media, dict):
        metadata["media"] = {
            key: media[key]
            for key in ("id", "mime_type", "sha256", "caption", "filename", "voice", "animated")
            if key in media
        }
    metadata["message"] = message
    content = content_of(message, kind)
    try:
        return WhatsAppMessage(
            source=WHATSAPP, sender_id=sender, content=content, metadata=metadata
        )
    except ValidationError as exc:
        # Never refused: what the ingest cannot hold (text no database stores, metadata past
        # its limits) leaves, and the reason stays with the message.
        reasons = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
        slim = {key: value for key, value in metadata.items() if key != "message"}
        slim.pop("media", None)
        slim["unstorable"] = reasons
        readable = content if "content" not in reasons else f"[{kind}]"
        return WhatsAppMessage.model_construct(
            source=WHATSAPP, sender_id=sender, content=readable, metadata=slim
        )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def content_of(message: dict[str, Any], kind: str) -> str:
    """The readable content of an inbound message: its text, caption or chosen reply, else a
    short placeholder naming its type (`[image]`, `[location] ...`)."""
    body = message.get(kind)
    body = body if isinstance(body, dict) else {}
    text = ""
    if kind == "text":
        text = _text(body.get("body"))
    elif kind in MEDIA_TYPES:
        text = _text(body.get("caption"))
        if not text and kind == "document" and _text(body.get("filename")):
            text = f"[document] {_text(body.get('filename'))}"
    elif kind == "location":
        place = " ".join(
            part for part in (_text(body.get("name")), _text(body.get("address"))) if part
        )
        where = f"({body.get('latitude')}, {body.get('longitude')})"
        text = f"[location] {place} {where}" if place else f"[location] {where}"
    elif kind == "contacts":
        cards = message.get("contacts")
        names = [
            _text((card.get("name") or {}).get("formatted_name"))
            for card in _objects(cards)
            if isinstance(card.get("name"), dict)
        ]
        text = "[contacts] " + ", ".join(name for name in names if name) if names else ""
    elif kind == "interactive":
        for reply in ("button_reply", "list_reply", "nfm_reply"):
            chosen = body.get(reply)
            if isinstance(chosen, dict):
                text = _text(chosen.get("title")) or _text(chosen.get("body"))
                break
    elif kind == "button":
        text = _text(body.get("text")) or _text(body.get("payload"))
    elif kind == "order":
        items = body.get("product_items")
        count = len(items) if isinstance(items, list) else 0
        text = f"[order] {count} item(s)"
    elif kind == "system":
        text = _text(body.get("body"))
    return (text or f"[{kind}]")[:MAX_CONTENT_CHARS]


def store_delivery(connection: Connection, plan: DeliveryPlan) -> DeliveryReport:
    """Store everything the plan holds, in the caller's transaction (module docstring)."""
    now = utcnow()
    stored: Sequence[StoredMessage] = (
        store_messages(connection, plan.messages) if plan.messages else []
    )
    outcomes = [result.outcome for result in stored]
    if "erased" in outcomes:
        logger.info(
            "whatsapp message(s) of erased data not stored",
            extra={"erased_messages": outcomes.count("erased")},
        )
    _name_contacts(connection, plan, stored)
    key = tombstone_key(connection) if plan.statuses or plan.events else b""
    events = _not_erased(connection, key, plan.events, "message_wamid")
    statuses = _not_erased(connection, key, plan.statuses, "wamid")
    new_statuses = _insert(connection, STATUSES, statuses, now, ("wamid", "status"))
    new_events = _insert(connection, EVENTS, events, now, ("event_wamid",))
    outbox.append(connection, _outbox_events(connection, new_statuses, new_events, now))
    return DeliveryReport(
        messages=outcomes.count("accepted"),
        duplicates=outcomes.count("duplicate"),
        erased=outcomes.count("erased"),
        conflicts=outcomes.count("conflict"),
        statuses=len(new_statuses),
        events=len(new_events),
        skipped=plan.skipped,
    )


def _name_contacts(
    connection: Connection, plan: DeliveryPlan, stored: Sequence[StoredMessage]
) -> None:
    """The profile name becomes the display name of a contact that has none."""
    named: dict[uuid.UUID, str] = {}
    for message, result in zip(plan.messages, stored, strict=True):
        name = plan.names.get(message.canonical_sender_id)
        if result.outcome == "accepted" and result.contact_id is not None and name:
            named.setdefault(result.contact_id, name)
    for contact_id, name in sorted(named.items()):
        connection.execute(
            update(CONTACTS)
            .where(
                and_(
                    CONTACTS.c.id == contact_id,
                    CONTACTS.c.display_name.is_(None),
                    CONTACTS.c.erased_at.is_(None),
                )
            )
            .values(display_name=name)
        )


def _not_erased(
    connection: Connection, key: bytes, rows: list[dict[str, Any]], column: str
) -> list[dict[str, Any]]:
    """The rows whose referenced wamid no erasure tombstone names."""
    if not rows:
        return []
    digests = {row[column]: message_digest(key, WHATSAPP, row[column]) for row in rows}
    found = set(
        connection.execute(
            select(TOMBSTONES.c.message_digest).where(
                TOMBSTONES.c.message_digest.in_(sorted(set(digests.values())))
            )
        ).scalars()
    )
    kept = [row for row in rows if digests[row[column]] not in found]
    if len(kept) < len(rows):
        logger.info(
            "whatsapp status(es) or event(s) of erased data not stored",
            extra={"erased_parts": len(rows) - len(kept)},
        )
    return kept


def _insert(
    connection: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    now: datetime,
    unique: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Insert the rows that are new (by `unique`): numbered (`seq`) in arrival order, written
    in one fixed order (by `unique`) so that concurrent deliveries never deadlock; the rows
    inserted, in arrival order."""
    if not rows:
        return []
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        first.setdefault(tuple(row[column] for column in unique), row)
    arrived = list(first.values())
    numbers = zip(
        arrived, new_ids(len(arrived)), next_seqs(connection, table, len(arrived)), strict=True
    )
    values = [{**row, "id": row_id, "received_at": now, "seq": seq} for row, row_id, seq in numbers]
    in_order = sorted(values, key=lambda row: tuple(row[column] for column in unique))
    statement = insert_ignoring_conflicts(connection, table, *unique).returning(table.c.id)
    inserted = set(connection.execute(statement, in_order).scalars())
    return [row for row in values if row["id"] in inserted]


def _outbox_events(
    connection: Connection,
    statuses: list[dict[str, Any]],
    events: list[dict[str, Any]],
    now: datetime,
) -> list[outbox.NewEvent]:
    """The outbox events of the statuses and message events stored: references only (the
    wamids, and the message and contact ids when the message is ours), never the payload,
    which holds the person's number."""
    if not (statuses or events) or not outbox_enabled(connection):
        return []
    wamids = sorted({row["wamid"] for row in statuses} | {row["message_wamid"] for row in events})
    ours: dict[str, tuple[uuid.UUID, uuid.UUID]] = {
        wamid: (message_id, contact_id)
        for wamid, message_id, contact_id in connection.execute(
            select(MESSAGES.c.channel_message_id, MESSAGES.c.id, MESSAGES.c.contact_id).where(
                MESSAGES.c.source == WHATSAPP, MESSAGES.c.channel_message_id.in_(wamids)
            )
        )
    }
    received_at = utc_text(now)

    def about(wamid: str) -> tuple[dict[str, Any], uuid.UUID | None]:
        message_id, contact_id = ours.get(wamid, (None, None))
        data = {
            "channel_message_id": wamid,
            "message_id": None if message_id is None else str(message_id),
            "contact_id": None if contact_id is None else str(contact_id),
            "received_at": received_at,
        }
        return data, contact_id

    appended: list[outbox.NewEvent] = []
    for row in statuses:
        data, contact_id = about(row["wamid"])
        timestamp = row["payload"].get("timestamp")
        data |= {
            "status": row["status"],
            "timestamp": timestamp if isinstance(timestamp, str) else None,
        }
        appended.append(outbox.NewEvent(outbox.MESSAGE_STATUS, row["wamid"], data, contact_id, now))
    for row in events:
        data, contact_id = about(row["message_wamid"])
        kind = outbox.WHATSAPP_EVENT_TYPES[row["kind"]]
        appended.append(outbox.NewEvent(kind, row["event_wamid"], data, contact_id, now))
    return appended
