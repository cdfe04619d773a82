"""Contacts: list, read (with recent messages), their messages, LGPD export and erasure."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from crm_core.api.deps import ApiPrincipal, ReadPrincipal
from crm_core.database import ReadSessionDep, SessionDep
from crm_core.schemas.contact import (
    ContactDetail,
    ContactPublic,
    ContactsPublic,
    ErasureReport,
    MessagePublic,
    MessagesPublic,
)
from crm_core.schemas.ingest import SOURCE_PATTERN
from crm_core.schemas.pagination import DEFAULT_PAGE, CursorParam, Limit
from crm_core.services import contacts, privacy

router = APIRouter(prefix="/contacts", tags=["contacts"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The cursor is not valid", **_PROBLEM},
    401: {"description": "No valid API key", **_PROBLEM},
    403: {"description": "The API key's scope does not allow this route", **_PROBLEM},
    404: {"description": "No such contact", **_PROBLEM},
    422: {"description": "A parameter is invalid", **_PROBLEM},
}


@router.get("", summary="List contacts, oldest first", responses=_ERRORS)
def list_contacts(
    session: ReadSessionDep,
    _principal: ReadPrincipal,
    source: Annotated[str | None, Query(pattern=SOURCE_PATTERN)] = None,
    sender_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    cursor: CursorParam = None,
    limit: Limit = DEFAULT_PAGE,
) -> ContactsPublic:
    """Filter by `source` and `sender_id` (with a source, any form of it the ingest accepts).

    Contacts come in the order they were created. Following `next_cursor`, then polling from
    `end_cursor`, gives each contact exactly once, even while others are being created.
    """
    found = contacts.list_contacts(
        session, source=source, sender_id=sender_id, cursor=cursor, limit=limit
    )
    return ContactsPublic(
        data=[ContactPublic.model_validate(row) for row in found.rows],
        next_cursor=found.next_cursor,
        end_cursor=found.end_cursor,
    )


@router.get("/{contact_id}", summary="A contact and its latest messages", responses=_ERRORS)
def get_contact(
    contact_id: uuid.UUID, session: ReadSessionDep, _principal: ReadPrincipal
) -> ContactDetail:
    contact = contacts.get_contact(session, contact_id)
    recent = contacts.recent_messages(session, contact_id)
    return ContactDetail(
        **ContactPublic.model_validate(contact).model_dump(),
        recent_messages=[MessagePublic.model_validate(message) for message in recent],
    )


@router.get(
    "/{contact_id}/messages", summary="A contact's messages, newest first", responses=_ERRORS
)
def list_messages(
    contact_id: uuid.UUID,
    session: ReadSessionDep,
    _principal: ReadPrincipal,
    cursor: CursorParam = None,
    limit: Limit = DEFAULT_PAGE,
) -> MessagesPublic:
    """In arrival order, newest first (a batch's messages in the batch's order, reversed)."""
    found = contacts.list_messages(session, contact_id, cursor=cursor, limit=limit)
    return MessagesPublic(
        data=[MessagePublic.model_validate(row) for row in found.rows],
        next_cursor=found.next_cursor,
    )


@router.get(
    "/{contact_id}/export",
    summary="Everything held about the person (LGPD), audited",
    responses=_ERRORS,
)
def export_contact(
    contact_id: uuid.UUID, request: Request, session: SessionDep, principal: ApiPrincipal
) -> dict[str, Any]:
    """The contact, all its messages and all its deals with their stage history, as JSON."""
    return privacy.export_contact(
        session, contact_id, principal.key_id, getattr(request.state, "request_id", None)
    )


@router.delete(
    "/{contact_id}",
    summary="Erase the person's data (LGPD), keeping anonymised deal figures; audited",
    responses=_ERRORS,
)
def erase_contact(
    contact_id: uuid.UUID, request: Request, session: SessionDep, principal: ApiPrincipal
) -> ErasureReport:
    return privacy.erase_contact(
        session, contact_id, principal.key_id, getattr(request.state, "request_id", None)
    )
