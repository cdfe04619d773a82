"""The executable specifications: tag markers, the step modules, and their shared fixtures.

`test_features.py` binds every scenario under `features/`; the steps live in the modules of
`STEP_MODULES` (one per area, all of `tests/bdd/steps/`), whose step definitions are exported
here so that pytest-bdd finds them for every feature file.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from alembic.script import ScriptDirectory

from tests.bdd.steps import (
    api,
    crm_api,
    databases,
    events,
    ingest,
    migrations,
    models,
    operator,
    promises,
    whatsapp,
)
from tests.bdd.support.databases import DATABASE_PROPERTY, alembic_config
from tests.bdd.support.tags import feature_tags

STEP_MODULES: tuple[ModuleType, ...] = (
    api,
    crm_api,
    databases,
    events,
    ingest,
    migrations,
    models,
    operator,
    promises,
    whatsapp,
)
"""Every step module; a test checks that it lists each file of tests/bdd/steps/."""

STEP_DEFINITION_PREFIX = "pytestbdd_stepdef_"


def _export_step_definitions(modules: tuple[ModuleType, ...]) -> dict[str, object]:
    """The step-definition fixtures pytest-bdd put in each module, refusing duplicates."""
    exported: dict[str, object] = {}
    for module in modules:
        for name, value in vars(module).items():
            if not name.startswith(STEP_DEFINITION_PREFIX):
                continue
            if name in exported:
                raise RuntimeError(f"{module.__name__} defines a step already defined: {name}")
            exported[name] = value
    return exported


globals().update(_export_step_definitions(STEP_MODULES))


def features_dir(config: pytest.Config) -> Path:
    return config.rootpath / (str(config.getini("bdd_features_base_dir")) or "features")


def pytest_configure(config: pytest.Config) -> None:
    """Register each well-formed tag of the feature files as a marker; refuse any other."""
    root = features_dir(config)
    tags = feature_tags(root)
    for tag in tags:
        if not tag.well_formed:
            raise pytest.UsageError(
                f"{tag.location(config.rootpath)}: malformed tag @{tag.name}; a scenario is "
                "tagged with its work order (@OS-004) and the criteria it proves (@AC-01)"
            )
    for name in sorted({tag.name for tag in tags}):
        config.addinivalue_line("markers", f"{name}: scenarios tagged @{name} in {root.name}/")


@pytest.fixture
def api_credentials() -> dict[str, str]:
    """Headers the scenario's requests carry: the API key a `Dado` step provisioned, if any."""
    return {}


@pytest.fixture
def api_responses() -> list[Any]:
    """Every response the scenario's OS 005 requests got, in order."""
    return []


@pytest.fixture
def relay_runs() -> list[int]:
    """How many events each run of the relay in the scenario published, in order."""
    return []


@pytest.fixture
def scenario_ids() -> dict[str, str]:
    """Ids the scenario learnt (contact_id, deal_id), to fill `{contact_id}` in paths and bodies."""
    return {}


@pytest.fixture
def alembic_scripts(monkeypatch: pytest.MonkeyPatch) -> ScriptDirectory:
    """The repository's migration scripts, as alembic.ini declares them."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # alembic's prepend_sys_path
    return ScriptDirectory.from_config(alembic_config())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which databases the scenarios ran on, so an offline PostgreSQL run is visible."""
    used: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for key, value in getattr(report, "user_properties", ()):
                if key == DATABASE_PROPERTY:
                    used[str(value).split(" (")[0]] += 1
    if used:
        terminalreporter.write_sep("-", "databases used by the scenarios")
        for database, count in sorted(used.items()):
            terminalreporter.write_line(f"{database}: {count} scenario(s)")
