"""Evidence that bites: a scenario that checks nothing does not prove its criterion.

The small repository's deliverable is a fee function. One scenario checks the fee it computes;
another calls the function and asserts nothing. Mutants of the function (cosmic-ray's operators)
are killed by the first and survive the second, whose criterion is then NÃO VERIFICADO.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gates.certify.mutation import (
    CriterionScore,
    Mutant,
    MutationRun,
    mutate,
    mutation_points,
    sample,
)
from gates.certify.verdict import CriterionResult, CriterionVerdict, Decision, Proof, _with_mutation
from gates.orders.model import Criterion, MutationPolicy
from gates.record.publish import CertifyResult, certify
from tests.gates.certify_project import SPEC, Project, make_project, spec

APP = """\
def fee(amount: int) -> int:
    \"\"\"The fee of an amount: doubled above 100, plus one otherwise.\"\"\"
    if amount > 100:
        return amount * 2
    return amount + 1
"""

FEATURE = """\
# language: pt
@OS-001
Funcionalidade: Taxas

  @AC-01
  Cenário: A taxa de um valor alto é o dobro
    Dado o valor 150
    Então a taxa é 300

  @AC-03
  Cenário: A taxa de um valor baixo existe
    Dado o valor 7
    Então a taxa é calculada
"""

STEPS = """\
from pytest_bdd import given, parsers, scenarios, then

from src.app import fee

scenarios("demo.feature")


@given(parsers.parse("o valor {amount:d}"), target_fixture="amount")
def amount(amount: int) -> int:
    return amount


@then(parsers.parse("a taxa é {expected:d}"))
def checked(amount: int, expected: int) -> None:
    assert fee(amount) == expected


@then("a taxa é calculada")
def vacuous(amount: int) -> None:
    try:
        fee(amount)
    except Exception:
        pass
"""

AC_03 = "- [x] **AC-03** A taxa de um valor baixo existe"


def with_mutation(project: Project, settings: str) -> None:
    """The spec with `mutation: SETTINGS` in its front matter."""
    text = spec(AC_03).replace("gates: [", f"mutation: {settings}\ngates: [", 1)
    project.write(SPEC, text)
    project.commit(f"mutation: {settings}")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "demo")
    project.write("src/app.py", APP)
    project.write("features/demo.feature", FEATURE)
    project.write("tests/bdd/test_demo.py", STEPS)
    project.commit("a fee, a real scenario and a vacuous one")
    with_mutation(project, "{mutants: 6}")  # 6 is enough here, and quick
    return project


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, CertifyResult]:
    """The project certified once (records written), shared by the tests that read what one
    certification measured: a certify with mutation testing takes many seconds."""
    project = make_project(tmp_path_factory.mktemp("certified") / "demo")
    project.write("src/app.py", APP)
    project.write("features/demo.feature", FEATURE)
    project.write("tests/bdd/test_demo.py", STEPS)
    project.commit("a fee, a real scenario and a vacuous one")
    with_mutation(project, "{mutants: 6}")
    (result,) = certify(project.root)
    return project, result


def test_a_scenario_that_asserts_nothing_proves_nothing(
    certified: tuple[Project, CertifyResult],
) -> None:
    _, result = certified
    verdicts = {c.criterion.id: c for c in result.evaluation.criteria}
    real, vacuous = verdicts["AC-01"], verdicts["AC-03"]
    assert real.verdict is CriterionVerdict.PASS
    assert real.mutation is not None
    assert real.mutation.killed > 0
    assert vacuous.verdict is CriterionVerdict.UNVERIFIED
    assert vacuous.mutation is not None
    assert vacuous.mutation.tested > 0
    assert vacuous.mutation.killed == 0
    assert "prova sem efeito" in vacuous.note
    assert result.decision is Decision.FAILED
    assert any("AC-03 NÃO VERIFICADO: prova sem efeito" in r for r in result.evaluation.reasons)


def test_the_figure_is_in_the_record_and_its_twin(
    certified: tuple[Project, CertifyResult],
) -> None:
    project, result = certified
    assert result.record is not None
    record = (project.root / result.record).read_text(encoding="utf-8")
    twin = json.loads((project.root / result.record.with_suffix(".json")).read_text())
    assert twin["mutation"]["tool"].startswith("cosmic-ray ")
    criteria = {c["id"]: c for c in twin["criteria"]}
    assert criteria["AC-01"]["mutation"]["killed"] > 0
    assert criteria["AC-03"]["mutation"]["killed"] == 0
    # AC-02 is proved by gates alone: no scenario, so no mutation figure (shown as "—")
    assert criteria["AC-02"].get("mutation") is None
    assert "AC-02" not in twin["mutation"]["criteria"]
    assert "### Mutação (força das evidências)" in record
    assert "mutantes mortos" in record
    assert "prova sem efeito" in record


@pytest.mark.parametrize(
    ("killed", "threshold", "verdict", "note"),
    [
        (0, 0.0, CriterionVerdict.UNVERIFIED, "prova sem efeito"),
        (1, 0.0, CriterionVerdict.PASS, ""),
        (2, 0.5, CriterionVerdict.PASS, ""),
        (1, 0.5, CriterionVerdict.UNVERIFIED, "abaixo do limiar 50%"),
    ],
)
def test_a_threshold_fails_a_low_score(
    killed: int, threshold: float, verdict: CriterionVerdict, note: str
) -> None:
    criterion = Criterion("AC-01", "A taxa", claimed=True, gates=(), line=1)
    passed = CriterionResult(
        criterion, CriterionVerdict.PASS, (Proof("cenário", "f:1", "c", "passed"),)
    )
    score = CriterionScore("AC-01", tested=4, killed=killed)
    run = MutationRun(
        "OS", "key", "cosmic-ray", "seed", MutationPolicy(), criteria={"AC-01": score}
    )
    decided = _with_mutation(passed, run, threshold)
    assert decided.verdict is verdict
    assert note in decided.note
    assert decided.mutation == score


def test_mutation_can_be_turned_off_per_os(project: Project) -> None:
    with_mutation(project, "{mutants: 0}")
    (result,) = certify(project.root, check=True)
    vacuous = next(c for c in result.evaluation.criteria if c.criterion.id == "AC-03")
    assert vacuous.verdict is CriterionVerdict.PASS
    assert result.evaluation.mutation is not None
    assert "desligada" in result.evaluation.mutation.note


def test_the_same_content_reuses_its_mutation_evidence_even_in_a_fresh_clone(
    certified: tuple[Project, CertifyResult], tmp_path: Path
) -> None:
    project, first = certified
    assert first.evaluation.mutation is not None
    assert first.evaluation.mutation.tested > 0
    project.commit("records")
    (again,) = certify(project.root, check=True)
    assert again.evaluation.mutation is not None
    assert again.evaluation.mutation.evidence is not None
    assert again.evaluation.mutation.evidence["reused"] is True
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project.root), str(clone)], check=True)
    (cloned,) = certify(clone, check=True)
    run = cloned.evaluation.mutation
    assert run is not None
    assert run.evidence is not None
    assert run.evidence["from"] == "record"  # the clone has no kept evidence, only records
    assert run.criteria == first.evaluation.mutation.criteria


def test_the_sample_is_deterministic_and_gives_each_criterion_its_turn() -> None:
    mutants = {
        "AC-01": [Mutant("a.py", line, "core/NumberReplacer", line) for line in range(1, 30)],
        "AC-02": [Mutant("a.py", line, "core/NumberReplacer", line) for line in range(20, 40)],
    }
    first = sample(mutants, 10, "commit:OS")
    assert first == sample(mutants, 10, "commit:OS")
    assert first != sample(mutants, 10, "another commit:OS")
    assert len({mutant for mutant, _ in first}) == 10
    assert [cid for _, cid in first] == ["AC-01", "AC-02"] * 5  # in turn
    assert all(mutant in mutants[cid] for mutant, cid in first)


def test_a_criterions_draws_spread_over_distinct_lines() -> None:
    same_line = [Mutant("a.py", 1, "core/NumberReplacer", n) for n in range(5)]
    other_lines = [Mutant("a.py", line, "core/AddNot", line) for line in range(2, 5)]
    drawn = sample({"AC-01": same_line + other_lines}, 4, "seed")
    assert len({mutant.line for mutant, _ in drawn}) == 4


def test_annotations_are_not_mutated() -> None:
    source = (
        "from __future__ import annotations\n\n"
        "def f(a: int | None) -> int | str:\n"
        "    return a | 1\n"
    )
    points = list(mutation_points(source))
    assert points
    assert all(line == 4 for _, _, line in points)


def test_every_point_yields_a_mutant_that_differs() -> None:
    points = list(mutation_points(APP))
    assert points
    for operator, occurrence, line in points:
        mutated = mutate(APP, operator, occurrence)
        assert mutated is not None
        assert mutated != APP
        assert 1 <= line <= APP.count("\n")


def test_a_criterion_the_os_exempts_is_not_measured_and_says_so(project: Project) -> None:
    with_mutation(project, "{mutants: 6, exempt: [AC-03]}")
    (result,) = certify(project.root)
    vacuous = next(c for c in result.evaluation.criteria if c.criterion.id == "AC-03")
    assert vacuous.verdict is CriterionVerdict.PASS
    assert vacuous.mutation is None
    assert result.record is not None
    record = (project.root / result.record).read_text(encoding="utf-8")
    assert "Mutação: isento pela OS" in record


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("{mutants: -1}", "mutation"),
        ("{threshold: 2}", "mutation"),
        ("{exempt: [AC-1]}", "mutation"),
        ("{sample: 3}", "mutation"),
    ],
)
def test_wrong_mutation_settings_are_a_lint_error(
    project: Project, settings: str, message: str
) -> None:
    from gates.orders.vault import load_vault

    text = spec(AC_03).replace("gates: [", f"mutation: {settings}\ngates: [", 1)
    project.write(SPEC, text)
    vault = load_vault(project.root)
    assert not vault.ok
    assert any(message in str(error) for error in vault.errors), vault.errors


def test_a_criterion_draws_where_its_own_code_is_before_the_shared_setup() -> None:
    setup = [Mutant("setup.py", line, "core/NumberReplacer", line) for line in range(1, 20)]
    own = [Mutant("own.py", line, "core/AddNot", line) for line in range(1, 4)]
    sharing = {**dict.fromkeys(setup, 18), **dict.fromkeys(own, 1)}
    drawn = sample({"AC-01": setup + own}, 4, "seed", sharing)
    assert [mutant.path for mutant, _ in drawn] == ["own.py"] * 3 + ["setup.py"]


def test_the_key_changes_with_what_a_result_depends_on(project: Project) -> None:
    from gates.certify.mutation import mutation_key
    from gates.orders.vault import load_vault

    order = next(iter(load_vault(project.root).documents.values()))
    first = mutation_key(project.root, order, {}, "config", {}, {})
    assert mutation_key(project.root, order, {}, "config", {}, {}) == first
    assert mutation_key(project.root, order, {}, "other config", {}, {}) != first
    assert mutation_key(project.root, order, {}, "config", {}, {"DB": "digest"}) != first
    assert mutation_key(project.root, order, {"steps.py": "x"}, "config", {}, {}) != first
    project.write("src/app.py", APP + "\n# a change in a deliverable\n")
    assert mutation_key(project.root, order, {}, "config", {}, {}) != first


def test_a_change_outside_the_python_deliverables_keeps_the_key(project: Project) -> None:
    """Only Python deliverables are mutated: a README that changes (as every records commit
    changes PLAN.md) must not measure mutation again, or a CI check right after the suite
    spends minutes instead of reusing the committed figures."""
    from gates.certify.mutation import mutation_key
    from gates.orders.vault import load_vault

    text = spec(AC_03).replace("- `src/app.py`", "- `src/app.py`\n- `README.md`", 1)
    project.write(SPEC, text.replace("gates: [", "mutation: {mutants: 6}\ngates: [", 1))
    project.write("README.md", "# Demo\n")
    project.commit("the README is a deliverable too")
    order = next(iter(load_vault(project.root).documents.values()))
    assert any(d.path.as_posix() == "README.md" for d in order.deliverables)
    first = mutation_key(project.root, order, {}, "config", {}, {})
    project.write("README.md", "# Demo\n\nStatus: certified.\n")
    assert mutation_key(project.root, order, {}, "config", {}, {}) == first
    project.write("src/app.py", APP + "\n# a change in the code\n")
    assert mutation_key(project.root, order, {}, "config", {}, {}) != first
