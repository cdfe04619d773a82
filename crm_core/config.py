"""Settings, read from the environment (and nothing else) when first asked for."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import phonenumbers
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./aurora_crm.db"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Runtime settings. Every field can be set by an environment variable (see README)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "CRM_DATABASE_URL"),
        description="SQLAlchemy URL; postgresql:// URLs are run with psycopg 3.",
    )
    log_level: LogLevel = Field(default="INFO", description="Level of the JSON log lines.")
    max_body_bytes: int = Field(
        default=1_048_576, gt=0, description="Largest request body accepted (413 above it)."
    )
    database_connect_timeout: int = Field(
        default=5, gt=0, description="Seconds to wait for a PostgreSQL connection."
    )
    max_batch_body_bytes: int = Field(
        default=16_777_216,
        gt=0,
        description="Largest body of POST /ingest/messages and /webhooks/whatsapp (413 above).",
    )
    auth_enabled: bool = Field(
        default=True,
        description="Require an API key (Authorization: Bearer). Off only for local trials.",
    )
    api_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a checked API key is remembered (a revocation waits this long).",
    )
    idempotency_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "How long an Idempotency-Key's first request may run: after this, a retry with the "
            "same key and body takes the key over (its first request died before committing)."
        ),
    )
    default_region: str = Field(
        default="BR",
        description=(
            "ISO 3166-1 alpha-2 region of phone numbers written in national form, e.g. "
            "(21) 98765-0001 (see crm_core.services.senders)."
        ),
    )
    ingest_validation_only: bool = Field(
        default=False,
        description=(
            "Benchmarks only: POST /ingest/message validates and answers 202 without storing "
            "anything (the OS 004 behaviour), to measure the ceiling of the route itself."
        ),
    )
    source_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            'Per-source HMAC-SHA256 secrets, as JSON ({"whatsapp": "..."}): a source listed '
            "here must sign each body (X-Hub-Signature-256: sha256=<hex>)."
        ),
    )

    whatsapp_verify_token: SecretStr | None = Field(
        default=None,
        description=(
            "The verify token of the WhatsApp Cloud API webhook, as typed in Meta's app "
            "dashboard: GET /webhooks/whatsapp answers Meta's handshake with it. The webhook "
            "routes answer 404 until it and CRM_WHATSAPP_APP_SECRET are set."
        ),
    )
    whatsapp_app_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The Meta App Secret: every POST /webhooks/whatsapp body must carry its "
            "HMAC-SHA256 signature (X-Hub-Signature-256: sha256=<hex>)."
        ),
    )

    outbox: bool = Field(
        default=True,
        description=(
            "Write every change that matters as an event in its own transaction (the outbox "
            "GET /events serves and the relay publishes). Off, no events are written."
        ),
    )
    event_source: str = Field(
        default="/aurora-crm/crm-core",
        min_length=1,
        max_length=200,
        pattern=r"^\S+$",
        description="The CloudEvents `source` (a URI-reference) of the events served.",
    )
    nats_url: str | None = Field(
        default=None,
        description=(
            "NATS server the relay (`crm-core relay`) publishes the events to, e.g. "
            "nats://127.0.0.1:4222. Unset (the default): no relay, nothing needs a NATS server."
        ),
    )
    nats_stream: str = Field(
        default="CRM_EVENTS",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="The JetStream stream the relay creates and publishes to.",
    )
    events_retention_days: float = Field(
        default=30.0,
        gt=0,
        description=(
            "`crm-core events prune` deletes events older than this many days (never one "
            "the relay has not published)."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("default_region", mode="before")
    @classmethod
    def _known_region(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region libphonenumber knows (e.g. BR, PT, US)")
        return region


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
