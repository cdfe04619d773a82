"""A verdict that depends on the commit alone, and evidence no one can launder.

Each test is a trick an executor who wants a green record could try on a small repository, at
a commit whose scenario fails; none of them may give CONCLUÍDA, or pass `gates verify`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gates.certify.verdict import Decision
from gates.record.integrity import verify
from gates.record.publish import CertifyResult, certify
from tests.gates.certify_project import FEATURE, SPEC, Project, make_project, spec


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "demo")


def decide(project: Project, *wanted: str) -> list[CertifyResult]:
    return certify(project.root, wanted, check=True)


def failing(project: Project) -> None:
    """Commit a flag that makes the scenario fail."""
    project.write("src/flag.txt", "vermelho\n")
    project.commit("the scenario fails")


HIDING_CONFTEST = """\
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.outcome = "passed"
"""


def test_an_ignored_conftest_takes_no_part_in_the_gates(project: Project) -> None:
    failing(project)
    project.write("conftest.py", HIDING_CONFTEST)
    (project.root / ".git" / "info" / "exclude").write_text("conftest.py\n", encoding="utf-8")
    assert project.git("status", "--porcelain").strip() == ""  # ignored: the tree is "clean"
    (result,) = decide(project)
    assert result.decision is not Decision.CONCLUDED, result.evaluation.reasons


FAILING_CONFTEST = """\
import pytest


@pytest.fixture(autouse=True)
def broken() -> None:
    raise AssertionError("the committed conftest fails every scenario")
"""


def test_a_staged_move_of_a_committed_conftest_into_the_vault_takes_no_part(
    project: Project,
) -> None:
    project.write("tests/bdd/conftest.py", FAILING_CONFTEST)
    project.commit("a conftest that fails every scenario")
    project.git("mv", "tests/bdd/conftest.py", "vault/demo/conftest.py")  # staged, not committed
    (result,) = decide(project)
    assert result.decision is not Decision.CONCLUDED, result.evaluation.reasons


def test_a_feature_file_edited_in_the_vault_takes_no_part(project: Project) -> None:
    inside = "vault/demo/provas/demo.feature"
    project.write(inside, FEATURE)
    project.write(SPEC, spec().replace("features/demo.feature", inside))
    project.write(
        "tests/bdd/test_demo.py",
        (project.root / "tests/bdd/test_demo.py")
        .read_text(encoding="utf-8")
        .replace('scenarios("demo.feature")', 'scenarios("../vault/demo/provas/demo.feature")'),
    )
    failing(project)
    # The failing scenario is deleted in the working tree only.
    project.write(inside, FEATURE.split("  @AC-01")[0])
    (result,) = decide(project)
    assert result.decision is not Decision.CONCLUDED, result.evaluation.reasons


OUTLINE = """\
# language: pt
@OS-001
Funcionalidade: Demonstração

  @AC-01
  Esquema do Cenário: A bandeira diz <valor>
    Dado a bandeira do projeto
    Então ela diz "<valor>"

    Exemplos:
      | valor    |
      | ok       |
      | vermelho |
"""


def test_an_outline_counts_its_examples_not_its_runs(project: Project) -> None:
    project.write("features/demo.feature", OUTLINE)
    steps = (project.root / "tests/bdd/test_demo.py").read_text(encoding="utf-8")
    project.write("tests/bdd/test_again.py", steps)  # the same feature bound twice
    pyproject = (project.root / "pyproject.toml").read_text(encoding="utf-8")
    project.write(
        "pyproject.toml",
        pyproject.replace(
            'bdd_features_base_dir = "features/"',
            'bdd_features_base_dir = "features/"\naddopts = ["-k", "not vermelho"]',
        ),
    )
    project.commit("the failing example deselected")
    (result,) = decide(project)
    assert result.decision is not Decision.CONCLUDED, result.evaluation.reasons


SECOND_ID = "OS-DEMO-OUTRA-20260106-002"
SECOND_SPEC = f"vault/demo/os/{SECOND_ID}.md"

MISTYPED = """\
# language: pt
@OS-001
Funcionalidade: Demonstração

  @AC-01
  Cenário: A bandeira está verde
    Dado a bandeira do projeto
    Então ela diz "ok"

  @AC-1
  Cenário: A bandeira também diz outra coisa
    Dado a bandeira do projeto
    Então ela diz "outra coisa"
"""


def test_a_verdict_is_the_same_whichever_oses_are_selected(project: Project) -> None:
    # OS-001 lists no acceptance gate; its failing scenario carries a mistyped criterion tag.
    project.write(SPEC, spec(gates="lint, types, tests, deliverables"))
    project.write("features/demo.feature", MISTYPED)
    second = (
        spec()
        .replace("OS-DEMO-CERTIFICACAO-20260105-001", SECOND_ID)
        .replace("number: 1", "number: 2")
        .replace("features/demo.feature", "features/outra.feature")
    )
    project.write(SECOND_SPEC, second)
    project.write("features/outra.feature", FEATURE.replace("@OS-001", "@OS-002"))
    steps = (project.root / "tests/bdd/test_demo.py").read_text(encoding="utf-8")
    project.write("tests/bdd/test_outra.py", steps.replace("demo.feature", "outra.feature"))
    project.commit("two OSes")
    alone = {r.order.short_id: r for r in decide(project, "OS-001")}
    together = {r.order.short_id: r for r in decide(project)}
    assert alone["OS-001"].decision is together["OS-001"].decision
    assert alone["OS-001"].evaluation.reasons == together["OS-001"].evaluation.reasons
    assert together["OS-001"].decision is not Decision.CONCLUDED
    assert any("@AC-1" in reason for reason in together["OS-001"].evaluation.reasons)


UNTAGGED_FAILURE = """\
# language: pt
@OS-001
Funcionalidade: Demonstração

  @AC-01
  Cenário: A bandeira está verde
    Dado a bandeira do projeto
    Então ela diz "ok"

  Cenário: A bandeira também diz outra coisa
    Dado a bandeira do projeto
    Então ela diz "outra coisa"
"""


def test_a_failing_scenario_of_the_os_counts_without_a_criterion_or_the_acceptance_gate(
    project: Project,
) -> None:
    project.write(SPEC, spec(gates="lint, types, tests, deliverables"))
    project.write("features/demo.feature", UNTAGGED_FAILURE)
    project.commit("a failing scenario that proves no criterion, in an OS without acceptance")
    (result,) = decide(project)
    assert result.decision is not Decision.CONCLUDED, result.evaluation.reasons
    assert any("outra coisa" in reason for reason in result.evaluation.reasons)


FLAKY_STEPS = """\
from pathlib import Path

from pytest_bdd import given, parsers, scenarios, then

scenarios("demo.feature")
TRIES = Path("src/tries.txt")


@given("a bandeira do projeto", target_fixture="flag")
def flag() -> str:
    tries = int(TRIES.read_text()) if TRIES.exists() else 0
    TRIES.write_text(str(tries + 1))
    return "ok" if tries % 2 else "vermelho"  # fails, then passes when rerun


@then(parsers.parse('ela diz "{expected}"'))
def says(flag: str, expected: str) -> None:
    assert flag == expected
"""


def test_a_scenario_that_passed_only_on_a_rerun_proves_nothing(project: Project) -> None:
    project.write("tests/bdd/test_demo.py", FLAKY_STEPS)
    project.write(".gitignore", "__pycache__/\nsrc/tries.txt\n")
    pyproject = (project.root / "pyproject.toml").read_text(encoding="utf-8")
    project.write(
        "pyproject.toml",
        pyproject.replace(
            'bdd_features_base_dir = "features/"',
            'bdd_features_base_dir = "features/"\naddopts = ["--reruns", "1"]',
        ),
    )
    project.commit("reruns")
    (result,) = decide(project)
    assert result.decision is not Decision.CONCLUDED, result.evaluation.reasons
    (scenario,) = result.evaluation.scenarios
    assert scenario.outcome.value == "flaky", scenario


def _regressed(project: Project) -> CertifyResult:
    (first,) = certify(project.root)
    assert first.decision is Decision.CONCLUDED, first.evaluation.reasons
    project.commit("records")
    failing(project)
    (second,) = certify(project.root)
    assert second.decision is Decision.REGRESSED, second.evaluation.reasons
    return second


def test_records_edited_by_hand_are_never_adopted(project: Project) -> None:
    regressed = _regressed(project)
    assert regressed.record is not None
    record = project.root / regressed.record
    twin, statement = record.with_suffix(".json"), record.with_suffix(".intoto.json")
    twin_doc = json.loads(twin.read_text(encoding="utf-8"))
    twin_doc["gates"][0]["log"] += "revisado pelo executor\n"  # volatile: not a fact compared
    twin.write_text(json.dumps(twin_doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    record.write_text(
        record.read_text(encoding="utf-8").replace("REGREDIDA", "CONCLUÍDA"), encoding="utf-8"
    )
    statement.write_text(
        statement.read_text(encoding="utf-8").replace('"FAILED"', '"PASSED"'), encoding="utf-8"
    )
    certify(project.root)  # again, at the same commit
    assert "CONCLUÍDA" not in record.read_text(encoding="utf-8").split("**Status:**")[1][:20]
    assert '"FAILED"' in statement.read_text(encoding="utf-8")
    assert verify(project.root).intact, verify(project.root).errors


def test_a_record_the_ledger_does_not_name_is_no_verdict(project: Project) -> None:
    regressed = _regressed(project)
    assert regressed.record is not None
    folder = (project.root / regressed.record).parent
    twins = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*[0-9a-f].json")]
    forged = next(twin for twin in twins if twin["decision"] == "CONCLUÍDA")
    forged["certified_at"] = "2030-01-01T00:00:00-03:00"
    forged["commit"] = "f" * 40
    (folder / ("f" * 12 + ".json")).write_text(json.dumps(forged), encoding="utf-8")
    project.commit("a record copied by hand")
    status = subprocess.run(
        [sys.executable, "-m", "gates", "status"],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "CONCLUÍDA" not in status.splitlines()[0], status
    assert not verify(project.root).intact


def test_a_rewritten_ledger_is_caught_by_its_history(project: Project) -> None:
    regressed = _regressed(project)
    project.commit("the regression recorded")
    book = project.root / "vault" / "ledger.jsonl"
    lines = book.read_text(encoding="utf-8").splitlines(keepends=True)
    book.write_text("".join(lines[:-1]), encoding="utf-8")  # the REGREDIDA entry cut
    assert regressed.record is not None
    for written in (project.root / regressed.record).parent.glob(regressed.record.stem + ".*"):
        written.unlink()  # and its record
    project.commit("the last entry removed")
    report = verify(project.root)
    assert not report.intact
    assert any("history" in error or "histórico" in error for error in report.errors), report


def test_a_pinned_key_needs_every_later_entry_signed(project: Project, tmp_path: Path) -> None:
    """A ledger stripped of its signatures verified unless every auditor passed --public-key:
    a key pinned in [tool.gates] makes every entry after the pin need its signature."""
    from gates.exceptions import SigningKeyError
    from gates.signing import generate, load_public_key, public_key_b64

    certify(project.root)  # an unsigned entry 1
    project.commit("records")
    _, public_file = generate(tmp_path / "keys" / "signing.key")
    public = public_key_b64(load_public_key(public_file))
    pyproject = (project.root / "pyproject.toml").read_text(encoding="utf-8")
    project.write(
        "pyproject.toml",
        pyproject.replace(
            "[tool.gates]\n", f'[tool.gates]\npublic_key = "{public}"\nsigned_from = 1\n'
        ),
    )
    project.commit("a pinned key")
    report = verify(project.root)  # no --public-key
    assert not report.intact
    assert any("not signed" in error and "pins key" in error for error in report.errors)
    with pytest.raises(SigningKeyError):
        certify(project.root)  # and no new unsigned entry can be written


def test_gate_inputs_inside_the_vault_are_refused_by_lint(project: Project) -> None:
    project.write("vault/demo/conftest.py", FAILING_CONFTEST)
    project.write("vault/demo/provas/outra.feature", FEATURE)
    result = subprocess.run(
        [sys.executable, "-m", "gates", "lint"],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "vault/demo/conftest.py" in result.stdout
    assert "vault/demo/provas/outra.feature" in result.stdout


def test_the_checkout_of_a_killed_run_is_removed_by_the_next(project: Project) -> None:
    pyproject = (project.root / "pyproject.toml").read_text(encoding="utf-8")
    slow = 'tests = [["python", "-c", "import time; time.sleep(60)"]]'
    project.write("pyproject.toml", re.sub(r"^tests = .*$", slow, pyproject, flags=re.M))
    project.commit("a slow tests gate")
    running = subprocess.Popen(
        [sys.executable, "-m", "gates", "certify", "--check", "--root", str(project.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "gates certify, pid" not in project.git("worktree", "list", "--porcelain"):
        assert time.monotonic() < deadline, "no checkout appeared"
        time.sleep(0.1)
    os.killpg(running.pid, signal.SIGKILL)
    running.wait(timeout=30)
    listed = project.git("worktree", "list", "--porcelain")
    abandoned = Path(re.findall(r"^worktree (.+)$", listed, re.M)[1])
    assert abandoned.is_dir()
    project.write("pyproject.toml", pyproject)
    project.commit("the tests gate as it was")
    certify(project.root, check=True)
    assert project.git("worktree", "list", "--porcelain").count("worktree ") == 1
    assert not abandoned.exists()
