"""Gate results kept as evidence of a git tree, and one run of the suite per certify.

Each gate command of the small repository writes a line into a file outside it, so a test can
count what really ran: a certify on a tree whose gates already passed runs nothing again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gates.certify.config import load_config
from gates.certify.evidence import EvidenceKey, evidence_dir
from gates.certify.run import run_gates
from gates.certify.verdict import Decision
from gates.exceptions import GatesConfigError
from gates.record.publish import certify
from tests.gates.certify_project import PYPROJECT, Project, make_project

COUNTED = """\
[tool.gates.commands]
lint = [["python", "count.py", "lint"]]
types = [["python", "count.py", "types"]]
tests = [["python", "count.py", "tests"]]
"""

COUNT = """\
import os
import sys
from pathlib import Path

with open(os.environ["RUNS"], "a") as runs:
    runs.write(sys.argv[1] + "\\n")
if sys.argv[1] == "tests":
    sys.exit(Path("src/tests.txt").read_text().strip() != "ok")
"""

SUITE = """\
[tool.gates.commands]
lint = [["python", "-c", "print('lint ok')"]]
types = [["python", "-c", "print('types ok')"]]
tests = [["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]]

[tool.gates.from_tests]
migrations = ["tests/test_migrations.py"]
acceptance = ["tests/bdd"]
"""

SESSION_COUNTER = """\
import os


def pytest_sessionstart(session):
    with open(os.environ["RUNS"], "a") as runs:
        runs.write("pytest\\n")
"""

MIGRATIONS = """\
from pathlib import Path


def test_upgrade_and_downgrade():
    assert Path("src/migrations.txt").read_text().strip() == "ok"
"""


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs.txt"


@pytest.fixture
def env(runs: Path) -> dict[str, str]:
    return {**os.environ, "RUNS": str(runs), "DEMO_DATABASE": "sqlite"}


def counted(runs: Path) -> list[str]:
    return runs.read_text().split() if runs.exists() else []


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "demo")
    head, _, _ = PYPROJECT.partition("[tool.gates.commands]")
    head = head.replace(
        'tools = ["pytest", "pytest-bdd"]',
        'tools = ["pytest", "pytest-bdd"]\nenvironment = ["DEMO_DATABASE"]',
    )
    project.write("pyproject.toml", head + COUNTED)
    project.write("count.py", COUNT)
    project.commit("gates that count their runs")
    return project


def test_a_second_certify_on_the_same_tree_runs_nothing_again(
    project: Project, env: dict[str, str], runs: Path
) -> None:
    (first,) = certify(project.root, check=True, env=env)
    assert first.decision is Decision.CONCLUDED
    assert sorted(counted(runs)) == ["lint", "tests", "types"]
    (second,) = certify(project.root, check=True, env=env)
    assert second.decision is Decision.CONCLUDED
    assert sorted(counted(runs)) == ["lint", "tests", "types"]  # nothing ran again
    reused = {g.name: g.evidence for g in second.evaluation.gates if g.evidence}
    assert set(reused) == {"lint", "types", "tests"}
    assert all(evidence["reused"] for evidence in reused.values())


def test_the_record_says_where_and_when_reused_evidence_was_produced(
    project: Project, env: dict[str, str]
) -> None:
    certify(project.root, check=True, env=env)
    (result,) = certify(project.root, env=env)
    assert result.record is not None
    record = (project.root / result.record).read_text(encoding="utf-8")
    twin = json.loads((project.root / result.record.with_suffix(".json")).read_text())
    tests = next(g for g in twin["gates"] if g["name"] == "tests")
    assert tests["evidence"]["reused"] is True
    kept = evidence_dir(project.root) / f"{tests['evidence']['key']}.json"
    assert kept.is_file()
    assert "Evidências reutilizadas" in record
    assert tests["evidence"]["sha256"] in record


def test_a_failure_is_never_kept(project: Project, env: dict[str, str], runs: Path) -> None:
    project.write("src/tests.txt", "falha\n")
    project.commit("the tests fail")
    certify(project.root, check=True, env=env)
    certify(project.root, check=True, env=env)
    assert counted(runs).count("tests") == 2


def test_fresh_runs_every_gate_again(project: Project, env: dict[str, str], runs: Path) -> None:
    certify(project.root, check=True, env=env)
    certify(project.root, check=True, env=env, fresh=True)
    assert sorted(counted(runs)) == sorted(["lint", "types", "tests"] * 2)


def test_another_tree_or_database_runs_again(
    project: Project, env: dict[str, str], runs: Path
) -> None:
    certify(project.root, check=True, env=env)
    project.write("src/app.py", "print('changed')\n")
    project.commit("the code changed")
    certify(project.root, check=True, env=env)
    assert counted(runs).count("tests") == 2
    certify(project.root, check=True, env={**env, "DEMO_DATABASE": "postgresql"})
    assert counted(runs).count("tests") == 3
    project.git("commit", "-q", "--allow-empty", "-m", "same tree, another commit")
    certify(project.root, check=True, env=env)
    assert counted(runs).count("tests") == 3  # keyed by the tree, not the commit


def test_evidence_copied_to_another_tree_is_not_trusted(
    project: Project, env: dict[str, str], runs: Path
) -> None:
    certify(project.root, check=True, env=env)  # the tests pass: their result is kept
    project.write("src/tests.txt", "falha\n")
    project.commit("the tests fail")
    kept = next(
        p for p in evidence_dir(project.root).iterdir() if '"gate": "tests"' in p.read_text()
    )
    key = json.loads(kept.read_text())["key"]
    failing = EvidenceKey(
        tree=project.git("rev-parse", "HEAD^{tree}").strip(),
        gate=key["gate"],
        commands=tuple(tuple(command) for command in key["commands"]),
        config=key["config"],
        tools=tuple(sorted(key["tools"].items())),
        environment=tuple(sorted(key["environment"].items())),
    )
    # the passing result, under the name the failing tree's evidence would have
    (kept.parent / f"{failing.digest}.json").write_bytes(kept.read_bytes())
    (result,) = certify(project.root, check=True, env=env)
    assert result.decision is not Decision.CONCLUDED
    assert counted(runs).count("tests") == 2  # the tests ran again, and failed


def test_gates_run_keeps_evidence_on_a_clean_tree_only(
    project: Project, env: dict[str, str], runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("notes.txt", "an untracked file\n")
    outcome = run_gates(project.root, env=env)
    assert outcome.commit is None
    assert outcome.passed
    assert not evidence_dir(project.root).exists()
    (project.root / "notes.txt").unlink()
    outcome = run_gates(project.root, env=env)
    assert outcome.commit == project.git("rev-parse", "HEAD").strip()
    assert counted(runs).count("tests") == 2
    (result,) = certify(project.root, check=True, env=env)
    assert result.decision is Decision.CONCLUDED
    assert counted(runs).count("tests") == 2  # certify reused what `gates run` kept
    assert "1 passed" in capsys.readouterr().out  # the scenarios ran in view


def with_suite(project: Project) -> None:
    head, _, _ = PYPROJECT.partition("[tool.gates.commands]")
    project.write("pyproject.toml", head + SUITE)
    project.write("conftest.py", SESSION_COUNTER)
    project.write("tests/test_migrations.py", MIGRATIONS)
    project.write("src/migrations.txt", "ok\n")
    for path in (project.root / "vault/demo/os").glob("*.md"):
        text = path.read_text().replace("tests, acceptance", "tests, migrations, acceptance")
        path.write_text(text)
    project.commit("the suite holds the migrations and the scenarios")


def test_migrations_and_acceptance_come_from_one_run_of_the_suite(
    project: Project, env: dict[str, str], runs: Path
) -> None:
    with_suite(project)
    (result,) = certify(project.root, check=True, env=env)
    assert result.decision is Decision.CONCLUDED, result.evaluation.reasons
    assert counted(runs) == ["pytest"]
    gates = {gate.name: gate for gate in result.evaluation.gates}
    assert gates["migrations"].passed
    assert gates["migrations"].facts["tests"] == 1
    assert gates["acceptance"].passed


def test_a_failing_test_of_a_gate_read_from_the_suite_fails_that_gate(
    project: Project, env: dict[str, str], runs: Path
) -> None:
    with_suite(project)
    project.write("src/migrations.txt", "broken\n")
    project.commit("a migration breaks")
    (result,) = certify(project.root, check=True, env=env)
    assert result.decision is not Decision.CONCLUDED
    gates = {gate.name: gate for gate in result.evaluation.gates}
    assert not gates["migrations"].passed
    assert "test_upgrade_and_downgrade" in gates["migrations"].detail
    assert gates["acceptance"].passed  # the scenarios themselves passed
    assert counted(runs) == ["pytest"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[tool.gates.from_tests]\nlint = ['tests']\n", "only migrations and acceptance"),
        ("[tool.gates.from_tests]\nmigrations = []\n", "at least one test path"),
        (
            "[tool.gates.commands]\ntests = [['make', 'test']]\n"
            "[tool.gates.from_tests]\nmigrations = ['tests']\n",
            "one pytest command",
        ),
        (
            "[tool.gates.commands]\nmigrations = [['alembic', 'check']]\n"
            "[tool.gates.from_tests]\nmigrations = ['tests']\n",
            "keep one",
        ),
    ],
)
def test_a_wrong_from_tests_table_is_a_clear_error(
    tmp_path: Path, table: str, message: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.gates]\nvault = 'vault'\n{table}")
    with pytest.raises(GatesConfigError, match=message):
        load_config(tmp_path)
