"""`gates certify`: run the gates an OS needs, decide it, write its closure record."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Protocol

from gates import attestation, ledger, plan
from gates.acceptance import AcceptanceRun, run_acceptance
from gates.catalog import GATE_NAMES
from gates.checks import GateResult, Status, run_commands
from gates.closure import (
    Closure,
    Deliverable,
    Inputs,
    dump_json,
    facts_of,
    hash_files,
    record_path,
    render_markdown,
    sha256_file,
    to_json,
    write_atomically,
)
from gates.config import GatesConfig, load_config
from gates.exceptions import GatesConfigError, UnknownWorkOrder
from gates.features import FeatureProblem, ScenarioSpec, read_feature
from gates.git import Checkout, exists_at_commit, read_checkout
from gates.model import WorkOrder
from gates.records import latest_record, records_of
from gates.signing import Signer, dsse_envelope, signer_from_environment
from gates.vault import load_vault
from gates.verdict import (
    CriterionVerdict,
    Decision,
    Evaluation,
    evaluate,
    required_gates,
    scenarios_of,
)


class Progress(Protocol):
    """Where the runner reports what it is doing (a terminal, a CI log, a test)."""

    def gate_started(self, name: str) -> None: ...
    def gate_finished(self, result: GateResult) -> None: ...
    def decided(self, result: CertifyResult) -> None: ...


class SilentProgress:
    def gate_started(self, name: str) -> None:
        pass

    def gate_finished(self, result: GateResult) -> None:
        pass

    def decided(self, result: CertifyResult) -> None:
        pass


@dataclass(frozen=True, slots=True)
class CertifyResult:
    """The outcome for one OS: its decision, and what happened to its record."""

    order: WorkOrder
    decision: Decision
    evaluation: Evaluation
    record: PurePosixPath | None
    written: str  # "written", "unchanged" or "not written (check)"

    @property
    def concluded(self) -> bool:
        return self.decision is Decision.CONCLUDED


def select(orders: Mapping[str, WorkOrder], wanted: Sequence[str]) -> list[WorkOrder]:
    """The OSes named on the command line (full id, `OS-004`, `004` or `4`); all by default."""
    if not wanted:
        return sorted(orders.values(), key=lambda order: (order.number, order.id))
    chosen: list[WorkOrder] = []
    for name in wanted:
        match = orders.get(name) or next(
            (o for o in orders.values() if name.upper() in (o.short_id, o.short_id[3:])), None
        )
        if match is None and name.isdigit():
            match = next((o for o in orders.values() if o.number == int(name)), None)
        if match is None:
            known = ", ".join(sorted(o.short_id for o in orders.values())) or "none"
            raise UnknownWorkOrder(f"unknown OS {name!r} (the vault has: {known})")
        if match not in chosen:
            chosen.append(match)
    return chosen


def certify(
    root: Path,
    wanted: Sequence[str] = (),
    *,
    check: bool = False,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
    now: datetime | None = None,
) -> list[CertifyResult]:
    """Certify the chosen OSes at the current commit; write their records unless `check`."""
    progress = progress or SilentProgress()
    config = load_config(root)
    vault = load_vault(root)
    orders = select(vault.documents, wanted)
    checkout = read_checkout(root)
    features = _read_features(root, orders)
    gates = _run_gates(root, config, orders, progress, env)
    acceptance = gates.pop("__acceptance__", None)
    now = now or datetime.now(UTC)
    tools = _tool_versions(config.tools)
    closures = [
        _closure(root, config, order, checkout, features, gates, acceptance, tools, now)
        for order in orders
    ]
    results = []
    if check:
        for closure in closures:
            results.append(_result(closure, None, "not written (check)"))
            progress.decided(results[-1])
        return results
    signer = signer_from_environment()
    with ledger.locked(root, config.vault):
        for closure in closures:
            results.append(
                _result(closure, closure.record, _publish(root, config, closure, signer))
            )
            progress.decided(results[-1])
        _refresh_plan(root, vault.documents.values())
    return results


def _result(closure: Closure, record: PurePosixPath | None, written: str) -> CertifyResult:
    return CertifyResult(closure.order, closure.decision, closure.evaluation, record, written)


def _read_features(
    root: Path, orders: Iterable[WorkOrder]
) -> dict[str, list[ScenarioSpec] | FeatureProblem]:
    features: dict[str, list[ScenarioSpec] | FeatureProblem] = {}
    for order in orders:
        for feature in order.features:
            if feature.as_posix() not in features:
                features[feature.as_posix()] = read_feature(root, feature)
    return features


def _run_gates(
    root: Path,
    config: GatesConfig,
    orders: list[WorkOrder],
    progress: Progress,
    env: dict[str, str] | None,
) -> dict[str, GateResult | AcceptanceRun]:
    """Run each needed gate once, in the catalogue's order; every OS reuses the results."""
    needed = {name for order in orders for name in required_gates(order)}
    results: dict[str, GateResult | AcceptanceRun] = {}
    for name in GATE_NAMES:
        if name not in needed or name == "deliverables":
            continue
        progress.gate_started(name)
        if name == "acceptance":
            run = run_acceptance(root, config, env)
            results["__acceptance__"] = run
            gate = run.gate
        elif name in config.commands:
            gate = run_commands(
                name, config.commands[name], root=root, timeout_s=config.timeout_seconds, env=env
            )
        else:
            raise GatesConfigError(f"gate {name!r} has no command in [tool.gates.commands]")
        results[name] = gate
        progress.gate_finished(gate)
    return results


def _closure(
    root: Path,
    config: GatesConfig,
    order: WorkOrder,
    checkout: Checkout,
    features: dict[str, list[ScenarioSpec] | FeatureProblem],
    shared: dict[str, GateResult | AcceptanceRun],
    acceptance: GateResult | AcceptanceRun | None,
    tools: dict[str, str],
    now: datetime,
) -> Closure:
    """Decide one OS from the shared gate results."""
    gates = {name: g for name, g in shared.items() if isinstance(g, GateResult)}
    deliverables = _deliverables(root, order, checkout.commit)
    if "deliverables" in required_gates(order):
        gates["deliverables"] = _deliverables_gate(order, deliverables)
    scenarios, feature_errors = scenarios_of(order, features)
    dirty = _relevant_changes(root, config, order, checkout)
    evaluation = evaluate(
        order,
        scenarios,
        feature_errors,
        acceptance if isinstance(acceptance, AcceptanceRun) else None,
        gates,
        dirty=dirty,
    )
    decision, flipped, since = _decide(root, order, evaluation, checkout.commit)
    return Closure(
        order=order,
        decision=decision,
        evaluation=evaluation,
        commit=checkout.commit,
        branch=checkout.branch,
        dirty=dirty,
        certified_at=now,
        deliverables=deliverables,
        inputs=_inputs(root, config, order),
        tool_versions=tools,
        record=record_path(order, config.vault, checkout.commit),
        flipped=flipped,
        regressed_since=since,
    )


def _decide(
    root: Path, order: WorkOrder, evaluation: Evaluation, commit: str
) -> tuple[Decision, tuple[str, ...], str | None]:
    """CONCLUÍDA; REGREDIDA when the OS was CONCLUÍDA at an earlier commit and has not been
    REPROVADA since (the last good commit is named); otherwise REPROVADA."""
    if evaluation.concluded:
        return Decision.CONCLUDED, (), None
    earlier = [
        record
        for record in records_of(root, PurePosixPath(order.path.as_posix()), order.id)
        if record.commit != commit
    ]
    if not earlier or earlier[-1].decision not in (Decision.CONCLUDED, Decision.REGRESSED):
        return Decision.FAILED, (), None
    good = next((r for r in reversed(earlier) if r.decision == Decision.CONCLUDED.value), None)
    if good is None:
        return Decision.FAILED, (), None
    return Decision.REGRESSED, _flipped(good.document, evaluation), good.commit


def _flipped(previous: dict[str, object], evaluation: Evaluation) -> tuple[str, ...]:
    criteria = previous.get("criteria")
    passed_before = (
        {
            str(c["id"])
            for c in criteria
            if isinstance(c, dict) and c.get("verdict") == CriterionVerdict.PASS.value
        }
        if isinstance(criteria, list)
        else set()
    )
    return tuple(
        r.criterion.id
        for r in evaluation.criteria
        if r.criterion.id in passed_before and r.verdict is not CriterionVerdict.PASS
    )


def _publish(root: Path, config: GatesConfig, closure: Closure, signer: Signer | None) -> str:
    """Write the record, its twin and its attestation, then chain a ledger entry for them.

    The same facts at the same commit keep the files already there; a ledger entry is added
    only when the ledger does not yet hold these exact files (e.g. after a crash between the
    record and the ledger)."""
    twin = to_json(closure)
    paths = _paths(closure)
    written = "unchanged"
    if not _same_facts(root / paths["twin"], root / paths["record"], twin):
        write_atomically(root / paths["record"], render_markdown(closure, twin))
        write_atomically(root / paths["twin"], dump_json(twin))
        _write_attestation(root, closure, twin, paths, signer)
        written = "written"
    elif not (root / paths["statement"]).is_file():
        _write_attestation(root, closure, twin, paths, signer)
    files = {
        name: {"path": path.as_posix(), "sha256": sha256_file(root / path)}
        for name, path in paths.items()
        if (root / path).is_file()
    }
    book = ledger.ledger_path(root, config.vault)
    if not any(all(e.get(k) == v for k, v in files.items()) for e in ledger.entries(book)):
        ledger.append(book, _entry_fields(closure, files), signer)
        return written
    return written


def _paths(closure: Closure) -> dict[str, PurePosixPath]:
    paths = {
        "record": closure.record,
        "twin": closure.twin,
        "statement": closure.record.with_suffix(".intoto.json"),
        "envelope": closure.record.with_suffix(".dsse.json"),
    }
    return paths


def _same_facts(twin_path: Path, markdown_path: Path, twin: dict[str, object]) -> bool:
    if not (twin_path.is_file() and markdown_path.is_file()):
        return False
    try:
        existing = json.loads(twin_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(facts_of(existing) == facts_of(twin))


def _write_attestation(
    root: Path,
    closure: Closure,
    twin: dict[str, object],
    paths: dict[str, PurePosixPath],
    signer: Signer | None,
) -> None:
    document = attestation.statement(
        repository=closure.order.repository,
        commit=closure.commit,
        concluded=closure.decision is Decision.CONCLUDED,
        configuration={
            closure.order.path.as_posix(): closure.inputs.spec,
            "pyproject.toml#tool.gates": closure.inputs.config,
        },
        scenarios=twin["scenarios"],  # type: ignore[arg-type]
        gates=twin["gates"],  # type: ignore[arg-type]
    )
    payload = attestation.encode(document)
    write_atomically(root / paths["statement"], payload.decode("utf-8"))
    dsse = closure.record.with_suffix(".dsse.json")
    if signer is not None:
        envelope = dsse_envelope(payload, signer)
        write_atomically(root / dsse, json.dumps(envelope, indent=2) + "\n")


def _entry_fields(closure: Closure, files: dict[str, dict[str, str]]) -> dict[str, object]:
    return {
        "time": closure.certified_at.astimezone(UTC).isoformat(timespec="seconds"),
        "os": closure.order.id,
        "decision": closure.decision.value,
        "commit": closure.commit,
        **files,
        "spec": {"path": closure.order.path.as_posix(), "sha256": closure.inputs.spec},
        "features": closure.inputs.features,
        "steps": closure.inputs.steps,
        "config": closure.inputs.config,
    }


def _deliverables(root: Path, order: WorkOrder, commit: str) -> tuple[Deliverable, ...]:
    return tuple(
        Deliverable(
            path=d.path.as_posix(),
            in_commit=exists_at_commit(root, commit, d.path),
            in_tree=(root / d.path).is_file(),
        )
        for d in order.deliverables
    )


def _deliverables_gate(order: WorkOrder, deliverables: tuple[Deliverable, ...]) -> GateResult:
    missing = [d.path for d in deliverables if not d.in_commit]
    if not deliverables:
        detail = "a OS exige o gate deliverables, mas não lista nenhum entregável"
    elif missing:
        detail = f"ausentes no commit: {', '.join(missing)}"
    else:
        detail = ""
    log = "".join(f"{'ok     ' if d.in_commit else 'AUSENTE'} {d.path}\n" for d in deliverables)
    return GateResult(
        name="deliverables",
        status=Status.FAIL if detail else Status.PASS,
        duration_s=0.0,
        commands=(),
        log=log,
        detail=detail,
        facts={"listed": len(deliverables), "missing": len(missing)},
    )


def _relevant_changes(
    root: Path, config: GatesConfig, order: WorkOrder, checkout: Checkout
) -> tuple[str, ...]:
    """Uncommitted changes that could affect the verdict: anything outside the vault, and the
    OS's own spec. Other OSes' documents, the records and PLAN.md's status block don't count."""
    spec = PurePosixPath(order.path.as_posix())
    vault_top = config.vault.parts[0]
    relevant = []
    for path in checkout.changes:
        in_vault = bool(path.parts) and path.parts[0] == vault_top
        plan_block_only = path.as_posix() == plan.PLAN and plan.only_block_changed(
            root, checkout.commit
        )
        if path == spec or not (in_vault or plan_block_only):
            relevant.append(path.as_posix())
    return tuple(relevant)


def _inputs(root: Path, config: GatesConfig, order: WorkOrder) -> Inputs:
    features = {f.as_posix(): sha256_file(root / f) for f in order.features if (root / f).is_file()}
    steps = hash_files(root, config.steps)
    return Inputs(spec=order.sha256, features=features, steps=steps, config=config.fingerprint())


def _tool_versions(tools: Iterable[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for tool in tools:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "não instalado"
    return versions


def _refresh_plan(root: Path, orders: Iterable[WorkOrder]) -> None:
    rows = [
        (
            order.short_id,
            order.title,
            order.path.as_posix(),
            latest_record(root, PurePosixPath(order.path.as_posix()), order.id),
        )
        for order in sorted(orders, key=lambda o: (o.number, o.id))
    ]
    plan.update_plan(root, plan.render_block(rows))


def environment() -> dict[str, str]:
    """The environment the gates' commands run in: this one, minus colour codes in logs."""
    env = dict(os.environ)
    env.setdefault("NO_COLOR", "1")
    env.pop("FORCE_COLOR", None)
    env.pop("PY_COLORS", None)
    return env
