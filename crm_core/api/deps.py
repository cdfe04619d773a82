"""Dependencies shared by the routes: JSON bodies, API keys, source signatures."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from email.message import Message
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm_core.config import Settings
from crm_core.models.api_key import SCOPE_INGEST, SCOPE_READ, SCOPE_READWRITE
from crm_core.problems import Problem
from crm_core.schemas.text import unstorable
from crm_core.services.api_keys import Authenticator, Principal

ANONYMOUS = Principal("anonymous", SCOPE_READWRITE)
"""The caller when authentication is switched off (CRM_AUTH_ENABLED=false)."""

SIGNATURE_HEADER = "x-hub-signature-256"

api_key = HTTPBearer(
    scheme_name="apiKey",
    bearerFormat="crm_<12 hex>_<43 characters>",
    description="An API key from `crm-core keys create`, sent as `Authorization: Bearer <key>` "
    "(RFC 6750 §2.1). An `ingest` key may only post messages; a `read` key may only read "
    "(GET routes but the export); a `readwrite` key may use every route.",
    auto_error=False,
)
"""The API key as the OpenAPI document declares it (`components.securitySchemes`: HTTP bearer).

Each route that depends on `authenticate_ingest`, `IngestPrincipal` or `ApiPrincipal` lists it in
its `security`, which gives Swagger UI its "Authorize" button. With `auto_error=False` it never
answers by itself: the 401 and 403 problems stay those of `_requiring`."""


async def require_json_body(request: Request) -> None:
    """Refuse, with 415, a request body that is not declared as UTF-8 JSON."""
    declared = request.headers.get("content-type")
    if declared is None:
        raise Problem(
            415,
            "The request has no Content-Type; send it as application/json.",
            kind="unsupported-media-type",
        )
    if not _is_utf8_json(declared):
        raise Problem(
            415,
            f"Content-Type {declared!r} is not supported; send application/json (UTF-8).",
            kind="unsupported-media-type",
        )


@functools.lru_cache(maxsize=256)
def _is_utf8_json(declared: str) -> bool:
    """Whether a Content-Type value is JSON in UTF-8 (clients send the same few values)."""
    header = Message()
    header["content-type"] = declared
    media_type = header.get_content_type()
    charset = (header.get_content_charset() or "utf-8").lower()
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    return is_json and charset in ("utf-8", "utf8")


async def refuse_unstorable_parameters(request: Request) -> None:
    """Refuse, with 422, a query or path parameter that no database can hold (NUL, a lone
    surrogate: crm_core.schemas.text), before any route reads it."""
    errors = [
        {
            "type": "string_unstorable",
            "loc": (location, name),
            "msg": f"Value {problem}",
            "input": value,
        }
        for location, items in (
            ("query", request.query_params.multi_items()),
            ("path", request.path_params.items()),
        )
        for name, value in items
        if isinstance(value, str) and (problem := unstorable(value)) is not None
    ]
    if errors:
        raise RequestValidationError(errors)


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        detail,
        kind="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="aurora-crm"'},
    )


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(api_key)]


def _requiring(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    async def authenticate(request: Request, _declared: Credentials = None) -> Principal:
        """The request's principal; `_declared` only puts the key into the OpenAPI document,
        since the ingest routes call this with the request alone (crm_core.api.v1.ingest)."""
        settings = get_app_settings(request)
        if not settings.auth_enabled:
            return ANONYMOUS
        credentials = await api_key(request)
        token = credentials.credentials.strip() if credentials is not None else ""
        if not token:
            raise _unauthorized("Send an API key: Authorization: Bearer <key>.")
        authenticator: Authenticator = request.app.state.authenticator
        principal = await authenticator.resolve(token)
        if principal is None:
            raise _unauthorized("The API key is not valid (unknown, malformed or revoked).")
        if principal.scope not in scopes:
            raise Problem(
                403,
                f"This API key has the scope {principal.scope!r}; this route needs "
                f"{' or '.join(repr(scope) for scope in scopes)}.",
                kind="forbidden",
            )
        return principal

    return authenticate


authenticate_ingest = _requiring(SCOPE_INGEST, SCOPE_READWRITE)
"""The principal of a request that posts messages (401 or 403 otherwise)."""

IngestPrincipal = Annotated[Principal, Depends(authenticate_ingest)]
"""Who posts messages: an ingest or a read/write key."""

ApiPrincipal = Annotated[Principal, Depends(_requiring(SCOPE_READWRITE))]
"""Who changes things through the Contacts and Deals API (or exports a person): a read/write
key."""

ReadPrincipal = Annotated[Principal, Depends(_requiring(SCOPE_READ, SCOPE_READWRITE))]
"""Who reads the lists, the records and the event feed: a read or a read/write key."""


async def verify_source_signature(request: Request) -> None:
    """When the body's source has a secret, require its HMAC-SHA256 signature (401 if not).

    The scheme is WhatsApp's (Meta's) webhook one: `X-Hub-Signature-256: sha256=<hex>`, the
    HMAC-SHA256 of the raw body with the source's secret. A batch is signed once: its body
    must verify with the secret of every source in it that has one.
    """
    secrets = get_app_settings(request).source_secrets
    if not secrets:
        return
    body = await request.body()
    sources = _sources_of(body)
    signed = [source for source in sorted(sources) if source in secrets]
    if not signed:
        return
    header = request.headers.get(SIGNATURE_HEADER, "")
    algorithm, _, signature = header.partition("=")
    if algorithm != "sha256" or not signature:
        raise _unauthorized(
            f"Source {signed[0]!r} signs its messages: send X-Hub-Signature-256: sha256=<hex>."
        )
    for source in signed:
        secret = secrets[source].get_secret_value().encode()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise _unauthorized(f"The X-Hub-Signature-256 signature is wrong for {source!r}.")


def _sources_of(body: bytes) -> set[str]:
    """The `source` of a message body, or of each message of a batch body."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        return set()  # the route answers 400 for the body itself
    items = document.get("messages") if isinstance(document, dict) else None
    candidates = items if isinstance(items, list) else [document]
    return {
        item["source"]
        for item in candidates
        if isinstance(item, dict) and isinstance(item.get("source"), str)
    }


SignedBody = Depends(verify_source_signature)
