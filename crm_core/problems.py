"""RFC 9457 problem details: every error the API sends, built and registered in one place."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_core.exceptions import CrmError, DatabaseUnavailableError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:aurora-crm:problem:"

logger = logging.getLogger("crm_core.errors")


class Problem(Exception):
    """An error the API reports as problem+json with the given status."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = f"{PROBLEM_BASE}{kind}" if kind else "about:blank"
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers
        self.extensions = extensions


def problem_body(problem: Problem, instance: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
    }
    body.update(problem.extensions)
    return body


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = problem_body(problem, request.url.path)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=problem.headers
    )


def _pointer(location: tuple[int | str, ...]) -> str:
    """A JSON pointer (RFC 6901) into the request body for a pydantic error location."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in location]
    return "#/" + "/".join(parts)


def validation_problem_from(exc: ValidationError, prefix: tuple[int | str, ...]) -> Problem:
    """The 422 problem of a model validated by hand, its pointers under `prefix` of the body."""
    errors = [{**error, "loc": ("body", *prefix, *error["loc"])} for error in exc.errors()]
    return validation_problem(RequestValidationError(errors))


def validation_problem(exc: RequestValidationError) -> Problem:
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        message = next(e.get("ctx", {}).get("error", "") for e in errors)
        return Problem(
            400,
            f"The request body is not valid JSON: {message}".rstrip(": "),
            kind="malformed-json",
            title="Malformed JSON",
        )
    invalid = []
    for error in errors:
        location = tuple(error.get("loc", ()))
        where, field_path = (location[0], location[1:]) if location else ("body", ())
        invalid.append(
            {
                "pointer": _pointer(field_path) if where == "body" else None,
                "location": where,
                "field": ".".join(str(part) for part in field_path) or None,
                "detail": error.get("msg", "invalid"),
                "type": error.get("type", "invalid"),
            }
        )
    fields = sorted({item["field"] or str(item["location"]) for item in invalid})
    return Problem(
        422,
        f"The request is not valid: check {', '.join(fields)}.",
        kind="validation-error",
        title="Invalid request",
        errors=invalid,
    )


def register_problem_handlers(app: FastAPI) -> None:
    """Make every error, expected or not, leave as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, validation_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(request, Problem(exc.status_code, detail, headers=headers))

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(DatabaseUnavailableError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", str(exc).splitlines()[0])
        problem = Problem(
            503,
            "The database is not answering; try again shortly.",
            kind="database-unavailable",
            headers={"Retry-After": "5"},
        )
        return problem_response(request, problem)

    @app.exception_handler(CrmError)
    async def _domain(request: Request, exc: CrmError) -> JSONResponse:
        if exc.status >= 500:
            logger.error(
                "%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc
            )
        problem = Problem(exc.status, str(exc), kind=exc.kind, headers=exc.headers)
        return problem_response(request, problem)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        # This handler runs outside the request-id middleware, so it sets the header itself.
        request_id = getattr(request.state, "request_id", None)
        headers = {"x-request-id": request_id} if request_id else None
        problem = Problem(500, "An unexpected error occurred; it has been logged.", headers=headers)
        return problem_response(request, problem)
