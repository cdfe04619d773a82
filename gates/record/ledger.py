"""The ledger (livro-razão): one hash-chained line per closure the runner writes.

`vault/ledger.jsonl` holds one JSON object per line, in canonical form (sorted keys, no
spaces), each naming the sha256 of the entry before it. It is rewritten atomically under a lock,
so concurrent runs never interleave and a crash leaves either the old ledger or the new one.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from gates.exceptions import LedgerLockedError
from gates.files import write_atomically
from gates.signing import Signer

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = ".ledger.lock"
GENESIS = "0" * 64
UNSIGNED_KEYS = ("hash", "signature")


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 of the entry's canonical form without its hash and signature."""
    body = {key: value for key, value in entry.items() if key not in UNSIGNED_KEYS}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the ledger as read: its number, its text, and the entry when it parses."""

    number: int
    text: str
    entry: dict[str, Any] | None


def ledger_path(root: Path, vault: PurePath | str = "vault") -> Path:
    return root / vault / LEDGER_NAME


def read_lines(path: Path) -> list[Line]:
    if not path.is_file():
        return []
    lines: list[Line] = []
    raw = path.read_bytes().decode("utf-8", errors="replace")
    for number, text in enumerate(raw.split("\n"), start=1):
        if not text:
            continue
        try:
            entry = json.loads(text)
        except ValueError:
            entry = None
        lines.append(Line(number, text, entry if isinstance(entry, dict) else None))
    return lines


def entries(path: Path) -> list[dict[str, Any]]:
    return [line.entry for line in read_lines(path) if line.entry is not None]


@contextmanager
def locked(root: Path, vault: PurePath | str = "vault", *, wait_s: float = 120.0) -> Iterator[None]:
    """Hold the vault's lock; wait up to `wait_s` for another run to finish, then give up."""
    lock_path = root / vault / LOCK_NAME
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = lock_path.read_text(encoding="utf-8", errors="replace").strip()
                    raise LedgerLockedError(
                        f"another `gates certify` ({holder or 'unknown process'}) holds "
                        f"{lock_path}; waited {wait_s:.0f} s — try again when it has finished"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def append(path: Path, fields: dict[str, Any], signer: Signer | None) -> dict[str, Any]:
    """Chain `fields` after the last entry and rewrite the ledger atomically. Hold the lock."""
    lines = read_lines(path)
    previous = lines[-1].entry if lines else None
    entry = dict(fields)
    entry["seq"] = (int(previous["seq"]) + 1) if previous else 1
    entry["prev"] = str(previous["hash"]) if previous else GENESIS
    entry["key_id"] = signer.key_id if signer else None
    entry["public_key"] = signer.public_key_b64 if signer else None
    entry["hash"] = entry_hash(entry)
    entry["signature"] = signer.sign(entry["hash"].encode("ascii")) if signer else None
    text = "".join(line.text + "\n" for line in lines) + canonical(entry) + "\n"
    write_atomically(path, text)
    return entry
