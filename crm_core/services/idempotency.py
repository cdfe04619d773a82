"""Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header), enforced by the database.

A request with a key first claims it: a `processing` row, committed on its own, unique per
(principal, key). Then its work and the `completed` state (with the response to replay) are
committed together. Whoever comes second meets the row:

- same fingerprint, completed: 200 with the first response (replayed), or the first
  response's own status when it refused the request (a 409 or 410 of the ingest);
- same fingerprint, still processing: 409 (retry later);
- another fingerprint: 422 (the key was reused for a different request).

If the work fails, the claim is withdrawn so that a retry can run. If the process dies before
it can (killed, or its machine lost), the claim stays `processing`; once it is older than the
lease, a retry with the same key and body takes it over under a new claim id, so the dead
request's claim can neither complete nor withdraw it any more. The work and the `completed`
state commit together, so a claim still `processing` means that no work was committed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, select, update

from crm_core.database import insert_ignoring_conflicts
from crm_core.exceptions import (
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    InvalidIdempotencyKeyError,
)
from crm_core.models.base import utcnow
from crm_core.models.idempotency_key import COMPLETED, PROCESSING, IdempotencyKey

KEYS: Table = IdempotencyKey.__table__  # type: ignore[assignment]
MAX_KEY_CHARS = 255


@dataclass(frozen=True, slots=True)
class Outcome:
    """The response of a request: its status and JSON body, and whether it is a replay."""

    status: int
    body: Any
    replayed: bool = False


def fingerprint(method: str, path: str, payload: Any) -> str:
    """sha256 of the request as understood (canonical JSON), not of its bytes."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str) -> str:
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable() or not key.isascii():
        raise InvalidIdempotencyKeyError(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters."
        )
    return key


def run_once(
    engine: Engine,
    principal: str,
    key: str,
    request_fingerprint: str,
    work: Callable[[Connection], Outcome],
    lease_seconds: float = 60.0,
) -> Outcome:
    """Run `work` once per (principal, key); replay, or refuse, every later request."""
    claim = _claim(engine, principal, key, request_fingerprint, lease_seconds)
    if isinstance(claim, Outcome):
        return claim
    try:
        with engine.begin() as connection:
            outcome = work(connection)
            connection.execute(
                update(KEYS)
                .where(KEYS.c.id == claim)
                .values(
                    state=COMPLETED,
                    response_status=outcome.status,
                    response_body=outcome.body,
                    completed_at=utcnow(),
                )
            )
        return outcome
    except BaseException:
        with engine.begin() as connection:
            connection.execute(delete(KEYS).where(KEYS.c.id == claim, KEYS.c.state == PROCESSING))
        raise


def _claim(
    engine: Engine, principal: str, key: str, request_fingerprint: str, lease_seconds: float
) -> uuid.UUID | Outcome:
    claim_id = uuid.uuid4()
    with engine.begin() as connection:
        claimed = connection.execute(
            insert_ignoring_conflicts(connection, KEYS, "principal", "key")
            .values(
                id=claim_id,
                principal=principal,
                key=key,
                fingerprint=request_fingerprint,
                state=PROCESSING,
                created_at=utcnow(),
            )
            .returning(KEYS.c.id)
        ).first()
        if claimed is not None:
            return claim_id
        existing = connection.execute(
            select(
                KEYS.c.fingerprint, KEYS.c.state, KEYS.c.response_status, KEYS.c.response_body
            ).where(KEYS.c.principal == principal, KEYS.c.key == key)
        ).first()
        if (
            existing is not None
            and existing.state == PROCESSING
            and existing.fingerprint == request_fingerprint
        ):
            # Only one retry wins: the row lock makes a second one re-read the new created_at.
            now = utcnow()
            taken = connection.execute(
                update(KEYS)
                .where(
                    KEYS.c.principal == principal,
                    KEYS.c.key == key,
                    KEYS.c.state == PROCESSING,
                    KEYS.c.created_at < now - timedelta(seconds=lease_seconds),
                )
                .values(id=claim_id, created_at=now)
                .returning(KEYS.c.id)
            ).first()
            if taken is not None:
                return claim_id
    if existing is None or existing.state == PROCESSING:
        # (None: the first request failed and withdrew its claim a moment ago.)
        if existing is not None and existing.fingerprint != request_fingerprint:
            raise _reused()
        raise IdempotencyKeyInUseError(
            "A request with this Idempotency-Key is still being processed; retry later."
        )
    if existing.fingerprint != request_fingerprint:
        raise _reused()
    # A success is replayed as 200 (the work is done); a refusal (409, 410) as itself.
    code = existing.response_status or 200
    return Outcome(200 if code < 300 else code, existing.response_body, replayed=True)


def _reused() -> IdempotencyKeyReusedError:
    return IdempotencyKeyReusedError(
        "This Idempotency-Key was already used for a different request; use a new key."
    )
