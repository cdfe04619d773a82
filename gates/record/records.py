"""Reading the closure records in the vault through the ledger: a record is a verdict only when
the ledger vouches for it (an entry names its twin with these very bytes).

A twin copied into the records folder by hand, or left there by a run killed before its ledger
entry, is read too, but as what it is: a record outside the ledger (`vouched` false), never the
latest verdict of its OS.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from gates.files import sha256_file
from gates.record import ledger
from gates.record.closure import RECORDS_DIR, SCHEMAS


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What `gates status`, the report and PLAN.md show of one closure record."""

    os_id: str
    decision: str
    commit: str
    certified_at: datetime
    markdown: PurePosixPath
    twin: PurePosixPath
    document: dict[str, Any]
    vouched: bool = True
    """Whether a ledger entry names this twin with its current bytes."""


def records_of(root: Path, spec: PurePosixPath, os_id: str) -> list[RecordSummary]:
    """Every record of an OS that the ledger vouches for, oldest first."""
    return [record for record in all_records(root, spec, os_id) if record.vouched]


def latest_record(root: Path, spec: PurePosixPath, os_id: str) -> RecordSummary | None:
    """The OS's latest record that the ledger vouches for."""
    records = records_of(root, spec, os_id)
    return records[-1] if records else None


def unvouched_records(root: Path, spec: PurePosixPath, os_id: str) -> list[RecordSummary]:
    """The OS's records that no ledger entry vouches for, oldest first."""
    return [record for record in all_records(root, spec, os_id) if not record.vouched]


def all_records(root: Path, spec: PurePosixPath, os_id: str) -> list[RecordSummary]:
    """Every readable record of an OS, vouched for or not, oldest first."""
    folder = root / spec.parent.parent / RECORDS_DIR / os_id
    found: list[RecordSummary] = []
    if not folder.is_dir():
        return found
    vouched = _vouched_twins(_ledger_of(root, spec))
    for twin in folder.glob("*.json"):
        summary = _read(root, twin, vouched)
        if summary is not None and summary.os_id == os_id:
            found.append(summary)
    return sorted(found, key=lambda record: (record.certified_at, record.commit))


def _ledger_of(root: Path, spec: PurePosixPath) -> Path:
    """vault/ledger.jsonl for a spec at vault/<project>/os/<id>.md."""
    vault = spec.parents[2] if len(spec.parents) >= 3 else PurePosixPath("vault")
    return ledger.ledger_path(root, vault)


def _vouched_twins(book: Path) -> dict[str, str]:
    """Twin path -> the sha256 its latest ledger entry gives it."""
    try:
        stat = book.stat()
    except OSError:
        return {}
    return _index(str(book), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)  # one ledger, read once while it does not change
def _index(book: str, _mtime_ns: int, _size: int) -> dict[str, str]:
    twins: dict[str, str] = {}
    for entry in ledger.entries(Path(book)):
        described = entry.get("twin")
        if isinstance(described, dict):
            path, digest = described.get("path"), described.get("sha256")
            if isinstance(path, str) and isinstance(digest, str):
                twins[path] = digest
    return twins


def _read(root: Path, twin: Path, vouched: dict[str, str]) -> RecordSummary | None:
    try:
        document = json.loads(twin.read_text(encoding="utf-8"))
        if document.get("schema") not in SCHEMAS:
            return None
        relative = PurePosixPath(twin.relative_to(root).as_posix())
        return RecordSummary(
            os_id=str(document["os"]["id"]),
            decision=str(document["decision"]),
            commit=str(document["commit"]),
            certified_at=datetime.fromisoformat(document["certified_at"]),
            markdown=PurePosixPath(document["record"]["markdown"]),
            twin=relative,
            document=document,
            vouched=vouched.get(relative.as_posix()) == sha256_file(twin),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
