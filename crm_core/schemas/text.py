"""Text the databases can hold: the one check every string passes before it reaches SQL.

PostgreSQL refuses NUL (U+0000) in `text`, `varchar` and `jsonb` values (its strings are
NUL-terminated; "invalid byte sequence" / "unsupported Unicode escape sequence"), and a lone
UTF-16 surrogate (U+D800 to U+DFFF unpaired, which JSON's `\\ud800` escapes can carry) has no
UTF-8 form at all, so no database stores it faithfully. SQLite would store NUL and truncate it
on the way out in some drivers. Such a string is refused as invalid input (a 4xx) wherever it
comes in: body fields (`StorableStr`, and every key and string of a JSON object through
`crm_core.schemas.ingest.metadata_walk`), and query and path parameters
(`crm_core.api.deps.refuse_unstorable_parameters`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def unstorable(value: str) -> str | None:
    """Why no database stores `value` faithfully (NUL, a lone surrogate), or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (it contains a lone surrogate)"
    return None


def storable(value: str) -> str:
    """`value`, or ValueError saying why the databases cannot hold it."""
    problem = unstorable(value)
    if problem is not None:
        raise ValueError(problem)
    return value


StorableStr = Annotated[str, AfterValidator(storable)]
"""A string field checked by `storable` (add length and pattern constraints around it)."""
