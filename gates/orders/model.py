"""The typed model of an OS spec: what the parser produces and the gate runner consumes."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath


class WorkOrderStatus(StrEnum):
    """The state the executor declares for an OS: a claim, never a verdict."""

    DRAFT = "rascunho"
    IN_PROGRESS = "em execução"
    DECLARED_DONE = "declarada concluída"


class SectionKind(StrEnum):
    """The body sections the format knows."""

    CONTEXT = "context"
    EXECUTION = "execution"
    DELIVERABLES = "deliverables"
    CRITERIA = "criteria"
    SCOPE_NOTES = "scope_notes"
    EVIDENCE = "evidence"
    FINAL_DECISION = "final_decision"
    VAULT_RECORD = "vault_record"

    @property
    def output_only(self) -> bool:
        """Whether only a closure record may hold this section (gates write it, authors never)."""
        return self in _OUTPUT_ONLY

    @property
    def label(self) -> str:
        """The pt-BR heading authors write for this section."""
        return _LABELS[self]


_OUTPUT_ONLY = frozenset(
    {SectionKind.EVIDENCE, SectionKind.FINAL_DECISION, SectionKind.VAULT_RECORD}
)
_LABELS = {
    SectionKind.CONTEXT: "Contexto",
    SectionKind.EXECUTION: "Execução",
    SectionKind.DELIVERABLES: "Entregáveis",
    SectionKind.CRITERIA: "Critérios de Aceite",
    SectionKind.SCOPE_NOTES: "Observações de Escopo",
    SectionKind.EVIDENCE: "Evidências",
    SectionKind.FINAL_DECISION: "Decisão Final",
    SectionKind.VAULT_RECORD: "Registro no Vault",
}


@dataclass(frozen=True, slots=True)
class DocumentError:
    """One problem in one document, with where it is and how to fix it."""

    path: Path
    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path.as_posix()}:{self.line}: {self.message} — fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class Problem:
    """A document problem before the parser knows which file it belongs to."""

    line: int
    message: str
    fix: str

    def at(self, path: Path) -> DocumentError:
        return DocumentError(path, self.line, self.message, self.fix)


@dataclass(frozen=True, slots=True)
class Criterion:
    """An acceptance criterion; `claimed` is the executor's tick, which proves nothing."""

    id: str
    text: str
    claimed: bool
    gates: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Deliverable:
    """A repository-relative path the OS promises to deliver."""

    path: PurePosixPath
    line: int


@dataclass(frozen=True, slots=True)
class Section:
    """A level-1 or level-2 section of the body; `kind` is None for headings the format ignores."""

    kind: SectionKind | None
    heading: str
    line: int
    markdown: str


@dataclass(frozen=True, slots=True)
class Body:
    """The markdown body: the title block before the first known section, then every section."""

    preamble: str
    sections: tuple[Section, ...]

    def section(self, kind: SectionKind) -> Section | None:
        return next((section for section in self.sections if section.kind is kind), None)

    def markdown(self, kind: SectionKind) -> str:
        section = self.section(kind)
        return section.markdown if section else ""

    @property
    def context(self) -> str:
        return self.markdown(SectionKind.CONTEXT)

    @property
    def execution(self) -> str:
        return self.markdown(SectionKind.EXECUTION)

    @property
    def deliverables(self) -> str:
        return self.markdown(SectionKind.DELIVERABLES)

    @property
    def criteria(self) -> str:
        return self.markdown(SectionKind.CRITERIA)

    @property
    def scope_notes(self) -> str:
        return self.markdown(SectionKind.SCOPE_NOTES)


@dataclass(frozen=True, slots=True)
class MutationPolicy:
    """The front matter's `mutation:` (all optional): at most `mutants` mutants per OS
    (0 turns mutation testing off), a fresh run bounded to `seconds`, the `threshold` (0 to 1)
    under which a criterion's mutation score makes it NÃO VERIFICADO (at 0, only a criterion
    whose scenarios killed none of their mutants is), and the criteria `exempt` from it."""

    mutants: int = 12
    seconds: float = 180.0
    threshold: float = 0.0
    exempt: tuple[str, ...] = ()
    """Criteria no mutant can speak for (a declarative choice no operator can change): not
    measured, and shown as exempt by the OS in its record."""

    def as_json(self) -> dict[str, object]:
        return {
            "mutants": self.mutants,
            "seconds": self.seconds,
            "threshold": self.threshold,
            "exempt": list(self.exempt),
        }


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """A valid OS spec.

    `path` is relative to the repository root when the file lies inside it, absolute otherwise.
    `key_lines` maps each front matter key to its line, so later checks can point at it.
    """

    path: Path
    sha256: str
    id: str
    number: int
    title: str
    project: str
    status: WorkOrderStatus
    executor: str
    repository: str
    branch: str
    scope: str
    date: datetime.date
    timezone: str
    endpoint: str | None
    gates: tuple[str, ...]
    features: tuple[PurePosixPath, ...]
    body: Body
    criteria: tuple[Criterion, ...]
    deliverables: tuple[Deliverable, ...]
    key_lines: Mapping[str, int] = field(default_factory=dict, hash=False, compare=False)
    mutation: MutationPolicy = field(default_factory=MutationPolicy)

    @property
    def short_id(self) -> str:
        """`OS-004`: the name feature files use for this OS."""
        return f"OS-{self.number:03d}"

    @property
    def tag(self) -> str:
        """`@OS-004`: the Gherkin tag of the scenarios that prove this OS."""
        return f"@{self.short_id}"

    def criterion(self, criterion_id: str) -> Criterion | None:
        return next((c for c in self.criteria if c.id == criterion_id), None)

    def line_of(self, key: str) -> int:
        """The line of a front matter key (1, the opening `---`, when the key is absent)."""
        return self.key_lines.get(key, 1)


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """The outcome of parsing one file: the document when it is valid, else its errors."""

    path: Path
    document: WorkOrder | None
    errors: tuple[DocumentError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors
