"""Gate results kept as evidence, by what they ran on, and reused instead of running again.

A gate that passed in a clean checkout of a commit leaves a file in the repository's git
directory (`<git-common-dir>/gates/evidence/<key>.json`, never part of a working tree or of a
clone). Its key is the sha256 of everything the result depends on: the git tree it ran on (the
commit's content, not its id: two commits with the same tree share evidence), the gate's name
and commands, the gates configuration, the versions of the tools, Python's included, and the
values of the environment variables `[tool.gates] environment` names (the databases used).
Only passing results are kept: a failure is always run again.

Evidence is as trustworthy as the machine that produced it: a record says where and when its
evidence was produced and the sha256 of its file, and `gates certify --fresh` runs every gate
again whatever is kept.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gates.certify.checks import GateResult, Status
from gates.certify.git import run_git
from gates.exceptions import GitError
from gates.files import write_atomically

SCHEMA = "aurora-gates/evidence/v1"


@dataclass(frozen=True, slots=True)
class EvidenceKey:
    """What a gate's result depends on. `environment` holds the sha256 of each named
    variable's value ("" when unset), so a database URL's password is never written down."""

    tree: str
    gate: str
    commands: tuple[tuple[str, ...], ...]
    config: str
    tools: tuple[tuple[str, str], ...]
    environment: tuple[tuple[str, str], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "tree": self.tree,
            "gate": self.gate,
            "commands": [list(command) for command in self.commands],
            "config": self.config,
            "tools": dict(self.tools),
            "environment": dict(self.environment),
        }

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def make_key(
    *,
    tree: str,
    gate: str,
    commands: tuple[tuple[str, ...], ...],
    config: str,
    tools: dict[str, str],
    environment: dict[str, str],
    names: tuple[str, ...],
) -> EvidenceKey:
    """The key of `gate` run on git tree `tree`; `names` are the variables of `environment`
    (the gates' own environment) that count."""
    values = tuple((name, value_digest(environment.get(name))) for name in sorted(names))
    return EvidenceKey(tree, gate, commands, config, tuple(sorted(tools.items())), values)


def value_digest(value: str | None) -> str:
    """The sha256 of an environment variable's value ("" when unset): what a key holds of it."""
    return "" if value is None else hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Evidence:
    """A kept result: the gate as it ran, what pytest recorded (for a pytest gate), where and
    when it was produced, and the sha256 of its file (`digest`)."""

    gate: GateResult
    results: dict[str, Any] | None
    produced_at: str
    host: str
    commit: str
    path: Path
    digest: str

    def describe(self, reused: bool) -> dict[str, Any]:
        """What a closure record says of it (pt-BR field values, English keys)."""
        return {
            "reused": reused,
            "produced_at": self.produced_at,
            "host": self.host,
            "commit": self.commit,
            "sha256": self.digest,
            "key": self.path.stem,
        }


def evidence_dir(root: Path) -> Path:
    """`<git-common-dir>/gates/evidence`: shared by the repository's worktrees, never cloned."""
    try:
        found = run_git(root, "rev-parse", "--path-format=absolute", "--git-common-dir")
        common = found.decode("utf-8", errors="replace").strip()
    except GitError:
        common = str(root / ".git")
    return Path(common) / "gates" / "evidence"


def load(root: Path, key: EvidenceKey) -> Evidence | None:
    """The passing result kept under `key`, or `None` (none kept, or a file that is not
    evidence of exactly this key: it is ignored, never trusted)."""
    path = evidence_dir(root) / f"{key.digest}.json"
    try:
        data = path.read_bytes()
        document = json.loads(data)
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        return None
    if document.get("key") != key.as_json():
        return None
    gate = document.get("gate")
    if not isinstance(gate, dict) or gate.get("status") != Status.PASS.value:
        return None
    try:
        result = GateResult(
            name=str(gate["name"]),
            status=Status.PASS,
            duration_s=float(gate["duration_s"]),
            commands=tuple(str(c) for c in gate["commands"]),
            log=str(gate["log"]),
            detail=str(gate.get("detail", "")),
        )
        results = document.get("results")
        return Evidence(
            gate=result,
            results=results if isinstance(results, dict) else None,
            produced_at=str(document["produced_at"]),
            host=str(document["host"]),
            commit=str(document["commit"]),
            path=path,
            digest=hashlib.sha256(data).hexdigest(),
        )
    except (KeyError, TypeError, ValueError):
        return None


def keep(
    root: Path,
    key: EvidenceKey,
    gate: GateResult,
    *,
    commit: str,
    results: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Evidence | None:
    """Keep a passing result under `key` (a failing one is not kept: `None`)."""
    if not gate.passed:
        return None
    document = {
        "schema": SCHEMA,
        "key": key.as_json(),
        "produced_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "commit": commit,
        "gate": {
            "name": gate.name,
            "status": gate.status.value,
            "duration_s": gate.duration_s,
            "commands": list(gate.commands),
            "detail": gate.detail,
            "log": gate.log,
        },
        "results": results,
    }
    path = evidence_dir(root) / f"{key.digest}.json"
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    try:
        write_atomically(path, text)
    except OSError:
        return None  # evidence is a saving, never a reason to fail
    return load(root, key)
