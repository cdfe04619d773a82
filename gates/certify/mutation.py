"""Evidence strength per criterion: mutation testing of an OS's deliverables.

A scenario that passes proves its criterion only if it would fail were the code wrong. For each
OS, this mutates the Python files it lists as deliverables (one small change at a time: `<` for
`<=`, `and` for `or`, a constant changed, a loop that never runs …; never inside a type
annotation) and runs, against each mutant, the scenarios of the criterion it was drawn for,
until one fails. The mutant is *killed* when one fails (or the run crashes, or takes over three
times its usual time).

The mutation operators are cosmic-ray's (`cosmic_ray.plugins`, `cosmic_ray.mutating`), used as
a library: cosmic-ray applies one mutation to a source file by (operator, occurrence), which is
what a run against a chosen set of scenarios needs; mutmut 3 instead compiles every mutant into
the module at once and drives the whole suite itself. Which lines a scenario executes comes from
coverage.py, one context per test (`gates.pytest_plugin --gates-contexts`).

The mutants are a deterministic sample, seeded by the commit and the OS: up to `mutants` of them,
drawn in turn for each criterion among the mutation points on lines its scenarios execute (in
the test's body, not its fixtures), where its own code is first (lines fewer criteria execute,
before the setup every scenario runs), over distinct lines first, and run within `seconds` (the
front matter's `mutation:`; `mutants: 0` turns it off). A criterion whose scenarios killed none
of the mutants they ran against proves nothing (NÃO VERIFICADO, "prova sem efeito"); with
`threshold`, a score below it does the same.
"""

from __future__ import annotations

import ast
import collections
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from gates.certify.acceptance import AcceptanceRun, Outcome, read_results
from gates.certify.process import run_command
from gates.files import sha256_file
from gates.orders.features import ScenarioSpec
from gates.orders.model import MutationPolicy, WorkOrder

TOOL = "cosmic-ray"
CONFIRM = 5
"""Mutants a criterion that killed none is tried with before that is its figure."""
SCHEMA = "aurora-gates/mutation/v1"


@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutation: cosmic-ray's `operator` applied at its `occurrence` in `path`."""

    path: str
    line: int
    operator: str
    occurrence: int

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line} {self.operator.removeprefix('core/')}#{self.occurrence}"


@dataclass(frozen=True, slots=True)
class CriterionScore:
    """How many of the mutants run against a criterion's scenarios they killed."""

    criterion: str
    tested: int = 0
    killed: int = 0
    survived: tuple[str, ...] = ()

    @property
    def score(self) -> float | None:
        return None if self.tested == 0 else self.killed / self.tested

    def as_json(self) -> dict[str, Any]:
        return {
            "tested": self.tested,
            "killed": self.killed,
            "score": None if self.score is None else round(self.score, 3),
            "survived": list(self.survived),
        }


@dataclass(frozen=True, slots=True)
class MutationRun:
    """The mutation evidence of one OS: the sample, what each criterion killed, and the note
    that says why nothing ran (no Python deliverable, turned off, no scenario ran …)."""

    os_id: str
    key: str
    tool: str
    seed: str
    policy: MutationPolicy
    candidates: int = 0
    sampled: int = 0
    tested: int = 0
    elapsed_s: float = 0.0
    criteria: Mapping[str, CriterionScore] = field(default_factory=dict)
    note: str = ""
    evidence: Mapping[str, Any] | None = None

    def score_of(self, criterion: str) -> CriterionScore | None:
        return self.criteria.get(criterion)

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "os": self.os_id,
            "key": self.key,
            "tool": self.tool,
            "seed": self.seed,
            "policy": self.policy.as_json(),
            "candidates": self.candidates,
            "sampled": self.sampled,
            "tested": self.tested,
            "elapsed_s": round(self.elapsed_s, 1),
            "note": self.note,
            "criteria": {cid: score.as_json() for cid, score in sorted(self.criteria.items())},
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> MutationRun | None:
        """A run as `as_json` wrote it; `None` for anything else."""
        try:
            if document.get("schema") != SCHEMA:
                return None
            policy = document["policy"]
            criteria = {
                str(cid): CriterionScore(
                    str(cid),
                    int(score["tested"]),
                    int(score["killed"]),
                    tuple(str(s) for s in score["survived"]),
                )
                for cid, score in document["criteria"].items()
            }
            return cls(
                os_id=str(document["os"]),
                key=str(document["key"]),
                tool=str(document["tool"]),
                seed=str(document["seed"]),
                policy=MutationPolicy(
                    int(policy["mutants"]),
                    float(policy["seconds"]),
                    float(policy["threshold"]),
                    tuple(str(c) for c in policy.get("exempt", ())),
                ),
                candidates=int(document["candidates"]),
                sampled=int(document["sampled"]),
                tested=int(document["tested"]),
                elapsed_s=float(document["elapsed_s"]),
                criteria=criteria,
                note=str(document["note"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def tool_version() -> str:
    try:
        return f"{TOOL} {metadata.version(TOOL)}"
    except metadata.PackageNotFoundError:
        return f"{TOOL} (não instalado)"


def mutation_key(
    tree: Path,
    order: WorkOrder,
    steps: Mapping[str, str],
    config: str,
    tools: Mapping[str, str],
    environment: Mapping[str, str],
) -> str:
    """The sha256 of what mutation results depend on: the content of the OS's Python
    deliverables (the only files mutated: a README or PLAN.md that changes, as every records
    commit does, measures nothing again), its feature files and step modules, the gate
    configuration, the tools, the environment's listed variables (their digests), the OS's
    mutation settings, and this module itself (how mutants are drawn and judged)."""

    def digest(path: PurePosixPath) -> str:
        file = tree / path
        return sha256_file(file) if file.is_file() else ""

    canonical = json.dumps(
        {
            "os": order.id,
            "deliverables": {
                d.path.as_posix(): digest(d.path)
                for d in order.deliverables
                if d.path.suffix == ".py"
            },
            "features": {f.as_posix(): digest(f) for f in order.features},
            "steps": dict(steps),
            "config": config,
            "tools": dict(tools),
            "mutation_tool": tool_version(),
            # how mutants are chosen and judged is part of what a result means
            "sampler": sha256_file(Path(__file__)),
            "environment": dict(environment),
            "policy": order.mutation.as_json(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _function(nodeid: str) -> str:
    """`tests/bdd/test_x.py::test_y[example]` → `tests/bdd/test_x.py::test_y`."""
    return nodeid.split("[", 1)[0]


def criterion_tests(
    order: WorkOrder, scenarios: Sequence[ScenarioSpec], acceptance: AcceptanceRun
) -> dict[str, set[str]]:
    """Each criterion's passing scenarios, as the pytest test functions that ran them."""
    tests: dict[str, set[str]] = {criterion.id: set() for criterion in order.criteria}
    for spec in scenarios:
        if order.short_id not in spec.work_orders:
            continue
        if acceptance.result_of(spec).outcome is not Outcome.PASSED:
            continue
        runs = acceptance.runs.get((spec.feature.as_posix(), spec.line), [])
        functions = {_function(str(run.get("nodeid", ""))) for run in runs}
        for criterion in spec.criteria:
            if criterion in tests:
                tests[criterion].update(f for f in functions if f)
    return tests


def _annotations(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start, end) positions of every type annotation in `source`: a mutant there changes
    nothing at run time (annotations are not evaluated under `from __future__ import
    annotations`), so it would only ever survive."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
            every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
            annotations.extend(argument.annotation for argument in every)
        for annotation in annotations:
            if annotation is not None and annotation.end_lineno is not None:
                start = (annotation.lineno, annotation.col_offset)
                end = (annotation.end_lineno, annotation.end_col_offset or 0)
                spans.append((start, end))
    return spans


def mutation_points(source: str) -> Iterator[tuple[str, int, int]]:
    """Every (operator, occurrence, line) cosmic-ray can mutate in `source`, in the order its
    `MutationVisitor` counts occurrences (one walk of the parso tree), except those inside a
    type annotation (still counted, so that occurrences keep cosmic-ray's numbering)."""
    from cosmic_ray.ast import Visitor, get_ast
    from cosmic_ray.plugins import get_operator, operator_names

    operators = []
    for name in sorted(operator_names()):
        operator_class = get_operator(name)
        if operator_class.arguments():  # needs settings of its own: not used here
            continue
        operators.append((name, operator_class()))
    found: list[tuple[str, int, int]] = []
    counts = dict.fromkeys((name for name, _ in operators), 0)
    spans = _annotations(source)

    class Points(Visitor):  # type: ignore[misc]
        def visit(self, node: Any) -> Any:
            for name, operator in operators:
                for start, _ in operator.mutation_positions(node):
                    position = (int(start[0]), int(start[1]))
                    if not any(low <= position < high for low, high in spans):
                        found.append((name, counts[name], position[0]))
                    counts[name] += 1
            return node

    Points().walk(get_ast(source))
    return iter(found)


def mutate(source: str, operator: str, occurrence: int) -> str | None:
    """`source` with one mutation applied; `None` when the operator does not apply there."""
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    mutated = mutate_code(source, get_operator(operator)(), occurrence)
    return None if mutated is None or mutated == source else str(mutated)


def draw_orders(
    candidates: Mapping[str, list[Mutant]],
    seed: str,
    sharing: Mapping[Mutant, int] | None = None,
) -> dict[str, list[Mutant]]:
    """For each criterion (`candidates`: criterion → the mutants on the lines its scenarios
    execute), the order it draws its mutants in, with one `random.Random(seed)` over the
    criteria in sorted order. Each criterion draws first where its own code is: lines fewer
    criteria execute (`sharing`: mutant → how many criteria execute its line) before the setup
    every scenario runs, and distinct lines before a line twice. A criterion with no mutant has
    no entry."""
    rng = random.Random(seed)
    orders: dict[str, list[Mutant]] = {}
    for cid, mutants in sorted(candidates.items()):
        pool = sorted(mutants, key=lambda m: m.id)
        rng.shuffle(pool)
        if sharing is not None:
            pool.sort(key=lambda m: sharing.get(m, 0))  # stable: random within a level
        seen: set[tuple[str, int]] = set()
        first: list[Mutant] = []
        again: list[Mutant] = []
        for mutant in pool:
            (again if (mutant.path, mutant.line) in seen else first).append(mutant)
            seen.add((mutant.path, mutant.line))
        if first:
            orders[cid] = first + again
    return orders


def take_turns(orders: Mapping[str, Sequence[Mutant]], limit: int) -> list[tuple[Mutant, str]]:
    """Up to `limit` distinct mutants, each criterion taking the next of its `orders` in turn
    (every criterion has its first mutant before any has its second); each mutant with the
    criterion it was drawn for, in the order drawn."""
    queues = {cid: collections.deque(order) for cid, order in orders.items()}
    chosen: dict[Mutant, str] = {}
    while len(chosen) < limit and any(queues.values()):
        for cid, queue in queues.items():
            while queue and queue[0] in chosen:
                queue.popleft()
            if queue and len(chosen) < limit:
                chosen[queue.popleft()] = cid
    return list(chosen.items())


def sample(
    candidates: Mapping[str, list[Mutant]],
    limit: int,
    seed: str,
    sharing: Mapping[Mutant, int] | None = None,
) -> list[tuple[Mutant, str]]:
    """Up to `limit` distinct mutants drawn in turn for each criterion: `draw_orders`, then
    `take_turns`."""
    return take_turns(draw_orders(candidates, seed, sharing), limit)


class MutationTester:
    """Runs the mutation evidence of one OS in `tree` (a clean checkout: its files are mutated
    in place, one at a time, and always restored)."""

    def __init__(
        self,
        tree: Path,
        order: WorkOrder,
        tests: Mapping[str, set[str]],
        env: Mapping[str, str],
        *,
        key: str,
        seed: str,
        proof: Iterable[PurePosixPath] = (),
    ) -> None:
        self.tree, self.order, self.tests, self.env = tree, order, tests, dict(env)
        self.key, self.seed, self.policy = key, seed, order.mutation
        self.started = time.monotonic()
        self.durations: dict[str, float] = {}  # test function → seconds, under coverage
        self.proof = tuple(PurePosixPath(p) for p in proof)
        """The step folders: deliverables there are the proof, not the code it proves."""

    def _result(self, **facts: Any) -> MutationRun:
        return MutationRun(
            os_id=self.order.id,
            key=self.key,
            tool=tool_version(),
            seed=self.seed,
            policy=self.policy,
            elapsed_s=time.monotonic() - self.started,
            **facts,
        )

    @property
    def remaining(self) -> float:
        return self.policy.seconds - (time.monotonic() - self.started)

    def run(self) -> MutationRun:
        if self.policy.mutants == 0:
            return self._result(note="desligada na OS (mutation: mutants: 0)")
        sources = [
            d.path.as_posix()
            for d in self.order.deliverables
            if d.path.suffix == ".py"
            and (self.tree / d.path).is_file()
            and not any(step == d.path or step in d.path.parents for step in self.proof)
        ]
        if not sources:
            return self._result(note="a OS não lista código Python entre os entregáveis")
        functions = sorted(set().union(*self.tests.values())) if self.tests else []
        if not functions:
            return self._result(note="nenhum cenário da OS passou: não há o que medir")
        points = {
            path: list(mutation_points((self.tree / path).read_text(encoding="utf-8")))
            for path in sources
        }
        if not any(points.values()):
            return self._result(note="o código dos entregáveis não tem pontos de mutação")
        covered = self._coverage([path for path in sources if points[path]], functions)
        if covered is None:
            return self._result(note="a medição de cobertura dos cenários não terminou")
        # a criterion without scenarios (proved by gates alone) has no mutation figure
        candidates: dict[str, list[Mutant]] = {
            cid: [] for cid, tests in self.tests.items() if tests
        }
        sharing: dict[Mutant, int] = {}
        total = 0
        for path in sources:
            lines = covered.get(path, {})
            for operator, occurrence, line in points[path]:
                users = {cid for cid in candidates if self.tests[cid] & lines.get(line, set())}
                if not users:
                    continue
                total += 1
                mutant = Mutant(path, line, operator, occurrence)
                sharing[mutant] = len(users)
                for cid in users:
                    candidates[cid].append(mutant)
        for cid in self.policy.exempt:
            candidates.pop(cid, None)  # the OS says no mutant can express its claim
        orders = draw_orders(candidates, self.seed, sharing)
        chosen = take_turns(orders, self.policy.mutants)
        tested: dict[str, list[tuple[str, bool]]] = {cid: [] for cid in candidates}
        ran = 0
        untried = 0
        for index, (mutant, cid) in enumerate(chosen):
            if self.remaining <= 1:
                untried = len(chosen) - index
                break
            killed = self._try(mutant, self.tests[cid])
            if killed is None:
                continue  # the operator did not apply: not a mutant
            ran += 1
            tested[cid].append((mutant.id, killed))
        # A criterion that killed nothing gets more draws (distinct lines first) before that
        # is its figure: a narrow, real check must not be condemned by a small sample.
        drawn = {mutant for mutant, _ in chosen}
        for cid, outcomes in tested.items():
            if not outcomes or any(killed for _, killed in outcomes):
                continue
            for mutant in (m for m in orders.get(cid, ()) if m not in drawn):
                if len(outcomes) >= CONFIRM or self.remaining <= 1:
                    break
                drawn.add(mutant)
                killed = self._try(mutant, self.tests[cid])
                if killed is None:
                    continue
                ran += 1
                outcomes.append((mutant.id, killed))
                if killed:
                    break

        scores = {
            cid: CriterionScore(
                cid,
                tested=len(outcomes),
                killed=sum(killed for _, killed in outcomes),
                survived=tuple(mid for mid, killed in outcomes if not killed),
            )
            for cid, outcomes in tested.items()
        }
        note = (
            f"tempo esgotado: {untried} mutantes sorteados não foram executados" if untried else ""
        )
        return self._result(
            candidates=total, sampled=len(drawn), tested=ran, criteria=scores, note=note
        )

    def _coverage(
        self, sources: list[str], functions: list[str]
    ) -> dict[str, dict[int, set[str]]] | None:
        """For each deliverable, line → the test functions (of `functions`) that executed it."""
        with tempfile.TemporaryDirectory(prefix="gates-mutation-") as scratch:
            data_file = Path(scratch) / "coverage.db"
            rc = Path(scratch) / "coveragerc"
            include = "\n    ".join(str(self.tree / s) for s in sources)
            rc.write_text(
                f"[run]\ndata_file = {data_file}\ninclude =\n    {include}\n",
                encoding="utf-8",
            )
            command = [
                sys.executable,
                "-m",
                "coverage",
                "run",
                f"--rcfile={rc}",
                "-m",
                "pytest",
                *functions,
                "-p",
                "no:cacheprovider",
                "-q",
                "-p",
                "gates.pytest_plugin",
                "--gates-contexts",
                f"--gates-results={Path(scratch) / 'results.json'}",
            ]
            code = run_command(command, self.tree, self.env, max(self.remaining, 1.0)).code
            if code not in (0, 1) or not data_file.exists():
                return None
            read = read_results(Path(scratch) / "results.json", self.tree)
            for test in read[1] if read else []:
                name = _function(str(test.get("nodeid", "")))
                seconds = float(test.get("duration_s", 0.0))
                self.durations[name] = self.durations.get(name, 0.0) + seconds
            from coverage import CoverageData

            data = CoverageData(basename=str(data_file))
            data.read()
            wanted = set(functions)
            covered: dict[str, dict[int, set[str]]] = {}
            for measured in data.measured_files():
                try:
                    relative = Path(measured).resolve().relative_to(self.tree.resolve())
                except ValueError:
                    continue
                lines: dict[int, set[str]] = {}
                for line, contexts in (data.contexts_by_lineno(measured) or {}).items():
                    names = {_function(c) for c in contexts if c} & wanted
                    if names:
                        lines[int(line)] = names
                covered[relative.as_posix()] = lines
            return covered

    def _try(self, mutant: Mutant, functions: Iterable[str]) -> bool | None:
        """Apply `mutant`, run `functions` (one criterion's scenarios) until one fails, restore;
        whether it was killed (a failure, a crash, or a run past 3× their time without the
        mutant), or `None` when the operator does not apply."""
        target = self.tree / mutant.path
        original = target.read_bytes()
        mutated = mutate(original.decode("utf-8"), mutant.operator, mutant.occurrence)
        if mutated is None:
            return None
        functions = sorted(functions)
        usual = sum(self.durations.get(f, 5.0) for f in functions)
        limit = max(min(self.remaining, 3 * usual + 15), 1.0)
        stat = target.stat()
        try:
            target.write_text(mutated, encoding="utf-8")
            # a new mtime, so that no cached bytecode of the original is used
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            command = [sys.executable, "-m", "pytest", *functions, "-x", "-q"]
            argv = [*command, "-p", "no:cacheprovider"]
            code = run_command(argv, self.tree, self.env, limit).code
        finally:
            target.write_bytes(original)
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        return code != 0  # failed (1), crashed or could not collect (2-5), timed out (None)
