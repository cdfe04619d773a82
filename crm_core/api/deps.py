"""Dependencies shared by the routes."""

from __future__ import annotations

from email.message import Message

from fastapi import Request

from crm_core.problems import Problem


def require_json_body(request: Request) -> None:
    """Refuse, with 415, a request body that is not declared as UTF-8 JSON."""
    declared = request.headers.get("content-type")
    if declared is None:
        raise Problem(
            415,
            "The request has no Content-Type; send it as application/json.",
            kind="unsupported-media-type",
        )
    header = Message()
    header["content-type"] = declared
    media_type = header.get_content_type()
    charset = (header.get_content_charset() or "utf-8").lower()
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    if not is_json or charset not in ("utf-8", "utf8"):
        raise Problem(
            415,
            f"Content-Type {declared!r} is not supported; send application/json (UTF-8).",
            kind="unsupported-media-type",
        )
