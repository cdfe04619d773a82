"""Creating, revoking, listing and checking API keys.

A key is `crm_<prefix>_<secret>`: 12 hex characters that find the row, then 43 URL-safe
characters (256 bits) of secret. It is shown once, when created; the database keeps the
sha256 of the whole key, compared with `hmac.compare_digest`.
"""

from __future__ import annotations

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

from crm_core.exceptions import ApiKeyError
from crm_core.models import ApiKey
from crm_core.models.api_key import SCOPES
from crm_core.models.base import utcnow

_TOKEN = re.compile(r"crm_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


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
    most `cache_seconds` later (0 disables the cache).
    """

    def __init__(self, engine: Engine, cache_seconds: float) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(True, answer) when the cache knows the token, else (False, None)."""
        entry = self._cache.get(hash_key(token)) if self.cache_seconds > 0 else None
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def authenticate(self, token: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown or revoked key."""
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
        with self.engine.connect() as connection:
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
