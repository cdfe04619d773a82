"""ASGI middleware: request ids and access log lines, the content coding and size of bodies."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

import anyio
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_core.problems import PROBLEM_MEDIA_TYPE, Problem, problem_body

access_logger = logging.getLogger("crm_core.access")

REQUEST_ID_HEADER = "x-request-id"

DRAIN_MAX_BYTES = 64 * 1024 * 1024
"""How much of a refused request's body (64 MiB) the server reads and throws away, after it has
sent the refusal and before it closes the connection. A client that writes its whole body before
reading (Python's urllib, many scripts) then reads the 413 or 415; closing with the body unread
would make the kernel reset the connection, and the client would see a broken pipe instead. A
body larger than this, or still arriving after DRAIN_SECONDS, may still see the connection
reset."""

DRAIN_SECONDS = 10.0
"""The longest, in seconds, the server reads a refused request's body (see DRAIN_MAX_BYTES)."""

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestLogMiddleware:
    """Give each request an id (kept from X-Request-ID when sane) and log one JSON line for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_logger.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            return candidate if _SAFE_REQUEST_ID.match(candidate) else None
    return None


class BodySizeLimitMiddleware:
    """Refuse bodies over the limit with 413, whether declared by Content-Length or streamed.

    The limit is `max_bytes`, or the one `path_limits` gives the request's path (batches). The
    refusal closes the connection after reading and discarding the rest of the body, up to
    DRAIN_MAX_BYTES (see `send_problem`).
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.default_max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            problem = Problem(413, _detail(limit), title="Content Too Large")
            await send_problem(scope, receive, send, problem)
            return
        received = 0
        over_limit = False
        body_ended = False

        async def limited_receive() -> Message:
            nonlocal received, over_limit, body_ended
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_ended = not message.get("more_body", False)
                if received > limit:
                    over_limit = True
                    raise HTTPException(413, _detail(limit))
            return message

        async def draining_send(message: Message) -> None:
            # The app answers the HTTPException above; once it has, read the rest of the body
            # and close, as send_problem does.
            if over_limit and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
            elif (
                over_limit
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                await send({**message, "more_body": True})
                if not body_ended:
                    await drain_body(receive)
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app(scope, limited_receive, draining_send)


class ContentEncodingMiddleware:
    """Refuse with 415 a request whose Content-Encoding is anything but `identity` (RFC 9110
    §15.5.16): the API decodes no content coding, and a body read as if it had none would be
    refused later as malformed, or worse, taken as it is. Accept-Encoding says what it takes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        codings = _content_codings(scope)
        if codings:
            problem = Problem(
                415,
                f"Content-Encoding {', '.join(codings)!r} is not supported; send the body "
                "without a content coding (identity).",
                kind="unsupported-content-encoding",
                headers={"Accept-Encoding": "identity"},
            )
            await send_problem(scope, receive, send, problem)
            return
        await self.app(scope, receive, send)


def _content_codings(scope: Scope) -> list[str]:
    """The request's content codings other than `identity`, as sent (all its headers)."""
    return [
        coding
        for name, value in scope.get("headers", [])
        if name == b"content-encoding"
        for coding in (part.strip() for part in value.decode("latin-1").split(","))
        if coding and coding.lower() != "identity"
    ]


_CLOSE = (b"connection", b"close")


async def send_problem(scope: Scope, receive: Receive, send: Send, problem: Problem) -> None:
    """Answer with a problem before the request's body is read, then close the connection (the
    unread body would otherwise be taken for the next request).

    Between the answer and the close, the body is read and thrown away (`drain_body`), so that
    a client that writes its whole body before reading the answer gets to read it. A client that
    sent `Expect: 100-continue` has not sent its body (RFC 9110 §10.1.1): no 100 Continue goes
    out, and the connection closes at once.
    """
    body = problem_body(problem, scope["path"])
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        _CLOSE,
    ]
    headers += [
        (name.lower().encode(), value.encode()) for name, value in (problem.headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": True})
    if not _expects_continue(scope):
        await drain_body(receive)
    await send({"type": "http.response.body", "body": b""})


async def drain_body(receive: Receive) -> None:
    """Read and discard what is left of the request's body: until its end, the client's
    disconnection, DRAIN_MAX_BYTES or DRAIN_SECONDS, whichever comes first."""
    drained = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while drained <= DRAIN_MAX_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.strip().lower() == b"100-continue"
        for name, value in scope.get("headers", [])
    )


def _detail(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
