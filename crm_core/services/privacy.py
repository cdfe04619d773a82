"""LGPD: export everything held about a person, or erase their personal data; both audited.

The person's rights are those of LGPD (Lei 13.709/2018) art. 18: access to their data (II, the
export) and elimination of the data processed with their consent (VI, the erasure). Art. 16
lets the controller keep what a legal duty or its own regular exercise of rights requires; here
that is a deal's figures (pipeline, stage, amount, currency, dates, stage history), which are
business records.

Erasure keeps the rows (a deal's foreign key is ON DELETE RESTRICT) but removes what identifies
the person: the contact's name, sender id (replaced by `erased:<contact id>`) and attributes;
every message's content, sender id, metadata and channel id; each deal's title and attributes.
It lasts: each erased message that had a channel message id leaves a tombstone that holds no
personal data (crm_core.services.tombstones), so the channel re-delivering it, or replaying the
conversation, stores nothing again; and an erased contact takes no new message nor deal. A new
message of the person (a new channel id) is a new conversation: it starts a new contact.
Erasing again changes nothing. On SQLite the erased bytes are gone from the files as well (the
engine zeroes freed space, `secure_delete`, and the write-ahead log is emptied after the
erasure); PostgreSQL keeps old row versions until VACUUM reclaims them (see the README).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import Update, delete, select, update
from sqlalchemy.orm import Session

from crm_core.database import truncate_sqlite_log
from crm_core.models import AuditEvent, Deal, Message, MessageEvent, MessageStatus
from crm_core.models.base import utc_text, utcnow
from crm_core.schemas.contact import ContactPublic, ErasureReport, MessagePublic
from crm_core.schemas.ingest import ERASED_PREFIX
from crm_core.services import outbox, tombstones
from crm_core.services.contacts import all_messages, get_contact
from crm_core.services.deals import deal_detail
from crm_core.services.senders import WHATSAPP

ERASED_TITLE = "(anonimizado)"

logger = logging.getLogger("crm_core.privacy")


def audit(
    session: Session,
    action: str,
    subject_id: uuid.UUID,
    actor: str,
    request_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            action=action,
            subject_type="contact",
            subject_id=subject_id,
            actor=actor,
            request_id=request_id,
            details=details or {},
        )
    )


def export_contact(
    session: Session, contact_id: uuid.UUID, actor: str, request_id: str | None
) -> dict[str, Any]:
    """The contact, every message (oldest first, in arrival order) and every deal (with its
    history), as JSON-ready data; audited as `contact.export`."""
    contact = get_contact(session, contact_id)
    messages = all_messages(session, contact_id)
    deals = session.scalars(
        select(Deal).where(Deal.contact_id == contact_id).order_by(Deal.txid, Deal.seq)
    ).all()
    document = {
        "exported_at": utcnow().isoformat(),
        "contact": ContactPublic.model_validate(contact).model_dump(mode="json"),
        "messages": [MessagePublic.model_validate(m).model_dump(mode="json") for m in messages],
        "deals": [deal_detail(session, deal).model_dump(mode="json") for deal in deals],
    }
    audit(
        session,
        "contact.export",
        contact_id,
        actor,
        request_id,
        {"messages": len(messages), "deals": len(deals)},
    )
    session.commit()
    return document


def erase_contact(
    session: Session, contact_id: uuid.UUID, actor: str, request_id: str | None
) -> ErasureReport:
    """Erase the person's data (see the module's docstring); audited as `contact.erase`.

    The contact's row is locked first (FOR UPDATE on PostgreSQL; SQLite writes one transaction
    at a time): a message or deal being stored for it meanwhile is waited for and erased too,
    and one stored later finds the contact erased. A contact erased before is left as it is:
    the report then gives the first erasure's time, zero counts and `already_erased`.
    Raises NotFoundError for an unknown contact.
    """
    contact = get_contact(session, contact_id, for_update=True)
    if contact.erased_at is not None:
        first = contact.erased_at
        audit(session, "contact.erase", contact_id, actor, request_id, {"already_erased": True})
        session.commit()
        return ErasureReport(
            contact_id=contact_id,
            erased_at=first,
            messages_erased=0,
            deals_anonymised=0,
            already_erased=True,
        )
    now = utcnow()
    connection = session.connection()
    identified = connection.execute(
        select(Message.source, Message.channel_message_id).where(
            Message.contact_id == contact_id, Message.channel_message_id.is_not(None)
        )
    ).all()
    buried = tombstones.bury(
        connection,
        tombstones.tombstone_key(connection),
        [
            (source, channel_id, contact.sender_id)
            for source, channel_id in identified
            if channel_id is not None
        ],
    )
    reported = _forget_whatsapp_reports(session, contact_id)
    placeholder = f"{ERASED_PREFIX}{contact.id}"
    contact.display_name = None
    contact.sender_id = placeholder
    contact.attributes = {}
    contact.erased_at = now
    erased_messages = _rowcount(
        session,
        update(Message)
        .where(Message.contact_id == contact_id)
        .values(content="", sender_id=placeholder, metadata_={}, channel_message_id=None),
    )
    deals = _rowcount(
        session,
        update(Deal)
        .where(Deal.contact_id == contact_id)
        .values(title=ERASED_TITLE, attributes={}, updated_at=now),
    )
    redacted = outbox.redact(connection, contact_id)
    erased = {"id": str(contact_id), "erased_at": utc_text(now)}
    outbox.append(
        connection,
        [outbox.NewEvent(outbox.CONTACT_ERASED, str(contact_id), erased, contact_id, now)],
    )
    audit(
        session,
        "contact.erase",
        contact_id,
        actor,
        request_id,
        {
            "messages": erased_messages,
            "deals": deals,
            "tombstones": buried,
            "events_redacted": redacted,
            **reported,
        },
    )
    session.commit()
    if not truncate_sqlite_log(session.get_bind().engine):
        logger.warning("erasure of %s: the SQLite log stayed busy and keeps old pages", contact_id)
    return ErasureReport(
        contact_id=contact_id,
        erased_at=now,
        messages_erased=erased_messages,
        deals_anonymised=deals,
        already_erased=False,
    )


def _forget_whatsapp_reports(session: Session, contact_id: uuid.UUID) -> dict[str, int]:
    """Delete the statuses and events WhatsApp reported about the contact's messages (by their
    wamids; crm_core.models.whatsapp): their payloads hold the person's number. Run before the
    messages lose their channel ids; the tombstones keep them from being stored again."""
    wamids = select(Message.channel_message_id).where(
        Message.contact_id == contact_id,
        Message.source == WHATSAPP,
        Message.channel_message_id.is_not(None),
    )
    events = session.execute(delete(MessageEvent).where(MessageEvent.message_wamid.in_(wamids)))
    statuses = session.execute(delete(MessageStatus).where(MessageStatus.wamid.in_(wamids)))
    return {
        "whatsapp_events": int(getattr(events, "rowcount", 0)),
        "whatsapp_statuses": int(getattr(statuses, "rowcount", 0)),
    }


def _rowcount(session: Session, statement: Update) -> int:
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0))
