"""Repository-relative paths as written in documents: deliverables and feature files."""

from __future__ import annotations

import posixpath
import re

_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def escape_reason(raw: str, normalized: str | None = None) -> str | None:
    """Why `raw` is not a path inside the repository, or None when it is one."""
    if raw.startswith(("/", "\\", "~")) or _WINDOWS_DRIVE.match(raw):
        return "is absolute"
    normalized = normalized or posixpath.normpath(raw)
    if normalized == ".." or normalized.startswith("../"):
        return "escapes the repository"
    if normalized == ".":
        return "names the repository itself"
    return None


def normalized(raw: str) -> str:
    """The canonical form of a path `escape_reason` accepted (`a/./b/../c.py` -> `a/c.py`)."""
    return posixpath.normpath(raw)
