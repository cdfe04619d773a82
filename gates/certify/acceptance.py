"""The acceptance gate: run the scenarios once and read each one's true outcome.

Outcomes come from a pytest hook (`gates.pytest_plugin`), never from terminal text: pytest's
own verdict per test, tied by pytest-bdd to the scenario's feature file and line.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from gates.certify.checks import GateResult, run_commands
from gates.certify.config import GatesConfig
from gates.orders.features import ScenarioSpec

# pytest's exit codes 0 (all passed) and 1 (some failed) mean the run itself worked.
RUN_COMPLETED = ("[exit 0]", "[exit 1]")


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    FLAKY = "flaky"  # passed only when run again after failing
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    NOT_RUN = "not run"


_SEVERITY = [
    Outcome.FAILED,
    Outcome.FLAKY,
    Outcome.NOT_RUN,
    Outcome.XFAILED,
    Outcome.SKIPPED,
    Outcome.PASSED,
]


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What happened to one written scenario (every example of an outline included)."""

    spec: ScenarioSpec
    outcome: Outcome
    runs: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class AcceptanceRun:
    """One pytest run over the step modules, shared by every OS certified in the same run.

    `flaky_proves`: whether a scenario that passed only when run again after failing counts
    as passed (`[tool.gates] flaky_proves`, false by default: it is recorded as flaky).
    """

    gate: GateResult
    completed: bool
    runs: dict[tuple[str, int], list[dict[str, Any]]]
    flaky_proves: bool = False

    def result_of(self, spec: ScenarioSpec) -> ScenarioResult:
        """The scenario's outcome over all its runs: the worst of them; every example of an
        outline counted once (a run of the same example twice, by two step modules binding
        the same feature, is not a second example)."""
        runs = self.runs.get((spec.feature.as_posix(), spec.line), [])
        if not runs:
            return ScenarioResult(spec, Outcome.NOT_RUN, 0, "o cenário não foi executado")
        outcomes = [self._outcome(run) for run in runs]
        worst = min(outcomes, key=_SEVERITY.index)
        if worst is not Outcome.PASSED:
            first = next(run for run, o in zip(runs, outcomes, strict=True) if o is worst)
            message = str(first.get("message", ""))
            if worst is Outcome.FLAKY:
                message = f"passou só ao repetir ({first.get('reruns')} repetição): {message}"
            return ScenarioResult(spec, worst, len(runs), message)
        expected = max(spec.examples, 1)
        examples = len({run.get("example") for run in runs})
        if examples < expected:
            message = f"só {examples} de {expected} exemplos foram executados"
            return ScenarioResult(spec, Outcome.NOT_RUN, len(runs), message)
        return ScenarioResult(spec, Outcome.PASSED, len(runs))

    def _outcome(self, run: dict[str, Any]) -> Outcome:
        outcome = _outcome(run)
        reruns = run.get("reruns")
        if outcome is Outcome.PASSED and isinstance(reruns, int) and reruns > 0:
            return Outcome.PASSED if self.flaky_proves else Outcome.FLAKY
        return outcome


@dataclass(frozen=True, slots=True)
class PytestRun:
    """One pytest run with the gates plugin: the gate it was, and what the plugin recorded
    (`None` when the run did not complete). Scenario feature paths are relative to the tree."""

    gate: GateResult
    scenarios: list[dict[str, Any]] | None
    tests: list[dict[str, Any]] | None

    @property
    def completed(self) -> bool:
        return self.scenarios is not None and self.tests is not None


def run_pytest(
    name: str,
    command: tuple[str, ...],
    *,
    root: Path,
    config: GatesConfig,
    env: dict[str, str] | None,
    echo: bool = False,
) -> PytestRun:
    """Run one pytest `command` in `root` with the gates plugin, and read what it recorded."""
    with tempfile.TemporaryDirectory(prefix="gates-pytest-") as scratch:
        report = Path(scratch) / "results.json"
        full = (*command, "-p", "gates.pytest_plugin", f"--gates-results={report}")
        gate = run_commands(
            name, (full,), root=root, timeout_s=config.timeout_seconds, env=env, echo=echo
        )

        def hide(text: str) -> str:
            return text.replace(str(report), "<results.json>")

        gate = GateResult(
            gate.name,
            gate.status,
            gate.duration_s,
            tuple(hide(c) for c in gate.commands),
            hide(gate.log),
            hide(gate.detail),
        )
        completed = any(marker in gate.log for marker in RUN_COMPLETED)
        read = read_results(report, root) if completed else None
    scenarios, tests = read if read is not None else (None, None)
    return PytestRun(gate=gate, scenarios=scenarios, tests=tests)


def acceptance_of(
    gate: GateResult, scenarios: list[dict[str, Any]] | None, config: GatesConfig
) -> AcceptanceRun:
    """The acceptance run from the scenarios a pytest run recorded (`None`: it did not
    complete, so no scenario has an outcome)."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for entry in scenarios or ():
        runs.setdefault((str(entry["feature"]), int(entry.get("line", 0))), []).append(entry)
    return AcceptanceRun(
        gate=gate,
        completed=scenarios is not None,
        runs=runs,
        flaky_proves=config.flaky_proves,
    )


def read_results(
    report: Path, root: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The plugin's file: (scenarios, tests), each scenario's feature made relative to `root`
    (a feature outside the repository proves nothing here and is dropped); `None` when the file
    is missing or not what the plugin writes."""
    try:
        document = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(document, list):  # the plugin of an older commit: scenarios only
        document = {"scenarios": document, "tests": []}
    if not isinstance(document, dict):
        return None
    entries, tests = document.get("scenarios"), document.get("tests")
    if not isinstance(entries, list) or not isinstance(tests, list):
        return None
    if not all(isinstance(item, dict) for item in [*entries, *tests]):
        return None
    scenarios = []
    resolved_root = root.resolve()
    for entry in entries:
        feature = Path(str(entry.get("feature", "")))
        try:
            relative = PurePosixPath(feature.relative_to(resolved_root).as_posix())
        except ValueError:
            continue
        scenarios.append({**entry, "feature": relative.as_posix()})
    return scenarios, tests


def _outcome(run: dict[str, Any]) -> Outcome:
    try:
        return Outcome(str(run.get("outcome")))
    except ValueError:
        return Outcome.NOT_RUN
