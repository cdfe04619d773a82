"""What every scenario of features/ claims, read from the feature files as pytest-bdd parses
them (outlines expanded): each names one work order and the criteria it proves, and OS 004's
scenarios prove AC-01 to AC-05 and never AC-06 (Gates PASS, proved by the gates' own result).

Whether each scenario passes is `test_features.py`'s run, whose outcomes the gates read; this
needs no second run of the scenarios.
"""

from __future__ import annotations

import re

from pytest_bdd.parser import FeatureParser

from tests.bdd.support.tags import feature_files
from tests.conftest import REPO_ROOT

FEATURES_DIR = REPO_ROOT / "features"
OS_TAG = re.compile(r"OS-\d{3}")
AC_TAG = re.compile(r"AC-\d{2,}")
OS_004_CRITERIA_PROVED_BY_SCENARIOS = {"AC-01", "AC-02", "AC-03", "AC-04", "AC-05"}
OS_004_CRITERIA_PROVED_BY_GATES = {"AC-06"}


def scenario_tags() -> dict[tuple[str, str], frozenset[str]]:
    """(feature file, scenario name) of every scenario, outlines expanded, as pytest-bdd names
    them, with the tags it carries (its own and its feature's)."""
    found: dict[tuple[str, str], frozenset[str]] = {}
    for path in feature_files(FEATURES_DIR):
        feature = FeatureParser(str(FEATURES_DIR), str(path.relative_to(FEATURES_DIR))).parse()
        for template in feature.scenarios.values():
            contexts = [c for examples in template.examples for c in examples.as_contexts()]
            for context in contexts or [{}]:
                scenario = template.render(context)
                key = (feature.rel_filename, scenario.name)
                assert key not in found, f"two scenarios with one name: {key}"
                found[key] = frozenset(template.tags | feature.tags)
    return found


def test_every_feature_file_has_scenarios() -> None:
    files = {path.relative_to(REPO_ROOT).as_posix() for path in feature_files(FEATURES_DIR)}
    assert files, "no feature file"
    assert {name for name, _ in scenario_tags()} == files


def test_each_scenario_names_one_work_order_and_the_criteria_it_proves() -> None:
    for key, tags in scenario_tags().items():
        assert len({tag for tag in tags if OS_TAG.fullmatch(tag)}) == 1, (key, tags)
        assert any(AC_TAG.fullmatch(tag) for tag in tags), (key, tags)


def test_os_004_scenarios_prove_ac_01_to_ac_05_and_never_ac_06() -> None:
    proved: set[str] = set()
    for tags in scenario_tags().values():
        if "OS-004" in tags:
            proved |= {tag for tag in tags if AC_TAG.fullmatch(tag)}
    assert proved == OS_004_CRITERIA_PROVED_BY_SCENARIOS
    assert not proved & OS_004_CRITERIA_PROVED_BY_GATES
