"""`gates verify`: recompute the ledger and the files it vouches for; find stale certifications.

An auditor runs this instead of trusting whoever last pushed: every entry's canonical form,
hash, place in the chain and (with a public key) signature; every record, twin and attestation
the ledger names; and, for each OS, whether the text it was certified on is still the text in
the tree (DESATUALIZADA when it is not).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gates import ledger
from gates.closure import hash_files, sha256_file
from gates.config import GatesConfig, load_config
from gates.signing import key_id, public_key_from_b64, verify_signature
from gates.vault import Vault, load_vault

FILE_KEYS = ("record", "twin", "statement", "envelope")


@dataclass(frozen=True, slots=True)
class Staleness:
    os_id: str
    seq: int
    commit: str
    changed: tuple[str, ...]


@dataclass(slots=True)
class Verification:
    """What `gates verify` found. `errors` break trust; `stale` are warnings unless strict."""

    ledger: str
    entries: int = 0
    signed: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stale: list[Staleness] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.errors


def verify(
    root: Path,
    *,
    public_key: Ed25519PublicKey | None = None,
    vault: Vault | None = None,
    stale: list[Staleness] | None = None,
) -> Verification:
    """Check the ledger, the files it names and which certifications went stale.

    A caller that already loaded the vault of `root`, or found its stale certifications, passes
    them in (they are computed here otherwise).
    """
    config = load_config(root)
    book = ledger.ledger_path(root, config.vault)
    shown = book.relative_to(root).as_posix()
    report = Verification(ledger=shown)
    if not book.is_file():
        report.warnings.append(f"{shown}: there is no ledger yet (nothing has been certified)")
        return report
    raw = book.read_bytes()
    if raw and not raw.endswith(b"\n"):
        report.errors.append(f"{shown}: the last line is incomplete (no newline at the end)")
    latest: dict[str, tuple[int, str]] = {}
    previous_hash = ledger.GENESIS
    expected_seq = 1
    for line in ledger.read_lines(book):
        where = f"{shown}:{line.number}"
        entry = line.entry
        if entry is None:
            report.errors.append(f"{where}: not a JSON object (the line was edited)")
            expected_seq += 1
            continue
        report.entries += 1
        seq = entry.get("seq")
        label = f"{where} (entry {seq})"
        if line.text != ledger.canonical(entry):
            report.errors.append(f"{label}: not in canonical form (the line was edited)")
        if seq != expected_seq:
            report.errors.append(
                f"{label}: expected entry {expected_seq} here — an entry was removed, inserted "
                "or reordered"
            )
        if entry.get("prev") != previous_hash:
            report.errors.append(f"{label}: prev does not match the hash of the entry before it")
        recomputed = ledger.entry_hash(entry)
        if entry.get("hash") != recomputed:
            report.errors.append(f"{label}: hash differs from its content (the entry was edited)")
        _check_signature(entry, label, public_key, report)
        previous_hash = str(entry.get("hash"))
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
        for path, digest in _file_refs(entry, label, report):
            latest[path] = (seq if isinstance(seq, int) else 0, digest)
    _check_committed_prefix(root, book, raw, report)
    _check_files(root, latest, report)
    _check_unreferenced(root, config, latest, report)
    report.stale = stale if stale is not None else stale_certifications(root, config, vault)
    return report


def _check_committed_prefix(root: Path, book: Path, raw: bytes, report: Verification) -> None:
    """The ledger committed at HEAD must be the start of the one in the tree: entries are only
    ever appended, so a shorter or different tree ledger means lines were cut or rewritten."""
    relative = book.relative_to(root).as_posix()
    try:
        committed = subprocess.run(
            ["git", "show", f"HEAD:{relative}"],
            cwd=root,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return
    if committed.returncode == 0 and not raw.startswith(committed.stdout):
        report.errors.append(
            f"{relative}: the ledger committed at HEAD is not a prefix of this one — "
            "committed entries were removed or changed"
        )


def _check_signature(
    entry: dict[str, Any], label: str, expected: Ed25519PublicKey | None, report: Verification
) -> None:
    signature = entry.get("signature")
    embedded = entry.get("public_key")
    if signature is None and embedded is None:
        if expected is not None:
            report.errors.append(f"{label}: not signed, but a public key was given")
        return
    report.signed += 1
    public = public_key_from_b64(str(embedded)) if embedded else None
    if public is None or not isinstance(signature, str):
        report.errors.append(f"{label}: signature or public key is malformed")
        return
    if entry.get("key_id") != key_id(public):
        report.errors.append(f"{label}: key_id does not match the entry's public key")
    if not verify_signature(public, str(entry.get("hash", "")).encode("utf-8"), signature):
        report.errors.append(f"{label}: the signature does not match the entry")
    if expected is not None and key_id(expected) != key_id(public):
        report.errors.append(
            f"{label}: signed by key {key_id(public)}, not by the given key {key_id(expected)}"
        )


def _file_refs(entry: dict[str, Any], label: str, report: Verification) -> list[tuple[str, str]]:
    """The (path, sha256) pairs an entry vouches for; a malformed one is an error, not a crash."""
    refs = []
    for key in FILE_KEYS:
        described = entry.get(key)
        if described is None:
            continue
        path = described.get("path") if isinstance(described, dict) else None
        digest = described.get("sha256") if isinstance(described, dict) else None
        if not (isinstance(path, str) and isinstance(digest, str) and _inside(path)):
            report.errors.append(f"{label}: malformed {key!r} reference (the entry was edited)")
            continue
        refs.append((path, digest))
    return refs


def _inside(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def _check_files(root: Path, latest: dict[str, tuple[int, str]], report: Verification) -> None:
    """Each file the ledger names must be there with the sha256 of its latest entry."""
    for path, (seq, digest) in sorted(latest.items()):
        target = root / path
        if not target.is_file():
            report.errors.append(f"{path}: deleted (named by ledger entry {seq})")
        elif sha256_file(target) != digest:
            report.errors.append(f"{path}: edited — its sha256 differs from ledger entry {seq}")


def _check_unreferenced(
    root: Path,
    config: GatesConfig,
    latest: dict[str, tuple[int, str]],
    report: Verification,
) -> None:
    """A record the ledger does not name proves nothing (e.g. a crash before the append)."""
    vault = root / config.vault
    for path in sorted(vault.glob("*/fechamentos/*/*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and relative not in latest:
            report.warnings.append(f"{relative}: not in the ledger, so it proves nothing")


def stale_certifications(
    root: Path, config: GatesConfig, vault: Vault | None = None
) -> list[Staleness]:
    """OSes whose spec, feature files or step modules changed after their last CONCLUÍDA entry."""
    last_concluded: dict[str, dict[str, Any]] = {}
    for entry in ledger.entries(ledger.ledger_path(root, config.vault)):
        if entry.get("decision") == "CONCLUÍDA":
            last_concluded[str(entry.get("os"))] = entry
    if vault is None:
        vault = load_vault(root)
    steps_now = hash_files(root, config.steps)
    stale: list[Staleness] = []
    for os_id, entry in sorted(last_concluded.items()):
        order = vault.documents.get(os_id)
        changed: list[str] = []
        recorded_spec = entry.get("spec")
        spec: dict[str, Any] = recorded_spec if isinstance(recorded_spec, dict) else {}
        if order is None:
            changed.append(f"{spec.get('path', os_id)} (the spec is gone or no longer valid)")
        elif spec.get("sha256") != order.sha256:
            changed.append(order.path.as_posix())
        changed.extend(_changed_files(root, _digests(entry.get("features"))))
        changed.extend(_changed_files(root, _digests(entry.get("steps")), steps_now))
        if changed:
            seq = entry.get("seq")
            number = seq if isinstance(seq, int) else 0
            stale.append(Staleness(os_id, number, str(entry.get("commit")), tuple(changed)))
    return stale


def _digests(value: object) -> dict[str, str]:
    """A recorded {path: sha256} mapping; anything else (an edited entry) counts as empty."""
    if not isinstance(value, dict):
        return {}
    return {
        path: digest
        for path, digest in value.items()
        if isinstance(path, str) and isinstance(digest, str) and _inside(path)
    }


def _changed_files(
    root: Path, recorded: dict[str, str], current: dict[str, str] | None = None
) -> list[str]:
    changed = []
    for path, digest in sorted(recorded.items()):
        target = root / path
        if not target.is_file():
            changed.append(f"{path} (removed)")
        elif sha256_file(target) != digest:
            changed.append(path)
    if current is not None:
        changed.extend(f"{path} (added)" for path in sorted(set(current) - set(recorded)))
    return changed


def stale_ids(root: Path) -> dict[str, Staleness]:
    return {s.os_id: s for s in stale_certifications(root, load_config(root))}
