"""Creating, revoking, listing and checking API keys.

A key is `crm_<prefix>_<secret>`: 12 hex characters that find the row, then 43 URL-safe
characters (256 bits) of secret. It is shown once, when created; the database keeps the
sha256 of the whole key, compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from crm_core.database import READ_ONLY
from crm_core.exceptions import ApiKeyError
from crm_core.models import ApiKey
from crm_core.models.api_key import SCOPES
from crm_core.models.base import utcnow

_TOKEN = re.compile(r"crm_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_REFRESH_AHEAD = 0.2  # the last fifth of an answer's life: refresh it in the background


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as its API key says: the key's id (kept in audit records) and scope."""

    key_id: str
    scope: str


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, scope: str, name: str) -> tuple[ApiKey, str]:
    """A new key of `scope`; returns the row and the key itself (shown once, never stored)."""
    if scope not in SCOPES:
        raise ApiKeyError(f"unknown scope {scope!r}; use one of: {', '.join(SCOPES)}")
    prefix = secrets.token_hex(6)
    token = f"crm_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, scope=scope, prefix=prefix, secret_hash=hash_key(token))
    session.add(key)
    session.commit()
    return key, token


def revoke_key(session: Session, key_id: str) -> ApiKey:
    try:
        wanted = uuid.UUID(key_id)
    except ValueError:
        raise ApiKeyError(f"{key_id!r} is not a key id (a UUID, as `keys list` shows)") from None
    key = session.get(ApiKey, wanted)
    if key is None:
        raise ApiKeyError(f"no API key has the id {key_id}")
    if key.revoked_at is not None:
        raise ApiKeyError(f"the API key {key_id} was already revoked on {key.revoked_at:%Y-%m-%d}")
    session.execute(update(ApiKey).where(ApiKey.id == wanted).values(revoked_at=utcnow()))
    session.commit()
    session.refresh(key)
    return key


def list_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()


class Authenticator:
    """Checks bearer keys against the database, remembering answers for `cache_seconds`.

    The cache keeps the ingest path free of a query per request; a revoked key is refused at
    most `cache_seconds` later (0 disables the cache). When an answer is about to expire, one
    request refreshes it in the background while the others keep using it, and requests that
    find no answer share one lookup: the traffic of a busy key never waits on the database
    all at once.
    """

    def __init__(self, engine: Engine, cache_seconds: float) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}

    async def resolve(self, token: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown or revoked key."""
        if self.cache_seconds <= 0:
            return await run_in_threadpool(self.authenticate, token)
        digest = hash_key(token)
        entry = self._cache.get(digest)
        now = time.monotonic()
        if entry is not None and now <= entry[0]:
            if entry[0] - now < self.cache_seconds * _REFRESH_AHEAD:
                self._lookup_once(token, digest)  # refreshed while this answer still holds
            return entry[1]
        return await asyncio.shield(self._lookup_once(token, digest))

    def _lookup_once(self, token: str, digest: str) -> asyncio.Future[Principal | None]:
        running = self._lookups.get(digest)
        if running is None:
            running = asyncio.ensure_future(run_in_threadpool(self.authenticate, token))
            self._lookups[digest] = running
            running.add_done_callback(lambda done: self._finished(digest, done))
        return running

    def _finished(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        self._lookups.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved: a failed background refresh is not an unhandled one

    def authenticate(self, token: str) -> Principal | None:
        """The key's principal from the database (blocking), remembered for `cache_seconds`."""
        digest = hash_key(token)
        principal = self._lookup(token, digest)
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (time.monotonic() + self.cache_seconds, principal)
        return principal

    def _lookup(self, token: str, digest: str) -> Principal | None:
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            row = connection.execute(
                select(ApiKey.id, ApiKey.scope, ApiKey.secret_hash, ApiKey.revoked_at).where(
                    ApiKey.prefix == match[1]
                )
            ).first()
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            return None
        if row.revoked_at is not None:
            return None
        return Principal(str(row.id), row.scope)
