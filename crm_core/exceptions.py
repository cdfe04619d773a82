"""Errors raised by crm_core. Each leaves the API as RFC 9457 problem+json.

A subclass names the HTTP status and problem type it becomes (crm_core.problems registers one
handler for all of them), so services raise domain errors and never think about HTTP.
"""

from __future__ import annotations

from typing import ClassVar


class CrmError(Exception):
    """Base class of every error crm_core raises on purpose."""

    status: ClassVar[int] = 500
    kind: ClassVar[str | None] = None
    headers: ClassVar[dict[str, str] | None] = None


class ConfigurationError(CrmError):
    """The settings cannot be used (a bad DATABASE_URL, an unknown log level, ...)."""


class DatabaseUnavailableError(CrmError):
    """The database did not answer."""

    status = 503
    kind = "database-unavailable"


class InvalidIdempotencyKeyError(CrmError):
    """The Idempotency-Key header is not a usable key."""

    status = 400
    kind = "invalid-idempotency-key"


class IdempotencyKeyInUseError(CrmError):
    """The first request with this Idempotency-Key is still running."""

    status = 409
    kind = "idempotency-key-in-use"
    headers = {"Retry-After": "1"}  # noqa: RUF012 (read only)


class IdempotencyKeyReusedError(CrmError):
    """The Idempotency-Key was first used for a different request."""

    status = 422
    kind = "idempotency-key-reused"


class NotFoundError(CrmError):
    """The resource does not exist."""

    status = 404
    kind = "not-found"


class InvalidTransitionError(CrmError):
    """The deal cannot move to that stage from where it is."""

    status = 409
    kind = "invalid-stage-transition"


class ContactErasedError(CrmError):
    """The contact's data was erased (LGPD): it takes nothing new."""

    status = 409
    kind = "contact-erased"


class UnknownPipelineError(CrmError):
    """The pipeline or the stage is not one of the configured pipelines."""

    status = 422
    kind = "unknown-pipeline-or-stage"


class ApiKeyError(CrmError):
    """An API key operation failed (unknown key, already revoked)."""
