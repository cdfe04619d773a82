"""`gates verify`: recompute the ledger and the files it vouches for; find stale certifications.

An auditor runs this instead of trusting whoever last pushed: every entry's canonical form,
hash, place in the chain and (with a public key) signature; every record, twin and attestation
the ledger names; and, for each OS, whether the text it was certified on is still the text in
the tree (DESATUALIZADA when it is not).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jinja2 import UndefinedError

from gates.certify.config import GatesConfig, load_config
from gates.certify.git import run_git
from gates.exceptions import GitError
from gates.files import sha256_file
from gates.orders.vault import Vault, load_vault
from gates.record import ledger
from gates.record.closure import SCHEMA, hash_files, render_markdown, statement_of
from gates.signing import key_id, public_key_from_b64, verify_signature

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
    pinned = public_key_from_b64(config.public_key) if config.public_key else None
    latest: dict[str, tuple[int, str]] = {}
    groups: dict[str, dict[str, str]] = {}  # twin path -> the files of its latest entry
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
        keys = [(public_key, "a public key was given")] if public_key is not None else []
        if pinned is not None and isinstance(seq, int) and seq >= config.signed_from:
            keys.append(
                (pinned, f"[tool.gates] pins key {key_id(pinned)} from entry {config.signed_from}")
            )
        _check_signature(entry, label, keys, report)
        previous_hash = str(entry.get("hash"))
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
        refs = _file_refs(entry, label, report)
        for _, path, digest in refs:
            latest[path] = (seq if isinstance(seq, int) else 0, digest)
        named = {key: path for key, path, _ in refs}
        if "twin" in named:
            groups[named["twin"]] = named
    _check_committed_prefix(root, book, raw, report)
    _check_history(root, book, report)
    _check_files(root, latest, report)
    _check_renderings(root, groups, report)
    _check_unreferenced(root, config, latest, report)
    report.stale = stale if stale is not None else stale_certifications(root, config, vault)
    return report


def _check_committed_prefix(root: Path, book: Path, raw: bytes, report: Verification) -> None:
    """The ledger committed at HEAD must be the start of the one in the tree: entries are only
    ever appended, so a shorter or different tree ledger means lines were cut or rewritten."""
    relative = book.relative_to(root).as_posix()
    committed = _git(root, "show", f"HEAD:{relative}")
    if committed is not None and not raw.startswith(committed):
        report.errors.append(
            f"{relative}: the ledger committed at HEAD is not a prefix of this one — "
            "committed entries were removed or changed"
        )


def _check_signature(
    entry: dict[str, Any],
    label: str,
    expected: list[tuple[Ed25519PublicKey, str]],
    report: Verification,
) -> None:
    """The entry's signature against the key it carries, and against each expected key (the
    one given to `gates verify`, the one `[tool.gates]` pins), saying why each is expected."""
    signature = entry.get("signature")
    embedded = entry.get("public_key")
    if signature is None and embedded is None:
        for _, why in expected:
            report.errors.append(f"{label}: not signed, but {why}")
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
    for key, why in expected:
        if key_id(key) != key_id(public):
            report.errors.append(
                f"{label}: signed by key {key_id(public)}, not by the expected key "
                f"{key_id(key)} ({why})"
            )


def _file_refs(
    entry: dict[str, Any], label: str, report: Verification
) -> list[tuple[str, str, str]]:
    """The (key, path, sha256) an entry vouches for; a malformed one is an error, not a crash."""
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
        refs.append((key, path, digest))
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


def _check_renderings(root: Path, groups: dict[str, dict[str, str]], report: Verification) -> None:
    """Each record, attestation and envelope the ledger names must be what its twin renders
    (schema v2): a twin is the facts, the other files are derived from it, never trusted."""
    for twin_path, files in sorted(groups.items()):
        try:
            twin = json.loads((root / twin_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a missing or broken twin is already reported by its hash
        if not isinstance(twin, dict) or twin.get("schema") != SCHEMA:
            continue  # v1 twins do not hold every fact their record shows: hashes only
        try:
            record, statement = render_markdown(twin), statement_of(twin)
        except (KeyError, TypeError, ValueError, UndefinedError):
            report.errors.append(f"{twin_path}: the twin cannot be rendered (it was edited)")
            continue
        expected = {"record": record.encode("utf-8"), "statement": statement}
        for key, wanted in expected.items():
            path = files.get(key)
            if path is not None and _read_bytes(root / path) not in (None, wanted):
                report.errors.append(
                    f"{path}: differs from what its twin {twin_path} renders (edited by hand)"
                )
        envelope = files.get("envelope")
        if envelope is not None:
            payload = _envelope_payload(root / envelope)
            if payload is not None and payload != statement:
                report.errors.append(
                    f"{envelope}: its payload is not the attestation its twin {twin_path} renders"
                )


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _envelope_payload(path: Path) -> bytes | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return base64.b64decode(str(document["payload"]), validate=True)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return None


def _check_unreferenced(
    root: Path,
    config: GatesConfig,
    latest: dict[str, tuple[int, str]],
    report: Verification,
) -> None:
    """A record the ledger does not name proves nothing: a warning when it is not committed (a
    run killed before its ledger entry: the next certify adds it), an error when it is (a
    record that reached the history without the ledger vouching for it)."""
    vault = root / config.vault
    committed = _tracked(root, config.vault)
    for path in sorted(vault.glob("*/fechamentos/*/*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or relative in latest:
            continue
        if relative in committed:
            report.errors.append(
                f"{relative}: committed, but no ledger entry names it: it is no verdict"
            )
        else:
            report.warnings.append(f"{relative}: not in the ledger, so it proves nothing")


def _tracked(root: Path, folder: PurePosixPath) -> set[str]:
    """The files under `folder` that the HEAD commit holds."""
    listed = _git(root, "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", folder.as_posix())
    return set(listed.decode("utf-8", errors="replace").split("\0")) - {""} if listed else set()


def _git(root: Path, *args: str) -> bytes | None:
    """git's output, or None when git is missing, fails or takes too long."""
    try:
        return run_git(root, *args)
    except GitError:
        return None


def _check_history(root: Path, book: Path, report: Verification) -> None:
    """Each version of the ledger in the git history must be the start of the next one: the
    ledger is only ever appended to, so a commit whose ledger does not begin with the one
    before it cut or rewrote committed entries (and a chain rebuilt from scratch is caught
    here even when it is consistent in itself)."""
    relative = book.relative_to(root).as_posix()
    listed = _git(root, "log", "--format=%H", "--reverse", "--topo-order", "--", relative)
    if not listed:
        return
    previous: tuple[str, bytes] | None = None
    for commit in listed.decode().split():
        content = _git(root, "show", f"{commit}:{relative}")
        if content is None:
            content = b""  # deleted in this commit
        if previous is not None and not content.startswith(previous[1]):
            report.errors.append(
                f"{relative}: in the git history, commit {commit[:12]} rewrote the ledger "
                f"(it does not begin with the ledger of commit {previous[0][:12]}): committed "
                "entries were removed or changed"
            )
        previous = (commit, content)


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
