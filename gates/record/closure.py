"""The closure record: the verdict of one OS at one commit, as markdown (the seed's canonical
shape, pt-BR) and as a JSON twin with the same facts for machines. Written atomically."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from gates.certify.checks import GateResult
from gates.certify.mutation import MutationRun
from gates.certify.verdict import Decision, Evaluation
from gates.files import sha256_file
from gates.orders.model import WorkOrder
from gates.record import attestation

SCHEMA = "aurora-gates/closure/v2"
"""v2 holds every fact its record shows (the spec's context and scope notes included), so the
record, and its attestation, are renderings of the twin alone (`render_markdown`,
`statement_of`): `gates verify` renders them again and compares."""
SCHEMAS = ("aurora-gates/closure/v1", SCHEMA)
"""Twins that are read: v1 ones (older records) are checked by their hashes only."""
RECORDS_DIR = "fechamentos"

# Facts that change from one run to the next without changing the verdict: a re-run at the
# same commit with the same facts keeps the record it already has.
_VOLATILE = {"certified_at", "duration_s", "log", "record", "evidence", "elapsed_s"}

_environment = Environment(
    loader=PackageLoader("gates", "templates"),
    undefined=StrictUndefined,
    autoescape=False,  # markdown, not HTML: the report escapes when it renders to HTML
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True, slots=True)
class Deliverable:
    path: str
    in_commit: bool
    in_tree: bool


@dataclass(frozen=True, slots=True)
class Inputs:
    """The sha256 of everything the verdict was computed from."""

    spec: str
    features: dict[str, str]
    steps: dict[str, str]
    config: str


@dataclass(frozen=True, slots=True)
class Closure:
    """Everything a closure record states."""

    order: WorkOrder
    decision: Decision
    evaluation: Evaluation
    commit: str
    branch: str
    dirty: tuple[str, ...]
    certified_at: datetime
    deliverables: tuple[Deliverable, ...]
    inputs: Inputs
    tool_versions: dict[str, str]
    record: PurePosixPath
    flipped: tuple[str, ...] = ()
    regressed_since: str | None = None

    @property
    def twin(self) -> PurePosixPath:
        return self.record.with_suffix(".json")


def record_path(order: WorkOrder, vault: PurePosixPath, commit: str) -> PurePosixPath:
    """`vault/<project>/fechamentos/<OS id>/<commit12>.md` (one record per OS and commit)."""
    spec = PurePosixPath(order.path.as_posix())
    project = spec.parent.parent if spec.parent.name == "os" else vault
    return project / RECORDS_DIR / order.id / f"{commit[:12]}.md"


def hash_files(root: Path, folders: Iterable[PurePosixPath]) -> dict[str, str]:
    """The sha256 of every Python module under `folders` (the step modules), by path."""
    digests: dict[str, str] = {}
    for folder in folders:
        for module in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in module.parts:
                digests[module.relative_to(root).as_posix()] = sha256_file(module)
    return digests


def to_json(closure: Closure) -> dict[str, Any]:
    order = closure.order
    zone = ZoneInfo(order.timezone)
    return {
        "schema": SCHEMA,
        "os": {
            "id": order.id,
            "number": order.number,
            "tag": order.short_id,
            "title": order.title,
            "context": order.body.context,
            "scope_notes": order.body.scope_notes,
            "project": order.project,
            "spec": order.path.as_posix(),
            "executor": order.executor,
            "repository": order.repository,
            "branch": order.branch,
            "scope": order.scope,
            "date": order.date.isoformat(),
            "timezone": order.timezone,
            "endpoint": order.endpoint,
            "declared_status": order.status.value,
        },
        "decision": closure.decision.value,
        "concluded": closure.decision is Decision.CONCLUDED,
        "commit": closure.commit,
        "branch": closure.branch,
        "worktree": {"clean": not closure.dirty, "changes": list(closure.dirty)},
        "certified_at": closure.certified_at.astimezone(zone).isoformat(timespec="seconds"),
        "record": {"markdown": closure.record.as_posix(), "json": closure.twin.as_posix()},
        "reasons": list(closure.evaluation.reasons),
        "errors": list(closure.evaluation.errors),
        "warnings": list(closure.evaluation.warnings),
        "regression": {"flipped": list(closure.flipped), "since": closure.regressed_since}
        if closure.decision is Decision.REGRESSED
        else None,
        "criteria": [
            {
                "id": result.criterion.id,
                "text": result.criterion.text,
                "claimed": result.criterion.claimed,
                "verdict": result.verdict.value,
                "claim_contradicted": result.claim_contradicted,
                "proofs": [
                    {
                        "kind": p.kind,
                        "ref": p.ref,
                        "name": p.name,
                        "status": p.status,
                        "message": p.message,
                    }
                    for p in result.proofs
                ],
                "mutation": result.mutation.as_json() if result.mutation else None,
                "note": result.note,
            }
            for result in closure.evaluation.criteria
        ],
        "mutation": _mutation_json(closure.evaluation.mutation),
        "gates": [_gate_json(gate) for gate in closure.evaluation.gates],
        "scenarios": [
            {
                "feature": r.spec.feature.as_posix(),
                "line": r.spec.line,
                "name": r.spec.name,
                "tags": sorted(r.spec.tags),
                "outcome": r.outcome.value,
                "runs": r.runs,
                "message": r.message,
            }
            for r in closure.evaluation.scenarios
        ],
        "deliverables": [
            {"path": d.path, "in_commit": d.in_commit, "in_tree": d.in_tree}
            for d in closure.deliverables
        ],
        "inputs": {
            "spec": {order.path.as_posix(): closure.inputs.spec},
            "features": closure.inputs.features,
            "steps": closure.inputs.steps,
            "config": closure.inputs.config,
        },
        "tool_versions": closure.tool_versions,
    }


def _mutation_json(run: MutationRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    document = run.as_json()
    if run.evidence is not None:
        document["evidence"] = dict(run.evidence)
    return document


def _gate_json(gate: GateResult) -> dict[str, Any]:
    document = {
        "name": gate.name,
        "status": gate.status.value,
        "duration_s": gate.duration_s,
        "commands": list(gate.commands),
        "detail": gate.detail,
        "facts": dict(gate.facts),
        "log": gate.log,
    }
    if gate.evidence is not None:
        document["evidence"] = dict(gate.evidence)
    return document


def facts_of(document: dict[str, Any]) -> Any:
    """The record without what varies between identical runs (times, durations, logs)."""
    if isinstance(document, dict):
        return {k: facts_of(v) for k, v in document.items() if k not in _VOLATILE}
    if isinstance(document, list):
        return [facts_of(item) for item in document]
    return document


def render_markdown(twin: dict[str, Any]) -> str:
    """The closure record (markdown, pt-BR): a rendering of its JSON twin (schema v2) alone."""
    template = _environment.get_template("closure.md.j2")
    moment = datetime.fromisoformat(twin["certified_at"])  # in the OS's time zone
    return template.render(j=twin, certified_at=moment.strftime("%Y-%m-%d %H:%M:%S"))


def statement_of(twin: dict[str, Any]) -> bytes:
    """The in-toto statement of a closure (its bytes as written): a rendering of its twin."""
    inputs = twin["inputs"]
    configuration = {**inputs["spec"], "pyproject.toml#tool.gates": inputs["config"]}
    document = attestation.statement(
        repository=twin["os"]["repository"],
        commit=twin["commit"],
        concluded=bool(twin["concluded"]),
        configuration=configuration,
        scenarios=twin["scenarios"],
        gates=twin["gates"],
    )
    return attestation.encode(document)


def dump_json(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
