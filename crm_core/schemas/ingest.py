"""The message a channel hands to `POST /ingest/message`, and the receipt it gets back."""

from __future__ import annotations

import json
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
)

MAX_SENDER_ID_CHARS = 128
MAX_CONTENT_CHARS = 65_536
MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 8

SOURCE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _storable_text(value: str) -> str:
    """Refuse what no database stores faithfully: NUL bytes and lone UTF-16 surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it contains a lone surrogate)") from None
    return value


def _sender_id(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return _storable_text(value)


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    depth = _depth(value)
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"is nested {depth} levels deep; at most {MAX_METADATA_DEPTH} are allowed")
    _check_strings(value)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed")
    return value


def _depth(value: Any) -> int:
    """Nesting depth without recursion, so a hostile document cannot exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


def _check_strings(value: Any) -> None:
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            _storable_text(node)
        elif isinstance(node, dict):
            for key, child in node.items():
                _storable_text(key)
                stack.append(child)
        elif isinstance(node, list):
            stack.extend(node)


Source = Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
SenderId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_SENDER_ID_CHARS),
    AfterValidator(_sender_id),
]
Content = Annotated[
    str, StringConstraints(max_length=MAX_CONTENT_CHARS), AfterValidator(_storable_text)
]
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
        description="The person's id on that channel (E.164 digits for WhatsApp)."
    )
    content: Content = Field(description="The message text (may be empty for media).")
    metadata: Metadata = Field(
        default_factory=dict,
        description=(
            f"Channel data, a JSON object of at most {MAX_METADATA_BYTES} bytes "
            f"and {MAX_METADATA_DEPTH} levels."
        ),
    )


class IngestReceipt(BaseModel):
    """What the channel keeps as proof that the message was accepted."""

    id: uuid.UUID = Field(description="The receipt id.")
    status: Literal["accepted"] = "accepted"
    received_at: datetime = Field(description="When the message was accepted (UTC).")
