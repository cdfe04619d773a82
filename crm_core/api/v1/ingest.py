"""`POST /ingest/message` and `POST /ingest/messages`: the door of every channel.

A new message is stored, with its contact resolved or created, in a transaction committed
before the answer is sent (202); a message already stored (same channel message id with the
same content and sender, or same Idempotency-Key) is answered with its original receipt (200),
and stored once. A channel message id already used by another message is a 409 that names it;
a message of a person whose data was erased is a 410, and nothing of it is stored.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import to_json
from sqlalchemy import Connection

from crm_core.api.deps import (
    IngestPrincipal,
    authenticate_ingest,
    require_json_body,
    verify_source_signature,
)
from crm_core.database import Database
from crm_core.models.base import utc_text, utcnow
from crm_core.problems import PROBLEM_MEDIA_TYPE, Problem, problem_body, validation_problem_from
from crm_core.schemas.ingest import (
    MAX_BATCH_MESSAGES,
    BatchReceipt,
    IngestBatch,
    IngestMessage,
    IngestReceipt,
)
from crm_core.services import idempotency
from crm_core.services.api_keys import Principal
from crm_core.services.group_commit import GroupCommitter
from crm_core.services.ingest import StoredMessage, store_messages

router = APIRouter(prefix="/ingest", tags=["ingest"])
M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_KEY = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not valid JSON, or the Idempotency-Key is", **_PROBLEM},
    401: {"description": "No valid API key, or a missing or wrong signature", **_PROBLEM},
    403: {"description": "The API key may not ingest", **_PROBLEM},
    409: {
        "description": "The channel message id is already used by another message (the "
        "problem's `stored_message` names it), or the first request with this "
        "Idempotency-Key still runs",
        **_PROBLEM,
    },
    410: {
        "description": "The message belongs to data erased at the person's request (LGPD): "
        "nothing of it is stored",
        **_PROBLEM,
    },
    413: {"description": "The body is larger than the limit", **_PROBLEM},
    415: {
        "description": "The body is not application/json, or has a Content-Encoding other "
        "than identity (Accept-Encoding: identity)",
        **_PROBLEM,
    },
    422: {"description": "A field is invalid, or the Idempotency-Key was reused", **_PROBLEM},
    503: {"description": "The database does not answer", **_PROBLEM},
}


async def ingest_message(
    message: IngestMessage,
    request: Request,
    principal: IngestPrincipal,
) -> Response:
    """Store the message and its contact: 202 with a receipt; 200 with the original receipt
    for a message already stored; 409 for a message id used by another message; 410 for a
    message of erased data."""
    if request.app.state.settings.ingest_validation_only:
        return _json(status.HTTP_202_ACCEPTED, _unsaved_receipt())
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        committer: GroupCommitter = request.app.state.group_committer
        stored = await committer.submit(message)
        answer = _answer(stored, message, request.url.path)
        if answer.status >= 400:
            answer.body["request_id"] = getattr(request.state, "request_id", None)
        return _json(answer.status, answer.body, replayed=answer.replayed)

    def work(connection: Connection) -> idempotency.Outcome:
        return _answer(store_messages(connection, [message])[0], message, request.url.path)

    outcome = await _run_once(request, principal, key, message.model_dump(), work)
    return _json(outcome.status, outcome.body, replayed=outcome.replayed)


def _answer(stored: StoredMessage, message: IngestMessage, instance: str) -> idempotency.Outcome:
    """The response to one message: its status and body, and whether it is a replay."""
    if stored.outcome == "accepted":
        return idempotency.Outcome(status.HTTP_202_ACCEPTED, stored.receipt())
    if stored.outcome == "duplicate":
        return idempotency.Outcome(status.HTTP_200_OK, stored.receipt(), replayed=True)
    problem = _refusal(stored, message)
    return idempotency.Outcome(problem.status, problem_body(problem, instance))


def _refusal(stored: StoredMessage, message: IngestMessage) -> Problem:
    """Why nothing of a message was kept: a message id used by another message (409), or a
    message of erased data (410)."""
    if stored.outcome == "erased":
        return Problem(
            410,
            "This message belongs to data erased at the person's request (LGPD); nothing of "
            "it is stored again. A new message of the person, with a new message id, starts "
            "a new contact.",
            kind="erased",
            title="Erased",
        )
    row = stored.row()
    used_by = (
        "a message whose data was erased"
        if row is None
        else f"message {row['id']}, with other content or from another sender"
    )
    return Problem(
        409,
        f"The message id {message.channel_message_id!r} of source {message.source!r} is already "
        f"used by {used_by}; nothing of this message was stored. A new message needs a new id.",
        kind="message-id-conflict",
        title="Message id already used",
        stored_message=row,
    )


async def _run_once(
    request: Request,
    principal: Principal,
    key: str,
    payload: Any,
    work: Callable[[Connection], idempotency.Outcome],
) -> idempotency.Outcome:
    """Run `work` under the request's Idempotency-Key (in a thread: it blocks on the database)."""
    database: Database = request.app.state.database
    return await run_in_threadpool(
        idempotency.run_once,
        database.engine,
        principal.key_id,
        idempotency.check_key(key),
        idempotency.fingerprint("POST", request.url.path, payload),
        work,
        request.app.state.settings.idempotency_lease_seconds,
    )


async def _serve_message(request: Request) -> Response:
    """`POST /ingest/message` as every channel's message goes through it.

    It makes the checks the route declares, in the order FastAPI would run them (media type,
    JSON, signature, API key, then the fields), and calls `ingest_message` — without FastAPI's
    per-request dependency solving and response validation, which cost this route more than
    everything else it does. Errors are the same exceptions, answered as problem+json.
    """
    await require_json_body(request)
    document = _json_document(await request.body())
    await verify_source_signature(request)
    principal = await authenticate_ingest(request)
    return await ingest_message(_body_as(IngestMessage, document), request, principal)


def _body_as(model: type[M], document: Any) -> M:
    """The parsed body as `model`; its errors located in the body, as FastAPI reports them."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


def _json_document(body: bytes) -> Any:
    """The parsed body; malformed JSON and a missing body fail as FastAPI reports them.

    The body must be UTF-8 (never guessed as UTF-16 or 32); nesting past the parser's depth
    and integers longer than Python converts are malformed JSON too, not server errors.
    """
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return json.loads(body.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise _malformed(exc.pos, exc.msg) from None
    except UnicodeDecodeError as exc:
        raise _malformed(exc.start, "the body is not valid UTF-8") from None
    except RecursionError:
        raise _malformed(0, "the document is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise _malformed(0, str(exc).split(";")[0]) from None


def _malformed(position: int, reason: str) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body", position),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": reason},
            }
        ]
    )


def _direct_route(handler: Callable[[Request], Awaitable[Response]]) -> type[APIRoute]:
    """A route class whose requests go to `handler`; its endpoint still describes it in the
    OpenAPI schema (body model, key, responses)."""

    class DirectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            return handler  # type: ignore[return-value]

    return DirectRoute


router.add_api_route(
    "/message",
    ingest_message,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestReceipt,
    dependencies=[Depends(require_json_body), Depends(verify_source_signature)],
    summary="Store one incoming message from a channel",
    responses={
        200: {"description": "Already stored: the original receipt", "model": IngestReceipt},
        **_ERRORS,
    },
    route_class_override=_direct_route(_serve_message),
)


def _json(code: int, body: Any, *, replayed: bool = False) -> Response:
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    media_type = PROBLEM_MEDIA_TYPE if code >= 400 else "application/json"
    return Response(to_json(body), code, headers, media_type)


async def ingest_messages(
    batch: IngestBatch,
    request: Request,
    principal: IngestPrincipal,
) -> Response:
    """Validate each message on its own; store the valid ones in one transaction.

    Each result says `accepted` (stored now), `duplicate` (stored before: the original id) or
    `rejected` (with the problem, and nothing stored for it: 422 invalid, 409 its message id
    used by another message, 410 a message of erased data).
    """
    valid, results = _validate_items(batch.messages, request.url.path)
    return await _store_batch(request, principal, len(batch.messages), valid, results, batch)


async def _store_batch(
    request: Request,
    principal: Principal,
    length: int,
    valid: list[tuple[int, IngestMessage]],
    results: dict[int, dict[str, Any]],
    batch: IngestBatch | None,
) -> Response:
    """Store the valid messages of a batch; answer every message at its position. `batch`,
    the request as parsed, is needed under an Idempotency-Key (its fingerprint)."""
    messages = [message for _, message in valid]

    def receipt(stored: list[StoredMessage]) -> dict[str, Any]:
        for (index, message), outcome in zip(valid, stored, strict=True):
            results[index] = _item(index, message, outcome, request.url.path)
        ordered = [results[index] for index in range(length)]
        counts = Counter(result["status"] for result in ordered)
        return {
            "accepted": counts["accepted"],
            "duplicate": counts["duplicate"],
            "rejected": counts["rejected"],
            "results": ordered,
        }

    def work(connection: Connection) -> idempotency.Outcome:
        stored = store_messages(connection, messages) if messages else []
        return idempotency.Outcome(status.HTTP_200_OK, receipt(stored))

    key = request.headers.get(IDEMPOTENCY_KEY)
    committer: GroupCommitter = request.app.state.group_committer
    if key is None and committer.on_postgresql:  # on the event loop, no thread
        stored = await committer.store_all(messages) if messages else []
        return _json(status.HTTP_200_OK, receipt(stored))
    if key is None:
        database: Database = request.app.state.database

        def run() -> idempotency.Outcome:
            with database.engine.begin() as connection:
                return work(connection)

        outcome = await run_in_threadpool(run)
    else:
        assert batch is not None, "a request with an Idempotency-Key takes the full path"
        outcome = await _run_once(request, principal, key, batch.model_dump(), work)
    # The body is built from plain values already: sent as it is, not validated again.
    return _json(outcome.status, outcome.body, replayed=outcome.replayed)


class _ValidBatch(BaseModel):
    """A batch whose every message is valid: what almost every batch is, parsed and
    validated from the raw body in one pass."""

    model_config = ConfigDict(extra="forbid")

    messages: list[IngestMessage] = Field(min_length=1, max_length=MAX_BATCH_MESSAGES)


async def _serve_messages(request: Request) -> Response:
    """`POST /ingest/messages`, checked as `_serve_message` checks a single message.

    A body whose every message is valid is parsed and validated in one pass; any other body
    is parsed again and checked item by item, so that each invalid message is rejected alone.
    A request with an Idempotency-Key always takes that second path, whose parsed document
    is what its key's fingerprint is computed from.
    """
    await require_json_body(request)
    body = await request.body()
    fast: _ValidBatch | None = None
    if IDEMPOTENCY_KEY not in request.headers:
        with contextlib.suppress(ValidationError):
            fast = _ValidBatch.model_validate_json(body)
    if fast is None:
        document = _json_document(body)
    await verify_source_signature(request)
    principal = await authenticate_ingest(request)
    if fast is not None:
        valid = list(enumerate(fast.messages))
        return await _store_batch(request, principal, len(valid), valid, {}, None)
    return await ingest_messages(_body_as(IngestBatch, document), request, principal)


router.add_api_route(
    "/messages",
    ingest_messages,
    methods=["POST"],
    response_model=BatchReceipt,
    dependencies=[Depends(require_json_body), Depends(verify_source_signature)],
    summary="Store up to 1,000 messages, answered one by one",
    responses=_ERRORS,
    route_class_override=_direct_route(_serve_messages),
)


_MESSAGES = TypeAdapter(list[IngestMessage])


def _validate_items(
    items: list[Any], instance: str
) -> tuple[list[tuple[int, IngestMessage]], dict[int, dict[str, Any]]]:
    """The valid messages (with their positions) and a `rejected` result for each other one."""
    try:  # one call for the usual all-valid batch
        return list(enumerate(_MESSAGES.validate_python(items))), {}
    except ValidationError:
        pass
    valid: list[tuple[int, IngestMessage]] = []
    rejected: dict[int, dict[str, Any]] = {}
    for index, item in enumerate(items):
        try:
            valid.append((index, IngestMessage.model_validate(item)))
        except ValidationError as exc:
            problem = validation_problem_from(exc, prefix=("messages", index))
            rejected[index] = {
                "index": index,
                "status": "rejected",
                "problem": problem_body(problem, instance),
            }
    return valid, rejected


def _unsaved_receipt() -> dict[str, Any]:
    """What the benchmark's validation-only mode answers: a receipt for nothing stored."""
    return StoredMessage("accepted", uuid.uuid4(), uuid.UUID(int=0), utcnow()).receipt()


def _item(
    index: int, message: IngestMessage, stored: StoredMessage, instance: str
) -> dict[str, Any]:
    if stored.refused:
        problem = problem_body(_refusal(stored, message), instance)
        return {"index": index, "status": "rejected", "problem": problem}
    assert stored.id is not None
    assert stored.contact_id is not None
    assert stored.received_at is not None
    return {
        "index": index,
        "status": "duplicate" if stored.duplicate else "accepted",
        "id": str(stored.id),
        "contact_id": str(stored.contact_id),
        "received_at": utc_text(stored.received_at),
    }
