"""The message a channel hands to `POST /ingest/message`, and the receipt it gets back."""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import to_json

from crm_core.schemas.text import storable, unstorable
from crm_core.services.senders import InvalidSenderError, canonical_sender_id

MAX_SENDER_ID_CHARS = 128
MAX_CONTENT_CHARS = 65_536
MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 8
MAX_CHANNEL_MESSAGE_ID_CHARS = 256
MAX_BATCH_MESSAGES = 1000
CHANNEL_MESSAGE_ID_KEY = "message_id"

SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


ERASED_PREFIX = "erased:"
"""An erased contact's sender id is `erased:<contact id>` (crm_core.services.privacy); no sender
may use the prefix, so no message can ever be filed under an erased contact."""


def _sender_id(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    if value.startswith(ERASED_PREFIX):
        raise ValueError(f"must not start with {ERASED_PREFIX!r}, which marks erased contacts")
    return storable(value)


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    depth, size_bound, problem = metadata_walk(value)
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"is nested {depth} levels deep; at most {MAX_METADATA_DEPTH} are allowed")
    if problem is not None:
        raise ValueError(problem)
    if size_bound > MAX_METADATA_BYTES:  # it may be too large: measured as stored
        size = len(to_json(value))  # compact UTF-8 JSON
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
    message_id = value.get(CHANNEL_MESSAGE_ID_KEY)
    if message_id is not None and not (
        isinstance(message_id, str) and 0 < len(message_id) <= MAX_CHANNEL_MESSAGE_ID_CHARS
    ):
        raise ValueError(
            f"{CHANNEL_MESSAGE_ID_KEY!r}, the channel's message id, must be a string of 1 to "
            f"{MAX_CHANNEL_MESSAGE_ID_CHARS} characters"
        )
    return value


# The most bytes a JSON scalar other than a string takes: `false`, and a float's shortest
# repr (e.g. -2.2250738585072014e-308); an integer of more digits is measured instead.
_SCALAR_BYTES = 24
_SHORT_INTEGER = 10**20
# Python's JSON parser reads NaN, Infinity and numbers past a double (1e400) as floats that
# JSON itself, and so JSONB, cannot hold.
_NOT_FINITE = "must hold JSON numbers only: NaN, Infinity and numbers as large as 1e400 are not"


def metadata_walk(value: Any) -> tuple[int, int, str | None]:
    """The nesting depth, an upper bound of the compact UTF-8 JSON size (a character takes
    at most 6 bytes, as a \\u escape) and the first problem (a string no database stores, a
    number JSON cannot hold), in one pass without recursion, so a hostile document cannot
    exhaust the stack."""
    deepest = 0
    bound = 0
    problem: str | None = None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, str):
            bound += 6 * len(node) + 2
            if problem is None:
                problem = unstorable(node)
        elif isinstance(node, dict):
            deepest = max(deepest, level)
            bound += 2 + 2 * len(node)  # the braces; a colon and a comma a member
            for key, child in node.items():
                bound += 6 * len(key) + 2
                if problem is None:
                    problem = unstorable(key)
                stack.append((child, level + 1))
        elif isinstance(node, list):
            deepest = max(deepest, level)
            bound += 2 + len(node)
            stack.extend((child, level + 1) for child in node)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= _SHORT_INTEGER:
            bound += MAX_METADATA_BYTES + 1
        else:
            bound += _SCALAR_BYTES
            if problem is None and isinstance(node, float) and not math.isfinite(node):
                problem = _NOT_FINITE
    return deepest, bound, problem


Source = Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
SenderId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_SENDER_ID_CHARS),
    AfterValidator(_sender_id),
]
Content = Annotated[str, StringConstraints(max_length=MAX_CONTENT_CHARS), AfterValidator(storable)]
Metadata = Annotated[dict[str, JsonValue], AfterValidator(_metadata)]


class IngestMessage(BaseModel):
    """One incoming message from a channel."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source": "whatsapp",
                    "sender_id": "5511999999999",
                    "content": "teste",
                    "metadata": {},
                }
            ]
        },
    )

    source: Source = Field(
        description="The channel, a lowercase slug: whatsapp, instagram, webchat, ..."
    )
    sender_id: SenderId = Field(
        description=(
            "The person's id on that channel. For WhatsApp a phone number (E.164 digits, or a "
            "national form of CRM_DEFAULT_REGION) or the person's JID (…@s.whatsapp.net)."
        )
    )
    content: Content = Field(description="The message text (may be empty for media).")
    metadata: Metadata = Field(
        default_factory=dict,
        description=(
            f"Channel data, a JSON object of at most {MAX_METADATA_BYTES} bytes "
            f"and {MAX_METADATA_DEPTH} levels. `{CHANNEL_MESSAGE_ID_KEY}`, when present, is "
            "the channel's id of the message: a message is stored once per source and id."
        ),
    )

    @field_validator("sender_id")
    @classmethod
    def _sender_valid_for_source(cls, value: str, info: ValidationInfo) -> str:
        source = info.data.get("source")
        if isinstance(source, str):
            try:
                canonical_sender_id(source, value)
            except InvalidSenderError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def channel_message_id(self) -> str | None:
        value = self.metadata.get(CHANNEL_MESSAGE_ID_KEY)
        return value if isinstance(value, str) else None

    @property
    def canonical_sender_id(self) -> str:
        return canonical_sender_id(self.source, self.sender_id)


class IngestReceipt(BaseModel):
    """What the channel keeps as proof that the message was accepted."""

    id: uuid.UUID = Field(description="The message id.")
    status: Literal["accepted"] = "accepted"
    received_at: datetime = Field(description="When the message was accepted (UTC).")
    contact_id: uuid.UUID = Field(description="The contact the message was filed under.")


class IngestBatch(BaseModel):
    """Up to 1,000 messages in one request; each is validated and answered on its own."""

    model_config = ConfigDict(extra="forbid")

    # Any, not JsonValue: the items come from parsed JSON, and each one is validated on its
    # own as an IngestMessage (so a bad item is rejected alone, not the whole batch).
    messages: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH_MESSAGES,
        description=f"1 to {MAX_BATCH_MESSAGES} messages, each shaped as for /ingest/message.",
    )


class BatchItemResult(BaseModel):
    """The answer for one message of a batch, at its position in the request."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    received_at: datetime | None = None
    problem: dict[str, JsonValue] | None = Field(
        default=None, description="Why a rejected message was refused (problem details)."
    )


class BatchReceipt(BaseModel):
    """Counts and per-message answers; the accepted messages are committed."""

    accepted: int
    duplicate: int
    rejected: int
    results: list[BatchItemResult]
