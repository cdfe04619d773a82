"""Reading contacts and their messages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.exceptions import NotFoundError
from crm_core.models import Contact, Message
from crm_core.services.pages import page
from crm_core.services.senders import InvalidSenderError, canonical_sender_id

RECENT_MESSAGES = 20


def get_contact(session: Session, contact_id: uuid.UUID) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFoundError(f"No contact has the id {contact_id}.")
    return contact


def list_contacts(
    session: Session,
    *,
    source: str | None,
    sender_id: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Contact], str | None]:
    query = select(Contact)
    if source is not None:
        query = query.where(Contact.source == source)
    if sender_id is not None:
        query = query.where(Contact.sender_id == _canonical(source, sender_id))
    return page(session, query, Contact.created_at, Contact.id, cursor=cursor, limit=limit)


def _canonical(source: str | None, sender_id: str) -> str:
    """With a source, a sender is looked up as stored (both forms of a Brazilian mobile)."""
    if source is None:
        return sender_id
    try:
        return canonical_sender_id(source, sender_id)
    except InvalidSenderError:
        return sender_id


def list_messages(
    session: Session, contact_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[Sequence[Message], str | None]:
    get_contact(session, contact_id)
    query = select(Message).where(Message.contact_id == contact_id)
    return page(
        session,
        query,
        Message.received_at,
        Message.id,
        cursor=cursor,
        limit=limit,
        newest_first=True,
    )


def recent_messages(session: Session, contact_id: uuid.UUID) -> Sequence[Message]:
    return list_messages(session, contact_id, cursor=None, limit=RECENT_MESSAGES)[0]
