"""`gates certify`: run the gates an OS needs, decide it, write its closure record."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from jinja2 import UndefinedError

from gates import evidence, git, ledger, plan
from gates.acceptance import AcceptanceRun, PytestRun, acceptance_of, run_pytest
from gates.catalog import GATE_NAMES
from gates.checks import GateResult, Status, run_commands
from gates.closure import (
    SCHEMA,
    Closure,
    Deliverable,
    Inputs,
    dump_json,
    facts_of,
    hash_files,
    record_path,
    render_markdown,
    sha256_file,
    statement_of,
    to_json,
    write_atomically,
)
from gates.config import GatesConfig, load_config
from gates.evidence import Evidence, EvidenceKey, make_key
from gates.exceptions import GatesConfigError, SigningKeyError, UnknownWorkOrder
from gates.features import FeatureProblem, ScenarioSpec, read_feature
from gates.git import Checkout, commit_tree, exists_at_commit, read_checkout
from gates.integrity import FILE_KEYS
from gates.model import WorkOrder
from gates.mutation import MutationRun, MutationTester, criterion_tests, mutation_key
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
    def mutation_finished(self, run: MutationRun) -> None: ...
    def decided(self, result: CertifyResult) -> None: ...


class SilentProgress:
    def gate_started(self, name: str) -> None:
        pass

    def gate_finished(self, result: GateResult) -> None:
        pass

    def mutation_finished(self, run: MutationRun) -> None:
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
    tool versions and environment (`gates.evidence`), is not run again: its kept result is
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


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What `gates run` did: each gate's result, and whether they ran on the commit alone
    (`commit`, its results kept as evidence) or on a working tree that differs from it."""

    gates: tuple[GateResult, ...]
    commit: str | None

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)


def run_gates(
    root: Path,
    names: Sequence[str] = (),
    *,
    fresh: bool = False,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """Run gates outside a certification (the README's test command does): each named gate
    (default: every gate the vault's OSes require) with the commands `gates certify` uses,
    their output shown as they run.

    When the working tree is the commit (no uncommitted change, no untracked file), they run in
    a clean checkout of it and what passes is kept as evidence for `gates certify` to reuse.
    Otherwise they run in the working tree, on what is there, and nothing is kept: such results
    prove nothing of any commit."""
    checkout = read_checkout(root)
    clean = not checkout.changes
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(commit_tree(root, checkout.commit)) if clean else root
        config = load_config(tree)
        chosen = list(names) or _gates_of_the_vault(tree, config)
        runner = GateRunner(
            root,
            tree,
            config,
            in_tree(env, tree, root) if clean else dict(os.environ if env is None else env),
            evidence_of=checkout.commit if clean else None,
            fresh=fresh,
            echo=True,
            progress=progress,
        )
        results = runner.run(chosen)
    gates = tuple(g for n, g in results.items() if isinstance(g, GateResult) and n in chosen)
    return RunOutcome(gates=gates, commit=checkout.commit if clean else None)


def _gates_of_the_vault(tree: Path, config: GatesConfig) -> list[str]:
    """The gates the vault's OSes require (the acceptance gate when one has feature files);
    with no OS, every gate that has a command."""
    orders = load_vault(tree).documents.values()
    needed = {name for order in orders for name in required_gates(order)}
    if any(order.features for order in orders):
        needed.add("acceptance")
    if not orders:
        needed = set(config.commands) | set(config.from_tests)
    return [name for name in GATE_NAMES if name in needed and name != "deliverables"]


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


class GateRunner:
    """Runs the gates in `tree` and keeps what passed as evidence of the commit's git tree.

    `evidence_of`: the commit whose clean checkout `tree` is (results are kept and reused under
    its git tree), or `None` for a working tree that differs from every commit (nothing is kept
    or reused). `fresh`: run every gate even when evidence is kept. `echo`: copy the commands'
    output to standard output as they run."""

    def __init__(
        self,
        root: Path,
        tree: Path,
        config: GatesConfig,
        env: dict[str, str],
        *,
        evidence_of: str | None,
        fresh: bool = False,
        echo: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.root, self.tree, self.config, self.env = root, tree, config, env
        self.commit = evidence_of
        self.tree_id = git.tree_of(root, evidence_of) if evidence_of else None
        self.fresh, self.echo = fresh, echo
        self.progress = progress or SilentProgress()
        self.tools = _tool_versions(config.tools)

    def run(self, needed: Iterable[str]) -> dict[str, GateResult | AcceptanceRun]:
        """Run each needed gate once, in the catalogue's order (`deliverables` is decided per
        OS, not here); a gate read from the tests gate's run brings that run in."""
        wanted = set(needed)
        if wanted & set(self.config.from_tests):
            wanted.add("tests")
        results: dict[str, GateResult | AcceptanceRun] = {}
        suite: PytestRun | None = None
        for name in GATE_NAMES:
            if name not in wanted or name == "deliverables":
                continue
            self.progress.gate_started(name)
            if name in self.config.from_tests:
                assert suite is not None  # the tests gate runs before, in the catalogue's order
                gate = _from_suite(name, self.config.from_tests[name], suite)
                if name == "acceptance":
                    results["__acceptance__"] = acceptance_of(
                        gate, _under(suite.scenarios, self.config.from_tests[name]), self.config
                    )
            elif name == "acceptance":
                command = _acceptance_command(self.config)
                run = self._pytest(name, (command,), command)
                results["__acceptance__"] = acceptance_of(run.gate, run.scenarios, self.config)
                gate = run.gate
            elif name == "tests" and self.config.from_tests:
                command = self.config.commands["tests"][0]
                suite = self._pytest(name, self.config.commands["tests"], command)
                gate = suite.gate
            elif name in self.config.commands:
                gate = self._commands(name, self.config.commands[name])
            else:
                raise GatesConfigError(f"gate {name!r} has no command in [tool.gates.commands]")
            results[name] = gate
            self.progress.gate_finished(gate)
        return results

    def _key(self, name: str, commands: tuple[tuple[str, ...], ...]) -> EvidenceKey | None:
        if self.tree_id is None:
            return None
        return make_key(
            tree=self.tree_id,
            gate=name,
            commands=commands,
            config=self.config.fingerprint(),
            tools=self.tools,
            environment=self.env,
            names=self.config.environment,
        )

    def _kept(self, key: EvidenceKey | None) -> Evidence | None:
        return None if key is None or self.fresh else evidence.load(self.root, key)

    def _commands(self, name: str, commands: tuple[tuple[str, ...], ...]) -> GateResult:
        key = self._key(name, commands)
        kept = self._kept(key)
        if kept is not None:
            return replace(kept.gate, evidence=kept.describe(reused=True))
        gate = run_commands(
            name,
            commands,
            root=self.tree,
            timeout_s=self.config.timeout_seconds,
            env=self.env,
            echo=self.echo,
        )
        return self._keep(key, gate, None)

    def _pytest(
        self, name: str, keyed: tuple[tuple[str, ...], ...], command: tuple[str, ...]
    ) -> PytestRun:
        key = self._key(name, keyed)
        kept = self._kept(key)
        if kept is not None and kept.results is not None:
            return PytestRun(
                gate=replace(kept.gate, evidence=kept.describe(reused=True)),
                scenarios=kept.results.get("scenarios"),
                tests=kept.results.get("tests"),
            )
        run = run_pytest(
            name, command, root=self.tree, config=self.config, env=self.env, echo=self.echo
        )
        if not run.completed:
            return run
        results = {"scenarios": run.scenarios, "tests": run.tests}
        return replace(run, gate=self._keep(key, run.gate, results))

    def _keep(
        self, key: EvidenceKey | None, gate: GateResult, results: dict[str, Any] | None
    ) -> GateResult:
        if key is None or self.commit is None:
            return gate
        kept = evidence.keep(self.root, key, gate, commit=self.commit, results=results)
        return gate if kept is None else replace(gate, evidence=kept.describe(reused=False))


def _acceptance_command(config: GatesConfig) -> tuple[str, ...]:
    paths = (path.as_posix() for path in config.acceptance_paths)
    return ("python", "-m", "pytest", *paths, "-p", "no:cacheprovider", "-q")


def _in_paths(nodeid: str, paths: tuple[PurePosixPath, ...]) -> bool:
    file = PurePosixPath(nodeid.split("::", 1)[0])
    return any(file == path or path in file.parents for path in paths)


def _under(
    entries: list[dict[str, object]] | None, paths: tuple[PurePosixPath, ...]
) -> list[dict[str, object]] | None:
    if entries is None:
        return None
    return [e for e in entries if _in_paths(str(e.get("nodeid", "")), paths)]


def _from_suite(name: str, paths: tuple[PurePosixPath, ...], suite: PytestRun) -> GateResult:
    """A gate decided by the tests gate's own run: every test under `paths` that ran must have
    passed (skips are pytest's own verdict), and at least one must have passed."""
    shown = tuple(f"{path.as_posix()} (na execução do gate tests)" for path in paths)
    selected = _under(suite.tests, paths)
    if selected is None:
        detail = f"a execução da suíte (gate tests) não terminou: {suite.gate.detail}"
        return GateResult(name, Status.FAIL, 0.0, shown, "", detail, evidence=suite.gate.evidence)
    failed = [t for t in selected if t.get("outcome") == "failed"]
    passed = [t for t in selected if t.get("outcome") == "passed"]
    log = "".join(f"{t.get('outcome')}  {t.get('nodeid')}\n" for t in selected)
    if failed:
        names = ", ".join(str(t.get("nodeid")) for t in failed[:5])
        detail = f"{len(failed)} de {len(selected)} testes falharam: {names}"
    elif not passed:
        detail = f"nenhum teste de {', '.join(p.as_posix() for p in paths)} passou"
    else:
        detail = ""
    duration = sum(float(str(t.get("duration_s", 0.0))) for t in selected)
    return GateResult(
        name=name,
        status=Status.FAIL if detail else Status.PASS,
        duration_s=round(duration, 3),
        commands=shown,
        log=log,
        detail=detail,
        facts={"tests": len(selected), "failed": len(failed)},
        evidence=suite.gate.evidence,
    )


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


def in_tree(env: dict[str, str] | None, tree: Path, root: Path) -> dict[str, str]:
    """The environment of the gates' commands in the commit's checkout: Python imports the
    checkout's packages first (an editable install would otherwise import the working tree's),
    and mypy keeps its cache in the working tree, where it outlives the checkout."""
    result = dict(os.environ if env is None else env)
    inherited = result.get("PYTHONPATH")
    result["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), inherited]))
    result.setdefault("MYPY_CACHE_DIR", str(root / ".mypy_cache"))
    return result


def environment() -> dict[str, str]:
    """The environment the gates' commands run in: this one, minus colour codes in logs."""
    env = dict(os.environ)
    env.setdefault("NO_COLOR", "1")
    env.pop("FORCE_COLOR", None)
    env.pop("PY_COLORS", None)
    return env
