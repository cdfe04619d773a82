"""A pytest plugin for the acceptance gate: the true outcome of every scenario it ran.

Loaded with `-p gates.pytest_plugin --gates-results=FILE`. pytest-bdd's cucumber JSON marks a
step "passed" when the test was skipped or xfailed inside it; this records pytest's own
outcome per test instead, tied to its scenario (feature file and line) by pytest-bdd's hook,
with the example of an outline it ran (so examples are counted, not runs) and how many times a
rerun plugin (pytest-rerunfailures) ran it again after a failure. Every other test's outcome is
recorded too, by node id, so that gates read from one run of the suite (`[tool.gates.from_tests]`)
need no run of their own.

The file written is `{"scenarios": [...], "tests": [...]}`: each scenario as above, each test as
`{"nodeid", "outcome", "message", "reruns", "duration_s"}`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gates-results",
        metavar="FILE",
        default=None,
        help="write each scenario's outcome as JSON to FILE (used by `gates certify`)",
    )

    parser.addoption(
        "--gates-contexts",
        action="store_true",
        default=False,
        help="under coverage.py, measure each test in a context named by its node id",
    )


def pytest_configure(config: pytest.Config) -> None:
    target = config.getoption("--gates-results")
    if target:
        config.pluginmanager.register(ScenarioRecorder(Path(target)), "gates-scenario-recorder")
    if config.getoption("--gates-contexts"):
        config.pluginmanager.register(CoverageContexts(), "gates-coverage-contexts")


class CoverageContexts:
    """Switches coverage.py's context to each test's node id while its body runs (coverage's
    own `test_function` context cannot see pytest-bdd's scenarios, whose functions it
    generates). Fixtures, set up and torn down outside that context, are the scenario's
    surroundings, not what it checks."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        self._switch(item.nodeid)
        try:
            yield
        finally:
            self._switch("")

    @staticmethod
    def _switch(context: str) -> None:
        try:
            from coverage import Coverage
        except ImportError:
            return
        current = Coverage.current()
        if current is not None:
            current.switch_context(context)


class ScenarioRecorder:
    """Ties each test to its scenario, folds its phases into one outcome, writes them all."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.tests: dict[str, dict[str, Any]] = {}
        self.reports: list[pytest.TestReport] = []

    def pytest_bdd_before_scenario(
        self, request: pytest.FixtureRequest, feature: Any, scenario: Any
    ) -> None:
        callspec = getattr(request.node, "callspec", None)
        example = callspec.params.get("_pytest_bdd_example") if callspec is not None else None
        self.scenarios.setdefault(
            request.node.nodeid,
            {
                "nodeid": request.node.nodeid,
                "feature": str(Path(feature.filename).resolve()),
                "line": int(scenario.line_number),
                "name": str(scenario.name),
                "example": json.dumps(example, sort_keys=True) if example else None,
                "outcome": "not run",
                "message": "",
                "reruns": 0,
            },
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.append(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for report in self.reports:
            test = self.tests.setdefault(
                report.nodeid,
                {"nodeid": report.nodeid, "outcome": "not run", "message": "", "reruns": 0},
            )
            test["duration_s"] = round(test.get("duration_s", 0.0) + report.duration, 6)
            _apply(test, report)
            entry = self.scenarios.get(report.nodeid)
            if entry is not None:
                _apply(entry, report)
        document = {"scenarios": list(self.scenarios.values()), "tests": list(self.tests.values())}
        self.target.write_text(json.dumps(document, indent=1), "utf-8")


def _apply(entry: dict[str, Any], report: pytest.TestReport) -> None:
    """Fold one phase's report into the scenario's outcome; a failure is never overwritten."""
    if str(report.outcome) == "rerun":  # failed, then run again by a rerun plugin
        entry["reruns"] += 1
        entry["message"] = _last_line(report)
        return
    if entry["outcome"] == "failed":
        return
    if hasattr(report, "wasxfail"):
        xpassed = report.passed and report.when == "call"
        entry["outcome"] = "failed" if xpassed else "xfailed"
        entry["message"] = f"xfail: {report.wasxfail}"
    elif report.failed:
        entry["outcome"] = "failed"
        entry["message"] = _last_line(report)
    elif report.skipped:
        entry["outcome"] = "skipped"
        entry["message"] = _last_line(report)
    elif report.when == "call" and entry["outcome"] == "not run":
        entry["outcome"] = "passed"


def _last_line(report: pytest.TestReport) -> str:
    """The error itself (pytest's `E   …` lines) rather than the traceback's last frame."""
    lines = str(report.longrepr or "").strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    if errors:
        return " ".join(errors[:3])[:500]
    return lines[-1][:500] if lines else ""
