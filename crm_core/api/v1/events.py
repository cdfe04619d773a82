"""`GET /events`: the event feed (OS 007), in commit order, with a long-poll wait.

Each event is a CloudEvents 1.0 event in the JSON format (crm_core.services.outbox). A consumer
keeps the last `end_cursor` it processed and asks again from it: it sees every event once, in
the order the changes committed, even those of transactions that commit late (the cursor never
passes a transaction still running; crm_core.services.pages). With `wait`, a request that finds
no event waits up to that many seconds for one, so a consumer needs no tight loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from crm_core.api.deps import ReadPrincipal, get_app_settings
from crm_core.database import DatabaseDep
from crm_core.problems import Problem
from crm_core.schemas.pagination import CursorParam
from crm_core.services import outbox

router = APIRouter(tags=["events"])

DEFAULT_EVENTS = 100
MAX_EVENTS = 1000
MAX_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.1
"""How often a waiting request looks for new events."""

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The cursor or a type is not valid", **_PROBLEM},
    401: {"description": "No valid API key", **_PROBLEM},
    403: {"description": "The API key is not a read or read/write key", **_PROBLEM},
    422: {"description": "A parameter is invalid", **_PROBLEM},
}


class EventsPage(BaseModel):
    """A page of the feed."""

    data: list[dict[str, Any]] = Field(
        description="CloudEvents 1.0 events (JSON format), oldest first, in commit order."
    )
    next_cursor: str | None = Field(description="The next page, when this one is full.")
    end_cursor: str | None = Field(
        description="Where this page ends (the cursor given, when it is empty): ask from it "
        "for the events committed since."
    )


def parse_types(raw: str | None) -> list[str]:
    """The event types of `types=a,b`: each one of outbox.EVENT_TYPES; Problem(400) naming
    the known types otherwise."""
    if raw is None or not raw.strip():
        return []
    wanted = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in outbox.EVENT_TYPES]
    if unknown:
        raise Problem(
            400,
            f"Unknown event type(s): {', '.join(unknown)}. The types are: "
            f"{', '.join(outbox.EVENT_TYPES)}.",
            kind="unknown-event-type",
        )
    return wanted


@router.get("/events", summary="The event feed, in commit order", responses=_ERRORS)
async def list_events(
    request: Request,
    database: DatabaseDep,
    _principal: ReadPrincipal,
    after: CursorParam = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS, description="Events per page.")] = (
        DEFAULT_EVENTS
    ),
    types: Annotated[
        str | None,
        Query(max_length=2000, description="Only these types, comma-separated."),
    ] = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to wait for an event when there is none yet (long poll).",
        ),
    ] = 0,
) -> EventsPage:
    """The events after `after` (from the first when omitted), only of `types` when given.

    Types: see the README ("Events"). A consumer stores `end_cursor` after it has processed a
    page and asks from it again, with `wait` to be answered as soon as an event commits.
    """
    wanted = parse_types(types)
    source = get_app_settings(request).event_source
    deadline = time.monotonic() + wait

    def read() -> EventsPage:
        with database.read_sessionmaker() as session:
            found = outbox.read_events(session, cursor=after, limit=limit, types=wanted)
            return EventsPage(
                data=[outbox.cloud_event(row, source) for row in found.rows],
                next_cursor=found.next_cursor,
                end_cursor=found.end_cursor,
            )

    while True:
        page = await run_in_threadpool(read)
        remaining = deadline - time.monotonic()
        if page.data or remaining <= 0 or await request.is_disconnected():
            return page
        await asyncio.sleep(min(POLL_SECONDS, remaining))
