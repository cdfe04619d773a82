"""The cucumber JSON report of a real run of features/: what the gates' certification reads.

Every scenario of every feature file must be in it, with its tags and every step passed; each
scenario names one work order and the criteria it proves; OS 004's scenarios prove AC-01 to
AC-05 and never AC-06 (Gates PASS, proved by the gates' own result).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from pytest_bdd.parser import FeatureParser

from tests.bdd.support.runner import run_pytest
from tests.bdd.support.tags import feature_files
from tests.conftest import REPO_ROOT

FEATURES_DIR = REPO_ROOT / "features"
OS_TAG = re.compile(r"OS-\d{3}")
AC_TAG = re.compile(r"AC-\d{2,}")
OS_004_CRITERIA_PROVED_BY_SCENARIOS = {"AC-01", "AC-02", "AC-03", "AC-04", "AC-05"}
OS_004_CRITERIA_PROVED_BY_GATES = {"AC-06"}


@dataclass(frozen=True)
class ExpectedScenario:
    tags: frozenset[str]
    steps: int


def expected_scenarios() -> dict[tuple[str, str], ExpectedScenario]:
    """(feature uri, scenario name) of every scenario, outlines expanded, as pytest-bdd names
    them, with their tags and number of steps."""
    expected = {}
    for path in feature_files(FEATURES_DIR):
        feature = FeatureParser(str(FEATURES_DIR), str(path.relative_to(FEATURES_DIR))).parse()
        for template in feature.scenarios.values():
            contexts = [c for examples in template.examples for c in examples.as_contexts()]
            for context in contexts or [{}]:
                scenario = template.render(context)
                expected[(feature.rel_filename, scenario.name)] = ExpectedScenario(
                    frozenset(template.tags), len(scenario.steps)
                )
    return expected


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = tmp_path_factory.mktemp("cucumber") / "cucumber.json"
    result = run_pytest(REPO_ROOT, "tests/bdd/test_features.py", f"--cucumberjson={path}", "-q")
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    features: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return features


@pytest.fixture(scope="module")
def elements(report: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for feature in report:
        for element in feature["elements"]:
            key = (feature["uri"], element["name"])
            assert key not in found, f"scenario reported twice: {key}"
            found[key] = element
    return found


def tags_of(element: dict[str, Any]) -> set[str]:
    return {tag["name"] for tag in element["tags"]}


def test_every_scenario_is_reported_with_its_tags_and_every_step_passed(
    elements: dict[tuple[str, str], dict[str, Any]],
) -> None:
    expected = expected_scenarios()
    assert elements.keys() == expected.keys()
    for key, element in elements.items():
        assert element["type"] == "scenario", key
        assert tags_of(element) == expected[key].tags, key
        statuses = [step["result"]["status"] for step in element["steps"]]
        assert len(statuses) == expected[key].steps, (key, statuses)
        assert set(statuses) == {"passed"}, (key, statuses)


def test_each_scenario_names_one_work_order_and_the_criteria_it_proves(
    elements: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for key, element in elements.items():
        tags = tags_of(element)
        assert len({tag for tag in tags if OS_TAG.fullmatch(tag)}) == 1, (key, tags)
        assert any(AC_TAG.fullmatch(tag) for tag in tags), (key, tags)


def test_os_004_scenarios_prove_ac_01_to_ac_05_and_never_ac_06(
    elements: dict[tuple[str, str], dict[str, Any]],
) -> None:
    proved: set[str] = set()
    for element in elements.values():
        tags = tags_of(element)
        if "OS-004" in tags:
            proved |= {tag for tag in tags if AC_TAG.fullmatch(tag)}
    assert proved == OS_004_CRITERIA_PROVED_BY_SCENARIOS
    assert not proved & OS_004_CRITERIA_PROVED_BY_GATES


def test_the_report_names_the_feature_as_written(report: list[dict[str, Any]]) -> None:
    uris = {feature["uri"] for feature in report}
    assert uris == {path.relative_to(REPO_ROOT).as_posix() for path in feature_files(FEATURES_DIR)}
    genesis = next(f for f in report if f["uri"] == "features/os_004_genesis.feature")
    assert genesis["language"] == "pt"
    assert genesis["name"] == "OS 004 — CRM Headless Genesis"
