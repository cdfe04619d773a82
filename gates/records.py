"""Reading the closure records already in the vault: the latest verdict of each OS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from gates.closure import RECORDS_DIR, SCHEMA


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What `gates status` and PLAN.md show of one closure record."""

    os_id: str
    decision: str
    commit: str
    certified_at: datetime
    markdown: PurePosixPath
    twin: PurePosixPath
    document: dict[str, Any]


def records_of(root: Path, spec: PurePosixPath, os_id: str) -> list[RecordSummary]:
    """Every readable record of an OS, oldest first."""
    folder = root / spec.parent.parent / RECORDS_DIR / os_id
    found: list[RecordSummary] = []
    if not folder.is_dir():
        return found
    for twin in folder.glob("*.json"):
        summary = _read(root, twin)
        if summary is not None and summary.os_id == os_id:
            found.append(summary)
    return sorted(found, key=lambda record: (record.certified_at, record.commit))


def latest_record(root: Path, spec: PurePosixPath, os_id: str) -> RecordSummary | None:
    records = records_of(root, spec, os_id)
    return records[-1] if records else None


def _read(root: Path, twin: Path) -> RecordSummary | None:
    try:
        document = json.loads(twin.read_text(encoding="utf-8"))
        if document.get("schema") != SCHEMA:
            return None
        return RecordSummary(
            os_id=str(document["os"]["id"]),
            decision=str(document["decision"]),
            commit=str(document["commit"]),
            certified_at=datetime.fromisoformat(document["certified_at"]),
            markdown=PurePosixPath(document["record"]["markdown"]),
            twin=PurePosixPath(twin.relative_to(root).as_posix()),
            document=document,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
