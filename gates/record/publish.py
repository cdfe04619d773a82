"""`gates certify`: run the gates an OS needs, decide it, write its closure record."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Protocol

from jinja2 import UndefinedError

from gates.certify import evidence, run
from gates.certify.acceptance import AcceptanceRun
from gates.certify.checks import GateResult, Status
from gates.certify.config import GatesConfig, load_config
from gates.certify.git import Checkout, commit_tree, exists_at_commit, read_checkout
from gates.certify.mutation import MutationRun, MutationTester, criterion_tests, mutation_key
from gates.certify.run import GateProgress, GateRunner, in_tree
from gates.certify.verdict import (
    CriterionVerdict,
    Decision,
    Evaluation,
    evaluate,
    required_gates,
    scenarios_of,
)
from gates.exceptions import SigningKeyError, UnknownWorkOrder
from gates.files import sha256_file, write_atomically
from gates.orders.features import FeatureProblem, ScenarioSpec, read_feature
from gates.orders.model import WorkOrder
from gates.orders.vault import load_vault
from gates.record import ledger, plan
from gates.record.closure import (
    SCHEMA,
    Closure,
    Deliverable,
    Inputs,
    dump_json,
    facts_of,
    hash_files,
    record_path,
    render_markdown,
    statement_of,
    to_json,
)
from gates.record.integrity import FILE_KEYS
from gates.record.records import latest_record, records_of
from gates.signing import Signer, dsse_envelope, signer_from_environment


class Progress(GateProgress, Protocol):
    """Where a certification reports what it is doing: the gates, then each OS decided."""

    def decided(self, result: CertifyResult) -> None: ...


class SilentProgress(run.SilentProgress):
    """Reports nothing."""

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
    fresh: bool = False,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
    now: datetime | None = None,
) -> list[CertifyResult]:
    """Certify the chosen OSes at the current commit; write their records unless `check`.

    Everything the verdict is computed from (the specs, the gate configuration, the feature
    files, the code the gates run) is read from a clean checkout of the commit, never from the
    working tree: a file the commit does not hold (untracked, ignored, staged, or an edit not
    committed) cannot take part. Only the records are written into the working tree's vault.

    A gate that already passed on the commit's git tree, with the same commands, configuration,
    tool versions and environment (`gates.certify.evidence`), is not run again: its kept result is
    reused, and the record says so. `fresh` runs every gate whatever is kept.
    """
    progress = progress or SilentProgress()
    checkout = read_checkout(root)
    with commit_tree(root, checkout.commit) as tree:
        config = load_config(tree)
        signer = None if check else signer_from_environment()
        if not check:
            _check_pinned_key(config, signer)  # before the gates run, not after
        vault = load_vault(tree)
        orders = select(vault.documents, wanted)
        features = _read_features(tree, orders)
        needed = {name for order in orders for name in required_gates(order)}
        if any(order.features for order in orders):  # a scenario of the OS counts either way
            needed.add("acceptance")
        runner = GateRunner(
            root,
            tree,
            config,
            in_tree(env, tree, root),
            evidence_of=checkout.commit,
            fresh=fresh,
            progress=progress,
        )
        gates = runner.run(needed)
        acceptance = gates.pop("__acceptance__", None)
        mutations = {
            order.id: _mutation(
                root, tree, config, order, features, acceptance, runner, checkout.commit
            )
            for order in orders
        }
        now = now or datetime.now(UTC)
        tools = runner.tools
        closures = [
            _closure(
                root,
                tree,
                config,
                order,
                checkout,
                features,
                gates,
                acceptance,
                tools,
                now,
                mutations[order.id],
            )
            for order in orders
        ]
    results = []
    if check:
        for closure in closures:
            results.append(_result(closure, None, "not written (check)"))
            progress.decided(results[-1])
        return results
    with ledger.locked(root, config.vault):
        for closure in closures:
            results.append(
                _result(closure, closure.record, _publish(root, config, closure, signer))
            )
            progress.decided(results[-1])
        _refresh_plan(root, vault.documents.values())
    return results


def _check_pinned_key(config: GatesConfig, signer: Signer | None) -> None:
    """With a key pinned in `[tool.gates]`, every new ledger entry must be signed by it."""
    if config.public_key is None:
        return
    if signer is None:
        raise SigningKeyError(
            "[tool.gates] pins a signing key: set GATES_SIGNING_KEY (or GATES_SIGNING_KEY_PEM) "
            "to its private key to certify, or use --check"
        )
    if signer.public_key_b64 != config.public_key:
        raise SigningKeyError(
            f"GATES_SIGNING_KEY is key {signer.key_id}, not the key [tool.gates] pins: a "
            "ledger entry signed by it would not verify"
        )


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


def _mutation(
    root: Path,
    tree: Path,
    config: GatesConfig,
    order: WorkOrder,
    features: dict[str, list[ScenarioSpec] | FeatureProblem],
    acceptance: GateResult | AcceptanceRun | None,
    runner: GateRunner,
    commit: str,
) -> MutationRun | None:
    """The OS's mutation evidence: kept for the same content (in the git directory, or in a
    record the ledger vouches for), else run now in `tree`; `None` when its scenarios did not
    run (there is nothing to measure)."""
    if not isinstance(acceptance, AcceptanceRun) or not acceptance.completed:
        return None
    scenarios, _ = scenarios_of(order, features)
    names = config.environment
    key = mutation_key(
        tree,
        order,
        hash_files(tree, config.steps),
        config.fingerprint(),
        runner.tools,
        {name: evidence.value_digest(runner.env.get(name)) for name in names},
    )
    kept = None if runner.fresh else _kept_mutation(root, order, key)
    if kept is not None:
        runner.progress.mutation_finished(kept)
        return kept
    runner.progress.gate_started(f"mutation {order.short_id}")
    tests = criterion_tests(order, scenarios, acceptance)
    run = MutationTester(
        tree, order, tests, runner.env, key=key, seed=f"{commit}:{order.id}", proof=config.steps
    ).run()
    where = evidence.evidence_dir(root) / f"mutation-{key}.json"
    document = {**run.as_json(), "produced_at": _now_iso(), "commit": commit}
    with contextlib.suppress(OSError):
        write_atomically(where, json.dumps(document, ensure_ascii=False, indent=1) + "\n")
    run = replace(run, evidence={"reused": False, "produced_at": document["produced_at"]})
    runner.progress.mutation_finished(run)
    return run


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _kept_mutation(root: Path, order: WorkOrder, key: str) -> MutationRun | None:
    """Mutation results for `key`: kept in the git directory, or in a record of the OS that the
    ledger vouches for (a fresh clone has the records, not the git directory's evidence)."""
    where = evidence.evidence_dir(root) / f"mutation-{key}.json"
    try:
        data = where.read_bytes()
        document = json.loads(data)
    except (OSError, ValueError):
        document = None
    if isinstance(document, dict) and document.get("key") == key:
        run = MutationRun.from_json(document)
        if run is not None:
            described = {
                "reused": True,
                "produced_at": str(document.get("produced_at", "")),
                "commit": str(document.get("commit", "")),
                "sha256": hashlib.sha256(data).hexdigest(),
                "from": "evidence",
            }
            return replace(run, evidence=described)
    for record in reversed(records_of(root, PurePosixPath(order.path.as_posix()), order.id)):
        kept = record.document.get("mutation")
        if isinstance(kept, dict) and kept.get("key") == key:
            run = MutationRun.from_json(kept)
            if run is not None:
                described = {
                    "reused": True,
                    "produced_at": str((kept.get("evidence") or {}).get("produced_at", "")),
                    "commit": record.commit,
                    "record": record.markdown.as_posix(),
                    "from": "record",
                }
                return replace(run, evidence=described)
    return None


def _closure(
    root: Path,
    tree: Path,
    config: GatesConfig,
    order: WorkOrder,
    checkout: Checkout,
    features: dict[str, list[ScenarioSpec] | FeatureProblem],
    shared: dict[str, GateResult | AcceptanceRun],
    acceptance: GateResult | AcceptanceRun | None,
    tools: dict[str, str],
    now: datetime,
    mutation: MutationRun | None = None,
) -> Closure:
    """Decide one OS from the shared gate results (its inputs read in `tree`, the commit's
    clean checkout; its earlier records and the working tree's state in `root`)."""
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
        mutation=mutation,
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
        inputs=_inputs(tree, config, order),
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

    Files already there for this OS and commit are kept only when certify itself wrote them:
    same facts, the record and the attestation exactly what the twin renders, and a ledger
    entry vouching for these very bytes. Anything else (a file edited by hand, a missing one)
    is written again from this run; a ledger entry is added when none holds the files."""
    twin = to_json(closure)
    paths = _paths(closure)
    book = ledger.ledger_path(root, config.vault)
    written = "unchanged"
    if not _written_by_certify(root, paths, twin, book, signer):
        statement = statement_of(twin)
        write_atomically(root / paths["record"], render_markdown(twin))
        write_atomically(root / paths["twin"], dump_json(twin))
        write_atomically(root / paths["statement"], statement.decode("utf-8"))
        envelope = root / paths["envelope"]
        if signer is not None:
            document = dsse_envelope(statement, signer)
            write_atomically(envelope, json.dumps(document, indent=2) + "\n")
        elif envelope.exists():
            envelope.unlink()  # an envelope of other bytes would vouch for nothing
        written = "written"
    files = _file_hashes(root, paths)
    if not _vouched(files, book):
        ledger.append(book, _entry_fields(closure, files), signer)
    return written


def _paths(closure: Closure) -> dict[str, PurePosixPath]:
    paths = {
        "record": closure.record,
        "twin": closure.twin,
        "statement": closure.record.with_suffix(".intoto.json"),
        "envelope": closure.record.with_suffix(".dsse.json"),
    }
    return paths


def _file_hashes(root: Path, paths: dict[str, PurePosixPath]) -> dict[str, dict[str, str]]:
    return {
        name: {"path": path.as_posix(), "sha256": sha256_file(root / path)}
        for name, path in paths.items()
        if (root / path).is_file()
    }


def _vouched(files: dict[str, dict[str, str]], book: Path) -> bool:
    """Whether a ledger entry names exactly these files, with these bytes."""
    return any(
        all(entry.get(name) == described for name, described in files.items())
        and all(entry.get(name) is None for name in FILE_KEYS if name not in files)
        for entry in ledger.entries(book)
    )


def _written_by_certify(
    root: Path,
    paths: dict[str, PurePosixPath],
    twin: dict[str, object],
    book: Path,
    signer: Signer | None,
) -> bool:
    """The files for this OS and commit are there, state the same facts as `twin`, are the
    renderings of their own twin, and a ledger entry vouches for their bytes."""
    try:
        existing = json.loads((root / paths["twin"]).read_text(encoding="utf-8"))
        record = (root / paths["record"]).read_text(encoding="utf-8")
        statement = (root / paths["statement"]).read_bytes()
    except (OSError, ValueError):
        return False
    if not isinstance(existing, dict) or existing.get("schema") != SCHEMA:
        return False
    if facts_of(existing) != facts_of(twin):
        return False
    try:
        rendered = render_markdown(existing), statement_of(existing)
    except (KeyError, TypeError, ValueError, UndefinedError):
        return False
    if rendered != (record, statement):
        return False
    if signer is not None and not (root / paths["envelope"]).is_file():
        return False
    return _vouched(_file_hashes(root, paths), book)


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
