"""LGPD: export everything held about a person, or erase their personal data; both audited.

Erasure keeps the rows (a deal's figures are business records, and its foreign key is
ON DELETE RESTRICT) but removes what identifies the person: the contact's name, sender id
(replaced by `erased:<contact id>`, so a new message from the person starts a new contact) and
attributes; every message's content, sender id, metadata and channel id; each deal's title and
attributes. Pipeline, stage, amount, currency, dates and stage history stay.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Update, func, select, update
from sqlalchemy.orm import Session

from crm_core.models import AuditEvent, Deal, Message
from crm_core.models.base import utcnow
from crm_core.schemas.contact import ContactPublic, ErasureReport, MessagePublic
from crm_core.services.contacts import get_contact
from crm_core.services.deals import deal_detail

ERASED_TITLE = "(anonimizado)"


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
    """The contact, every message and every deal (with history), as JSON-ready data."""
    contact = get_contact(session, contact_id)
    messages = session.scalars(
        select(Message)
        .where(Message.contact_id == contact_id)
        .order_by(Message.received_at, Message.id)
    ).all()
    deals = session.scalars(
        select(Deal).where(Deal.contact_id == contact_id).order_by(Deal.created_at, Deal.id)
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
    contact = get_contact(session, contact_id)
    now = utcnow()
    placeholder = f"erased:{contact.id}"
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
    audit(
        session,
        "contact.erase",
        contact_id,
        actor,
        request_id,
        {"messages": erased_messages, "deals": deals},
    )
    session.commit()
    return ErasureReport(
        contact_id=contact_id,
        erased_at=now,
        messages_erased=erased_messages,
        deals_anonymised=deals,
    )


def _rowcount(session: Session, statement: Update) -> int:
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0))


def audit_trail(session: Session, subject_id: uuid.UUID) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.subject_id == subject_id)
    return list(session.scalars(query.order_by(AuditEvent.at, AuditEvent.id)).all())


def count_messages(session: Session, contact_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(Message).where(Message.contact_id == contact_id)
    return int(session.execute(query).scalar_one())
