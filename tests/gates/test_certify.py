"""`gates certify` on a real (small) repository: verdicts, records, determinism, regressions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.certify.verdict import CriterionVerdict, Decision
from gates.record.publish import CertifyResult, certify
from tests.gates.certify_project import FEATURE, SPEC, SPEC_ID, Project, make_project, spec


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "demo")


def run(project: Project, *, check: bool = False) -> CertifyResult:
    (result,) = certify(project.root, check=check)
    return result


def twin(project: Project, result: CertifyResult) -> dict[str, object]:
    assert result.record is not None
    document: dict[str, object] = json.loads(
        (project.root / result.record.with_suffix(".json")).read_text(encoding="utf-8")
    )
    return document


def verdicts(result: CertifyResult) -> dict[str, CriterionVerdict]:
    return {r.criterion.id: r.verdict for r in result.evaluation.criteria}


def test_a_healthy_os_is_concluded_and_its_record_written(project: Project) -> None:
    commit = project.git("rev-parse", "HEAD").strip()
    result = run(project)
    assert result.decision is Decision.CONCLUDED, result.evaluation.reasons
    assert result.record is not None
    assert result.record.as_posix() == f"vault/demo/fechamentos/{SPEC_ID}/{commit[:12]}.md"
    assert result.written == "written"
    markdown = (project.root / result.record).read_text(encoding="utf-8")
    for heading in (
        "## 1️⃣ Contexto",
        "## 2️⃣ Execução",
        "## 3️⃣ Entregáveis",
        "## 4️⃣ Evidências",
        "## 5️⃣ Critérios de Aceite (OS 001)",
        "## 6️⃣ Observações de Escopo",
        "## 7️⃣ Decisão Final",
        "## 8️⃣ Registro no Vault (canônico)",
    ):
        assert heading in markdown
    assert "**Status:** 🟢 CONCLUÍDA" in markdown
    assert f"**Commit:** `{commit}`" in markdown
    assert "- ✅ `src/app.py`" in markdown
    assert "- [x] **AC-01** A bandeira está verde — ✅ **PASS**" in markdown
    document = twin(project, result)
    assert document["decision"] == "CONCLUÍDA"
    assert document["commit"] == commit
    gates = document["gates"]
    assert isinstance(gates, list)
    assert [g["name"] for g in gates] == [
        "lint",
        "types",
        "tests",
        "acceptance",
        "deliverables",
    ]
    assert "OS-001 | [Certificação de demonstração]" in (project.root / "PLAN.md").read_text()


def test_the_same_commit_twice_gives_the_same_record(project: Project) -> None:
    first = run(project)
    assert first.record is not None
    before = (project.root / first.record).read_bytes()
    second = run(project)
    assert second.written == "unchanged"
    assert (project.root / first.record).read_bytes() == before
    records = list((project.root / "vault/demo/fechamentos").rglob("*.md"))
    assert len(records) == 1


def test_check_mode_writes_nothing(project: Project) -> None:
    result = run(project, check=True)
    assert result.decision is Decision.CONCLUDED
    assert result.record is None
    assert not (project.root / "vault/demo/fechamentos").exists()
    assert project.git("status", "--porcelain") == ""


def test_a_failing_scenario_fails_its_criterion_and_a_concluded_os_regresses(
    project: Project,
) -> None:
    good = run(project)
    good_commit = project.git("rev-parse", "HEAD").strip()
    assert good.concluded
    project.write("src/flag.txt", "nok\n")
    project.commit("break the flag")
    result = run(project)
    assert result.decision is Decision.REGRESSED
    assert verdicts(result)["AC-01"] is CriterionVerdict.FAIL
    assert verdicts(result)["AC-02"] is CriterionVerdict.PASS
    document = twin(project, result)
    assert document["regression"] == {"flipped": ["AC-01"], "since": good_commit}
    markdown = (project.root / result.record).read_text(encoding="utf-8")  # type: ignore[operator]
    assert "❌ **REGREDIDA**" in markdown
    assert "AC-01 FAIL (A bandeira está verde)" in markdown
    assert "declaração contrariada pelos gates" in markdown


def test_a_first_failure_is_reprovada_not_regredida(project: Project) -> None:
    project.write("src/flag.txt", "nok\n")
    project.commit("broken from the start")
    assert run(project).decision is Decision.FAILED


def test_a_failing_gate_fails_the_criteria_it_proves(project: Project) -> None:
    project.write("src/tests.txt", "broken\n")
    project.commit("break the tests gate")
    result = run(project)
    assert result.decision is Decision.FAILED
    assert verdicts(result) == {"AC-01": CriterionVerdict.PASS, "AC-02": CriterionVerdict.FAIL}
    tests_gate = next(g for g in result.evaluation.gates if g.name == "tests")
    assert tests_gate.detail.endswith("terminou com código 1")


def test_a_criterion_nothing_proves_is_unverified(project: Project) -> None:
    project.write(SPEC, spec("- [x] **AC-03** Algo que ninguém prova"))
    project.commit("add an unproved criterion")
    result = run(project)
    assert result.decision is Decision.FAILED
    assert verdicts(result)["AC-03"] is CriterionVerdict.UNVERIFIED
    assert any("AC-03 NÃO VERIFICADO" in reason for reason in result.evaluation.reasons)
    assert next(
        r for r in result.evaluation.criteria if r.criterion.id == "AC-03"
    ).claim_contradicted


def test_a_tag_naming_a_missing_criterion_is_an_error(project: Project) -> None:
    project.write("features/demo.feature", FEATURE.replace("@AC-01", "@AC-01 @AC-09"))
    project.commit("tag a criterion that does not exist")
    result = run(project)
    assert result.decision is Decision.FAILED
    assert any("@AC-09" in error for error in result.evaluation.errors)


def test_a_skipped_scenario_proves_nothing(project: Project) -> None:
    steps = (project.root / "tests/bdd/test_demo.py").read_text(encoding="utf-8")
    project.write(
        "tests/bdd/test_demo.py",
        steps.replace(
            "    assert flag == expected", "    import pytest\n\n    pytest.skip('later')"
        ),
    )
    project.commit("skip the scenario")
    result = run(project)
    assert verdicts(result)["AC-01"] is CriterionVerdict.FAIL
    assert result.decision is Decision.FAILED


def test_uncommitted_changes_take_no_part_and_are_reported(project: Project) -> None:
    """The verdict is the commit's: an uncommitted change neither breaks nor fixes it."""
    project.write("src/flag.txt", "vermelho\n")  # would fail the scenario, were it committed
    result = run(project)
    assert result.decision is Decision.CONCLUDED, result.evaluation.reasons
    assert result.evaluation.warnings[0].startswith(
        "alterações não commitadas ficaram fora dos gates (rodaram no commit): src/flag.txt"
    )
    assert twin(project, result)["worktree"] == {"clean": False, "changes": ["src/flag.txt"]}
    project.commit("the failing flag committed")
    project.write("src/flag.txt", "ok\n")  # the fix, not committed
    assert run(project).decision is Decision.REGRESSED


def test_records_and_the_plan_block_do_not_make_the_tree_dirty(project: Project) -> None:
    assert run(project).concluded
    assert project.git("status", "--porcelain").strip()  # records and PLAN.md were written
    again = run(project)
    assert again.concluded, again.evaluation.reasons


def test_a_missing_feature_file_and_a_missing_tool_are_clear_failures(project: Project) -> None:
    (project.root / "features/demo.feature").unlink()
    pyproject = (project.root / "pyproject.toml").read_text(encoding="utf-8")
    project.write(
        "pyproject.toml",
        pyproject.replace(
            'lint = [["python", "-c", "print(\'lint ok\')"]]', 'lint = [["no-such-linter"]]'
        ),
    )
    project.commit("lose the feature and the linter")
    result = run(project)
    assert result.decision is Decision.FAILED
    assert "features/demo.feature:0: feature file not found" in result.evaluation.errors
    lint = next(g for g in result.evaluation.gates if g.name == "lint")
    assert lint.detail == "ferramenta não instalada: 'no-such-linter' não foi encontrado"


def test_a_deliverable_missing_at_the_commit_fails_the_deliverables_gate(project: Project) -> None:
    project.git("rm", "-q", "src/app.py")
    project.commit("drop a deliverable")
    result = run(project)
    gate = next(g for g in result.evaluation.gates if g.name == "deliverables")
    assert gate.detail == "ausentes no commit: src/app.py"
    assert result.decision is Decision.FAILED


def test_the_command_line_certifies_reports_and_shows_status(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from gates.cli import main

    assert main(["certify", "--root", str(project.root), "--check"]) == 0
    out = capsys.readouterr().out
    assert "gate lint: running" in out
    assert "gate acceptance: PASS in" in out
    assert "gates certify: 1 of 1 OS CONCLUÍDA (check: nothing written)" in out
    assert main(["status", "--root", str(project.root)]) == 0
    assert "OS-001  NÃO CERTIFICADA" in capsys.readouterr().out
    assert main(["certify", "--root", str(project.root), "1"]) == 0
    capsys.readouterr()
    assert main(["status", "--root", str(project.root)]) == 0
    assert "OS-001  CONCLUÍDA" in capsys.readouterr().out


def test_an_unknown_os_is_one_line_and_exit_2(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from gates.cli import main

    assert main(["certify", "--root", str(project.root), "OS-999"]) == 2
    err = capsys.readouterr().err
    assert err == "gates: error: unknown OS 'OS-999' (the vault has: OS-001)\n"


def test_a_spec_with_errors_is_refused_in_one_line(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from gates.cli import main

    project.write(SPEC, spec().replace("number: 1", "number: one"))
    project.commit("break the spec")
    assert main(["certify", "--root", str(project.root)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"gates: error: {SPEC}:")
    assert "run `gates lint`" in err[0]


def test_a_crash_of_pytest_itself_is_a_clear_failure(project: Project) -> None:
    project.write("tests/bdd/conftest.py", "raise SystemExit('conftest exploded')\n")
    project.commit("a conftest that kills pytest")
    result = run(project)
    assert result.decision is Decision.FAILED
    acceptance = next(g for g in result.evaluation.gates if g.name == "acceptance")
    assert acceptance.status.value == "FAIL"
    assert acceptance.detail
    assert all(s.outcome.value == "not run" for s in result.evaluation.scenarios)
