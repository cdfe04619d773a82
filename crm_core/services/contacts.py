"""Reading contacts and their messages, in arrival order (see crm_core.services.pages)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.exceptions import NotFoundError
from crm_core.models import Contact, Message
from crm_core.services.pages import Page, page
from crm_core.services.senders import InvalidSenderError, canonical_sender_id

RECENT_MESSAGES = 20


def get_contact(session: Session, contact_id: uuid.UUID, *, for_update: bool = False) -> Contact:
    """The contact (NotFoundError if there is none), its row locked when `for_update`."""
    query = select(Contact).where(Contact.id == contact_id)
    contact = session.scalars(query.with_for_update() if for_update else query).first()
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
) -> Page[Contact]:
    query = select(Contact)
    if source is not None:
        query = query.where(Contact.source == source)
    if sender_id is not None:
        query = query.where(Contact.sender_id == _canonical(source, sender_id))
    return page(session, query, Contact, cursor=cursor, limit=limit)


def _canonical(source: str | None, sender_id: str) -> str:
    """With a source, a sender is looked up in its canonical form, as the ingest stores it (so
    any form of a number finds its contact); an id the ingest would refuse is looked up as
    given, so it finds nothing new but still finds rows stored before a rule changed."""
    if source is None:
        return sender_id
    try:
        return canonical_sender_id(source, sender_id)
    except InvalidSenderError:
        return sender_id


def list_messages(
    session: Session, contact_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[Message]:
    """A contact's messages, newest first (NotFoundError for an unknown contact)."""
    get_contact(session, contact_id)
    query = select(Message).where(Message.contact_id == contact_id)
    return page(session, query, Message, cursor=cursor, limit=limit, newest_first=True)


def recent_messages(session: Session, contact_id: uuid.UUID) -> Sequence[Message]:
    """The contact's latest messages, newest first: everything committed, no cursor."""
    query = (
        select(Message)
        .where(Message.contact_id == contact_id)
        .order_by(Message.txid.desc(), Message.seq.desc())
        .limit(RECENT_MESSAGES)
    )
    return session.scalars(query).all()


def all_messages(session: Session, contact_id: uuid.UUID) -> Sequence[Message]:
    """Every message of the contact, oldest first, in arrival order."""
    query = (
        select(Message).where(Message.contact_id == contact_id).order_by(Message.txid, Message.seq)
    )
    return session.scalars(query).all()
