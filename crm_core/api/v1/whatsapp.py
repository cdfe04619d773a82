"""`GET` and `POST /webhooks/whatsapp`: the WhatsApp Cloud API webhook, straight from Meta.

`GET` answers Meta's verification handshake: the challenge back, as text, when the verify
token matches `CRM_WHATSAPP_VERIFY_TOKEN`. `POST` takes a delivery: its `X-Hub-Signature-256`
(HMAC-SHA256 of the raw body under `CRM_WHATSAPP_APP_SECRET`) is checked before anything is
parsed, and is the route's authentication (Meta sends no API key); the whole delivery is
stored in one transaction (crm_core.services.whatsapp), answered 200 after the commit. Both
routes answer 404 until both settings are set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from pydantic_core import to_json

from crm_core.api.deps import SIGNATURE_HEADER, get_app_settings
from crm_core.database import Database
from crm_core.problems import Problem
from crm_core.services.whatsapp import DeliveryPlan, DeliveryReport, read_delivery, store_delivery

router = APIRouter(prefix="/webhooks/whatsapp", tags=["whatsapp"])

SUBSCRIBE = "subscribe"
MAX_CHALLENGE_CHARS = 1024

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
SIGNED_OPERATION: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Hub-Signature-256",
            "in": "header",
            "required": True,
            "description": "sha256=<hex HMAC-SHA256 of the raw body under the Meta App Secret>: "
            "the route's authentication, in place of an API key.",
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["object"],
                    "properties": {
                        "object": {"const": "whatsapp_business_account"},
                        "entry": {"type": "array", "items": {"type": "object"}},
                    },
                    "additionalProperties": True,
                }
            }
        },
    },
}


def _secrets(request: Request) -> tuple[bytes, bytes]:
    """(verify token, app secret); 404 while either is unset."""
    settings = get_app_settings(request)
    token, secret = settings.whatsapp_verify_token, settings.whatsapp_app_secret
    if token is None or secret is None:
        raise Problem(
            404,
            "The WhatsApp webhook is not configured: set CRM_WHATSAPP_VERIFY_TOKEN and "
            "CRM_WHATSAPP_APP_SECRET.",
            kind="not-found",
        )
    return token.get_secret_value().encode(), secret.get_secret_value().encode()


@router.get(
    "",
    summary="Meta's verification handshake of the WhatsApp webhook",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "The challenge, as text/plain", "content": {"text/plain": {}}},
        403: {"description": "The verify token or the mode is wrong", **_PROBLEM},
        404: {"description": "The WhatsApp webhook is not configured", **_PROBLEM},
        422: {"description": "A parameter holds text no database stores (NUL)", **_PROBLEM},
    },
)
def verify_webhook(
    request: Request,
    mode: Annotated[str, Query(alias="hub.mode")] = "",
    token: Annotated[str, Query(alias="hub.verify_token")] = "",
    challenge: Annotated[str, Query(alias="hub.challenge")] = "",
) -> PlainTextResponse:
    expected, _ = _secrets(request)
    matches = hmac.compare_digest(token.encode(), expected)
    if not (matches and mode == SUBSCRIBE and 0 < len(challenge) <= MAX_CHALLENGE_CHARS):
        raise Problem(
            403,
            "The verify token, the mode (subscribe) or the challenge is wrong or missing.",
            kind="forbidden",
        )
    return PlainTextResponse(challenge)


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """401 unless `header` is `sha256=<hex>` of HMAC-SHA256(secret, body)."""
    algorithm, _, signature = (header or "").partition("=")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if algorithm != "sha256" or not hmac.compare_digest(expected, signature.strip().lower()):
        raise Problem(
            401,
            "Send the X-Hub-Signature-256 header: sha256=<hex HMAC-SHA256 of the raw body "
            "under the Meta App Secret>; it is missing or wrong, and nothing was stored.",
            kind="unauthorized",
        )


def not_a_delivery(reason: str) -> Problem:
    return Problem(
        422,
        f"The body is not a WhatsApp Business Account webhook: {reason}; nothing was stored.",
        kind="not-a-whatsapp-delivery",
        title="Not a WhatsApp delivery",
    )


def parse_delivery(body: bytes) -> DeliveryPlan:
    try:
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError among them
        raise not_a_delivery("it is not JSON") from None
    try:
        return read_delivery(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(str(part) for part in first["loc"]) or "the document"
        raise not_a_delivery(f"{where}: {first['msg']}") from None


@router.post(
    "",
    summary="A WhatsApp Cloud API delivery (signed by Meta; no API key)",
    response_model=None,
    responses={
        200: {"description": "Stored and committed: what became of its parts"},
        401: {"description": "X-Hub-Signature-256 missing or wrong", **_PROBLEM},
        404: {"description": "The WhatsApp webhook is not configured", **_PROBLEM},
        413: {"description": "The body is larger than the limit", **_PROBLEM},
        422: {"description": "Not a WhatsApp Business Account webhook", **_PROBLEM},
    },
    openapi_extra=SIGNED_OPERATION,
)
async def receive_delivery(request: Request) -> Response:
    _, secret = _secrets(request)
    body = await request.body()
    verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER))
    plan = parse_delivery(body)
    database: Database = request.app.state.database

    def store() -> DeliveryReport:
        with database.engine.begin() as connection:
            return store_delivery(connection, plan)

    report = await run_in_threadpool(store)
    return Response(to_json(report.body()), status.HTTP_200_OK, media_type="application/json")
