"""Running the gates: each one once, in a clean checkout of the commit (or, for `gates run` on
a working tree that differs from it, there), their passing results kept as evidence of the
commit's git tree and reused."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from gates.catalog import GATE_NAMES
from gates.certify import evidence, git
from gates.certify.acceptance import AcceptanceRun, PytestRun, acceptance_of, run_pytest
from gates.certify.checks import GateResult, Status, run_commands
from gates.certify.config import GatesConfig, load_config
from gates.certify.evidence import Evidence, EvidenceKey, make_key
from gates.certify.git import commit_tree, read_checkout
from gates.certify.mutation import MutationRun
from gates.certify.verdict import required_gates
from gates.exceptions import GatesConfigError
from gates.orders.vault import load_vault


class GateProgress(Protocol):
    """Where the gates report what they are doing (a terminal, a CI log, a test)."""

    def gate_started(self, name: str) -> None: ...
    def gate_finished(self, result: GateResult) -> None: ...
    def mutation_finished(self, run: MutationRun) -> None: ...


class SilentProgress:
    """Reports nothing."""

    def gate_started(self, name: str) -> None:
        pass

    def gate_finished(self, result: GateResult) -> None:
        pass

    def mutation_finished(self, run: MutationRun) -> None:
        pass


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
    progress: GateProgress | None = None,
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
        progress: GateProgress | None = None,
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


def _tool_versions(tools: Iterable[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for tool in tools:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "não instalado"
    return versions


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
