"""Deciding an OS: each criterion from what proves it, then the OS from its criteria and gates.

A criterion PASSES only when something proves it and everything that proves it passed; one
that nothing proves is NÃO VERIFICADO and fails the OS, and so is one whose scenarios killed
none of the mutants run against them (`gates.certify.mutation`): a proof without effect. The
executor's tick is shown beside the verdict and flagged when the gates contradict it; it never
decides anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from gates.certify.acceptance import AcceptanceRun, Outcome, ScenarioResult
from gates.certify.checks import GateResult, Status
from gates.certify.mutation import CriterionScore, MutationRun
from gates.orders.features import CRITERION_TAG, OS_TAG, FeatureProblem, ScenarioSpec
from gates.orders.model import Criterion, WorkOrder


class CriterionVerdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNVERIFIED = "NÃO VERIFICADO"


class Decision(StrEnum):
    CONCLUDED = "CONCLUÍDA"
    FAILED = "REPROVADA"
    REGRESSED = "REGREDIDA"


@dataclass(frozen=True, slots=True)
class Proof:
    """One thing that proves a criterion: a scenario or a gate, and how it went."""

    kind: str  # "cenário" or "gate"
    ref: str
    name: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status in (Status.PASS, Outcome.PASSED)


@dataclass(frozen=True, slots=True)
class CriterionResult:
    criterion: Criterion
    verdict: CriterionVerdict
    proofs: tuple[Proof, ...]
    mutation: CriterionScore | None = None
    """How many of the mutants run against its scenarios they killed (`gates.certify.mutation`)."""
    note: str = ""
    """Why it is NÃO VERIFICADO when something proves it (a proof without effect)."""

    @property
    def claim_contradicted(self) -> bool:
        """The executor ticked the box, but the gates did not prove it."""
        return self.criterion.claimed and self.verdict is not CriterionVerdict.PASS

    @property
    def unclaimed_but_proved(self) -> bool:
        return not self.criterion.claimed and self.verdict is CriterionVerdict.PASS


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything decided about one OS in one run."""

    criteria: tuple[CriterionResult, ...]
    scenarios: tuple[ScenarioResult, ...]
    gates: tuple[GateResult, ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    reasons: tuple[str, ...]
    mutation: MutationRun | None = None

    @property
    def concluded(self) -> bool:
        return not self.reasons


def scenarios_of(
    order: WorkOrder, features: dict[str, list[ScenarioSpec] | FeatureProblem]
) -> tuple[list[ScenarioSpec], list[str]]:
    """The scenarios in the OS's feature files, and the problems found reading them."""
    scenarios: list[ScenarioSpec] = []
    errors: list[str] = []
    for feature in order.features:
        parsed = features[feature.as_posix()]
        if isinstance(parsed, FeatureProblem):
            errors.append(str(parsed))
        else:
            scenarios.extend(parsed)
    return scenarios, errors


def evaluate(
    order: WorkOrder,
    scenarios: list[ScenarioSpec],
    feature_errors: list[str],
    acceptance: AcceptanceRun | None,
    gates: dict[str, GateResult],
    *,
    dirty: tuple[str, ...],
    mutation: MutationRun | None = None,
) -> Evaluation:
    """Decide every criterion of `order` and the OS itself.

    `dirty`, the working tree's uncommitted changes, is only reported: the gates ran on a clean
    checkout of the commit, so those changes took no part in the verdict."""
    errors = list(feature_errors)
    warnings: list[str] = []
    if dirty:
        listed = ", ".join(dirty[:5]) + (f" e mais {len(dirty) - 5}" if len(dirty) > 5 else "")
        warnings.append(
            f"alterações não commitadas ficaram fora dos gates (rodaram no commit): {listed}"
        )
    own = [s for s in scenarios if order.short_id in s.work_orders]
    for scenario in scenarios:
        errors.extend(_near_misses(scenario))
        if order.short_id not in scenario.work_orders:
            warnings.append(
                f"cenário «{scenario.name}» ({scenario.ref}) não tem a tag {order.tag}: "
                "não prova nada nesta OS"
            )
    known = {criterion.id for criterion in order.criteria}
    for scenario in own:
        for criterion_id in scenario.criteria:
            if criterion_id not in known:
                errors.append(
                    f"cenário «{scenario.name}» ({scenario.ref}) marca @{criterion_id}, "
                    f"que não existe na {order.short_id}"
                )
        if not scenario.criteria:
            warnings.append(f"cenário «{scenario.name}» ({scenario.ref}) não marca nenhum critério")
    results = tuple(_scenario_result(acceptance, scenario) for scenario in own)
    by_spec = {result.spec: result for result in results}
    per_os_gates = dict(gates)
    if "acceptance" in gates:
        completed = acceptance is not None and acceptance.completed
        per_os_gates["acceptance"] = _acceptance_for(
            order, gates["acceptance"], results, errors, completed=completed
        )
    criteria = tuple(
        _with_mutation(
            _decide(
                criterion, [by_spec[s] for s in own if criterion.id in s.criteria], per_os_gates
            ),
            mutation,
            order.mutation.threshold,
        )
        for criterion in order.criteria
    )
    ordered_gates = tuple(
        per_os_gates[name] for name in required_gates(order) if name in per_os_gates
    )
    if "acceptance" not in required_gates(order):  # no gate of the OS judges its scenarios
        errors.extend(
            f"cenário «{r.spec.name}» ({r.spec.ref}), com a tag {order.tag}, não passou: "
            f"{r.outcome.value}{f' — {r.message}' if r.message else ''}"
            for r in results
            if r.outcome is not Outcome.PASSED and not r.spec.criteria
        )
    reasons = _reasons(criteria, ordered_gates, errors)
    return Evaluation(
        criteria, results, ordered_gates, tuple(errors), tuple(warnings), reasons, mutation
    )


def _with_mutation(
    result: CriterionResult, mutation: MutationRun | None, threshold: float
) -> CriterionResult:
    """A passing criterion whose scenarios killed none of the mutants run against them proves
    nothing (NÃO VERIFICADO, "prova sem efeito"); nor does one scoring under the threshold."""
    score = mutation.score_of(result.criterion.id) if mutation is not None else None
    if score is None:
        return result
    result = replace(result, mutation=score)
    if result.verdict is not CriterionVerdict.PASS or not score.tested:
        return result
    if score.killed == 0:
        note = (
            f"prova sem efeito: os cenários passaram com cada um dos {score.tested} mutantes do "
            "código que executam (nenhum foi morto)"
        )
    elif threshold and score.killed / score.tested < threshold:
        note = (
            f"pontuação de mutação {score.killed}/{score.tested} "
            f"({score.killed / score.tested:.0%}) abaixo do limiar {threshold:.0%} da OS"
        )
    else:
        return result
    return replace(result, verdict=CriterionVerdict.UNVERIFIED, note=note)


# Tags that look like a criterion's or an OS's but are not well formed (@AC-1, @ac-01, @AC01,
# @OS-1): a typo would otherwise make a scenario prove nothing, silently.
# (Digits, or the letters typed for them: O, l, I.)
_LIKE_CRITERION = re.compile(r"^@ac[\W_]*[0-9oli]{1,4}$", re.IGNORECASE)
_LIKE_OS = re.compile(r"^@os[\W_]*[0-9oli]{1,6}$", re.IGNORECASE)


def _near_misses(scenario: ScenarioSpec) -> list[str]:
    problems = []
    for tag in sorted(scenario.tags):
        if _LIKE_CRITERION.match(tag) and not CRITERION_TAG.match(tag):
            problems.append(
                f"cenário «{scenario.name}» ({scenario.ref}): a tag {tag} parece um critério, "
                "mas um critério se marca com AC- e dois ou mais dígitos (ex.: @AC-01)"
            )
        elif _LIKE_OS.match(tag) and not OS_TAG.match(tag):
            problems.append(
                f"cenário «{scenario.name}» ({scenario.ref}): a tag {tag} parece uma OS, "
                "mas uma OS se marca com OS- e três ou mais dígitos (ex.: @OS-004)"
            )
    return problems


def required_gates(order: WorkOrder) -> tuple[str, ...]:
    """The gates the OS lists, then any a criterion names that the OS forgot to list."""
    names = list(order.gates)
    for criterion in order.criteria:
        names.extend(gate for gate in criterion.gates if gate not in names)
    return tuple(names)


def _scenario_result(acceptance: AcceptanceRun | None, spec: ScenarioSpec) -> ScenarioResult:
    if acceptance is None:
        return ScenarioResult(spec, Outcome.NOT_RUN, 0, "o gate acceptance não foi executado")
    if not acceptance.completed:
        return ScenarioResult(spec, Outcome.NOT_RUN, 0, "a execução do pytest não terminou")
    return acceptance.result_of(spec)


def _acceptance_for(
    order: WorkOrder,
    shared: GateResult,
    results: tuple[ScenarioResult, ...],
    errors: list[str],
    *,
    completed: bool,
) -> GateResult:
    """The shared pytest run, judged on this OS's scenarios only."""
    failing = [r for r in results if r.outcome is not Outcome.PASSED]
    if errors:
        detail = errors[0]
    elif not results:
        detail = f"nenhum cenário com a tag {order.tag} nos arquivos de features da OS"
    elif failing:
        first = failing[0]
        detail = (
            f"{len(failing)} de {len(results)} cenários não passaram; "
            f"«{first.spec.name}» ({first.spec.ref}): {first.outcome.value}"
        )
    elif not completed:
        detail = shared.detail or "a execução do pytest não terminou"
    else:
        detail = ""
    status = Status.FAIL if detail else Status.PASS
    facts = {"scenarios": len(results), "passed": len(results) - len(failing)}
    return GateResult(
        shared.name, status, shared.duration_s, shared.commands, shared.log, detail, facts
    )


def _decide(
    criterion: Criterion, scenarios: list[ScenarioResult], gates: dict[str, GateResult]
) -> CriterionResult:
    proofs = [
        Proof("cenário", r.spec.ref, r.spec.name, r.outcome.value, r.message) for r in scenarios
    ]
    for name in criterion.gates:
        gate = gates.get(name)
        if gate is None:
            proofs.append(Proof("gate", name, name, "não executado", "gate não executado"))
        else:
            proofs.append(Proof("gate", name, name, gate.status.value, gate.detail))
    if not proofs:
        verdict = CriterionVerdict.UNVERIFIED
    elif all(proof.passed for proof in proofs):
        verdict = CriterionVerdict.PASS
    else:
        verdict = CriterionVerdict.FAIL
    return CriterionResult(criterion, verdict, tuple(proofs))


def _reasons(
    criteria: tuple[CriterionResult, ...],
    gates: tuple[GateResult, ...],
    errors: list[str],
) -> tuple[str, ...]:
    reasons: list[str] = []
    reasons.extend(f"erro: {error}" for error in errors)
    for gate in gates:
        if not gate.passed:
            reasons.append(f"gate {gate.name} FAIL: {gate.detail or 'falhou'}")
    for result in criteria:
        if result.verdict is CriterionVerdict.UNVERIFIED:
            why = result.note or "nada prova este critério"
            reasons.append(f"{result.criterion.id} NÃO VERIFICADO: {why}")
        elif result.verdict is CriterionVerdict.FAIL:
            failed = [p for p in result.proofs if not p.passed]
            what = "; ".join(f"{p.kind} {p.name}: {p.message or p.status}" for p in failed)
            reasons.append(f"{result.criterion.id} FAIL ({result.criterion.text}): {what}")
    return tuple(reasons)
