"""The markdown body: sections, acceptance criteria and deliverables, from one scan of the lines.

Sections start at ATX headings of level 1 or 2 (`# ...`, `## ...`) outside code fences. A heading
is recognised by its words once emoji, numbering, accents and a trailing parenthetical are dropped:
`## 5️⃣ Critérios de Aceite (OS 004)` and `## Acceptance Criteria` are both the criteria section.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final, NamedTuple

from gates import paths
from gates.catalog import GATE_NAMES
from gates.orders.model import Body, Criterion, Deliverable, Problem, Section, SectionKind

_HEADING: Final = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_FENCE: Final = re.compile(r" {0,3}(`{3,}|~{3,})")
_RULE: Final = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_LIST_ITEM: Final = re.compile(r"(?P<indent>[ \t]*)(?:[-*+]|[0-9]{1,9}[.)])(?:[ \t]+(?P<rest>.*))?")
_CHECKBOX: Final = re.compile(r"\[(?P<mark>[ xX])\](?:[ \t]+(?P<text>.*)|[ \t]*)")
_CRITERION: Final = re.compile(
    r"(?:\*\*|__)?(?P<id>(?i:ac)[-_]?[0-9]+):?(?:\*\*|__)?:?(?:[ \t]+[—–:-]?[ \t]*|$)(?P<text>.*)"
)
CRITERION_ID: Final = re.compile(r"AC-[0-9]{2,}")
_GATES_SUFFIX: Final = re.compile(r"\([ \t]*gates[ \t]*:(?P<names>[^()]*)\)[ \t]*$", re.IGNORECASE)
_CODE_SPAN: Final = re.compile(r"`([^`\n]+)`")
_WHITESPACE: Final = re.compile(r"\s")
_BLOCK_STARTS: Final = "#`~ "
"""A line starting otherwise is neither a heading nor a code fence."""
_PARENTHETICAL: Final = re.compile(r"\([^)]*\)")
_NON_LETTERS: Final = re.compile(r"[^a-z]+")

PATH_SUFFIXES: Final = frozenset(
    (
        *(".py", ".pyi", ".md", ".toml", ".ini", ".cfg", ".feature", ".yaml", ".yml", ".json"),
        *(".txt", ".sql", ".html", ".css", ".mako", ".sh", ".csv", ".lock"),
    )
)
"""A code span without `/` is a deliverable path only when it ends in one of these."""

_SECTION_NAMES: Final = tuple(
    (tuple(name.split()), kind)
    for name, kind in (
        ("contexto", SectionKind.CONTEXT),
        ("context", SectionKind.CONTEXT),
        ("execucao", SectionKind.EXECUTION),
        ("execution", SectionKind.EXECUTION),
        ("entregaveis", SectionKind.DELIVERABLES),
        ("deliverables", SectionKind.DELIVERABLES),
        ("criterios de aceite", SectionKind.CRITERIA),
        ("criterios de aceitacao", SectionKind.CRITERIA),
        ("acceptance criteria", SectionKind.CRITERIA),
        ("observacoes de escopo", SectionKind.SCOPE_NOTES),
        ("scope notes", SectionKind.SCOPE_NOTES),
        ("evidencias", SectionKind.EVIDENCE),
        ("evidence", SectionKind.EVIDENCE),
        ("decisao final", SectionKind.FINAL_DECISION),
        ("final decision", SectionKind.FINAL_DECISION),
        ("registro no vault", SectionKind.VAULT_RECORD),
        ("vault record", SectionKind.VAULT_RECORD),
    )
)
_CRITERION_FORM: Final = "'- [ ] **AC-01** text' ('- [x]' when the executor claims it done)"


class SourceLine(NamedTuple):
    number: int
    text: str
    in_fence: bool


@dataclass(frozen=True, slots=True)
class Block:
    """A recognised section as scanned: its heading, then lines `start` to `stop` of the scan."""

    kind: SectionKind | None
    heading: str
    line: int
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class Scan:
    """Lines split into the title block (up to `preamble_stop`) and sections.

    `fenced` holds the indices of the lines inside code fences, fence lines included; line
    `lines[i]` is file line `first_line + i`.
    """

    lines: Sequence[str]
    first_line: int
    fenced: frozenset[int]
    preamble_stop: int
    blocks: tuple[Block, ...]
    problems: tuple[Problem, ...]

    def first(self, kind: SectionKind) -> Block | None:
        return next((block for block in self.blocks if block.kind is kind), None)

    def source(self, start: int, stop: int) -> list[SourceLine]:
        return [
            SourceLine(self.first_line + index, self.lines[index], index in self.fenced)
            for index in range(start, stop)
        ]

    def lines_of(self, block: Block) -> list[SourceLine]:
        return self.source(block.start, block.stop)

    @property
    def preamble(self) -> list[SourceLine]:
        return self.source(0, self.preamble_stop)

    def markdown(self, start: int, stop: int) -> str:
        """Lines `start` to `stop` without blank lines and horizontal rules at the edges."""
        lines = self.lines
        while start < stop and not lines[start].strip():
            start += 1
        while stop > start and (
            not lines[stop - 1].strip()
            or (stop - 1 not in self.fenced and _RULE.fullmatch(lines[stop - 1]))
        ):
            stop -= 1
        return "\n".join(lines[start:stop])


@dataclass(frozen=True, slots=True)
class BodyResult:
    body: Body
    criteria: tuple[Criterion, ...]
    deliverables: tuple[Deliverable, ...]
    problems: list[Problem]


def classify(heading: str) -> SectionKind | None:
    """The section a heading names, ignoring emoji, numbering, accents and case."""
    if heading.endswith(")"):
        heading = heading[: heading.rfind("(")]
    return _classify(heading)


@functools.lru_cache(maxsize=1024)
def _classify(heading: str) -> SectionKind | None:
    decomposed = unicodedata.normalize("NFKD", heading.casefold())
    folded = "".join(char for char in decomposed if not unicodedata.combining(char))
    words = _NON_LETTERS.sub(" ", _PARENTHETICAL.sub(" ", folded)).split()
    for names, kind in _SECTION_NAMES:
        if tuple(words[: len(names)]) == names:
            return kind
    return None


def scan(lines: Sequence[str], first_line: int) -> Scan:
    """Split lines into the title block and sections; `lines[0]` is file line `first_line`."""
    fenced: set[int] = set()
    heads: list[tuple[SectionKind | None, str, int]] = []
    problems: list[Problem] = []
    fence = ""
    fence_index = 0
    for index, text in enumerate(lines):
        if fence:
            fenced.add(index)
            stripped = text.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
            continue
        if not text or text[0] not in _BLOCK_STARTS:
            continue
        opener = _FENCE.match(text)
        if opener:
            fence, fence_index = opener.group(1), index
            fenced.add(index)
            continue
        heading = _HEADING.fullmatch(text)
        if heading and len(heading.group(1)) <= 2:
            title = (heading.group(2) or "").strip()
            kind = classify(title)
            if kind is not None or heads:
                heads.append((kind, title, index))
    if fence:
        problems.append(
            Problem(
                first_line + fence_index,
                "code fence is never closed",
                f"close it with a {fence} line",
            )
        )
    stops = [index for _, _, index in heads[1:]] + [len(lines)]
    blocks = tuple(
        Block(kind, title, first_line + index, index + 1, stops[position])
        for position, (kind, title, index) in enumerate(heads)
    )
    preamble_stop = heads[0][2] if heads else len(lines)
    return Scan(lines, first_line, frozenset(fenced), preamble_stop, blocks, tuple(problems))


def parse(lines: Sequence[str], first_line: int) -> BodyResult:
    """Read the sections, criteria and deliverables of a spec body."""
    scanned = scan(lines, first_line)
    problems = list(scanned.problems)
    problems.extend(_section_problems(scanned))
    criteria_block = scanned.first(SectionKind.CRITERIA)
    if criteria_block is None:
        last_line = first_line + max(len(lines) - 1, 0)
        problems.append(
            Problem(
                min(first_line + 1, last_line),
                "missing 'Critérios de Aceite' section",
                f"add a '## Critérios de Aceite' heading followed by {_CRITERION_FORM}",
            )
        )
        criteria: tuple[Criterion, ...] = ()
    else:
        criteria = _criteria(scanned, criteria_block, problems)
    deliverables_block = scanned.first(SectionKind.DELIVERABLES)
    deliverables = (
        _deliverables(scanned, deliverables_block, problems) if deliverables_block else ()
    )
    body = Body(
        preamble=scanned.markdown(0, scanned.preamble_stop),
        sections=tuple(
            Section(
                block.kind, block.heading, block.line, scanned.markdown(block.start, block.stop)
            )
            for block in scanned.blocks
        ),
    )
    return BodyResult(body, criteria, deliverables, problems)


def _section_problems(scanned: Scan) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[SectionKind, int] = {}
    for block in scanned.blocks:
        if block.kind is None:
            continue
        if block.kind.output_only:
            problems.append(
                Problem(
                    block.line,
                    f"section '{block.heading}' belongs in a closure record, not in a spec",
                    "remove it: Evidências, Decisão Final and Registro no Vault are written by "
                    "gates certify",
                )
            )
        elif block.kind in first_seen:
            problems.append(
                Problem(
                    block.line,
                    f"second '{block.kind.label}' section (first at line {first_seen[block.kind]})",
                    "merge the two sections into one",
                )
            )
        else:
            first_seen[block.kind] = block.line
    return problems


def _criteria(scanned: Scan, block: Block, problems: list[Problem]) -> tuple[Criterion, ...]:
    criteria: list[Criterion] = []
    first_at: dict[str, int] = {}
    checkboxes = 0
    for source in scanned.lines_of(block):
        if source.in_fence or _RULE.fullmatch(source.text):
            continue
        item = _LIST_ITEM.fullmatch(source.text)
        if not item:
            continue
        box = _CHECKBOX.fullmatch(item.group("rest") or "")
        if not box:
            if not item.group("indent"):
                problems.append(
                    Problem(
                        source.number,
                        "list item in 'Critérios de Aceite' is not a checkbox",
                        f"write each criterion as {_CRITERION_FORM}",
                    )
                )
            continue
        checkboxes += 1
        criterion = _criterion(source.number, box.group("mark") != " ", box.group("text") or "")
        if isinstance(criterion, Problem):
            problems.append(criterion)
            continue
        problems.extend(_gate_problems(criterion))
        if criterion.id in first_at:
            problems.append(
                Problem(
                    source.number,
                    f"duplicate criterion ID {criterion.id} "
                    f"(first at line {first_at[criterion.id]})",
                    "give each criterion its own ID",
                )
            )
            continue
        first_at[criterion.id] = source.number
        criteria.append(criterion)
    if not checkboxes:
        problems.append(
            Problem(
                block.line,
                f"section '{block.heading}' has no criteria",
                f"list the criteria as {_CRITERION_FORM}",
            )
        )
    return tuple(criteria)


def _criterion(line: int, claimed: bool, raw: str) -> Criterion | Problem:
    raw = raw.strip()
    match = _CRITERION.fullmatch(raw)
    if not match:
        return Problem(
            line,
            f"criterion has no ID: '{_shorten(raw)}'",
            f"start it with an ID unique in this OS, as in {_CRITERION_FORM}",
        )
    criterion_id = match.group("id")
    if not CRITERION_ID.fullmatch(criterion_id):
        return Problem(
            line,
            f"criterion ID '{criterion_id}' is malformed",
            "write AC- followed by two or more digits, e.g. AC-01",
        )
    text = match.group("text").strip()
    gates: tuple[str, ...] = ()
    suffix = _GATES_SUFFIX.search(text)
    if suffix:
        gates = tuple(name.strip() for name in suffix.group("names").split(","))
        text = text[: suffix.start()].rstrip()
    if not text:
        return Problem(
            line, f"criterion {criterion_id} has no text", "say what must be true, after the ID"
        )
    return Criterion(criterion_id, text, claimed, gates, line)


def _gate_problems(criterion: Criterion) -> list[Problem]:
    problems: list[Problem] = []
    names = [name for name in criterion.gates if name]
    if "" in criterion.gates:
        problems.append(
            Problem(
                criterion.line,
                f"criterion {criterion.id} has an empty gate name in its (gates: ...) list",
                "name the gates separated by commas, e.g. (gates: lint, tests)",
            )
        )
    for name in dict.fromkeys(names):
        if name not in GATE_NAMES:
            problems.append(
                Problem(
                    criterion.line,
                    f"criterion {criterion.id} names unknown gate '{name}'",
                    f"use the known gates: {', '.join(GATE_NAMES)}",
                )
            )
    if len(set(names)) != len(names):
        problems.append(
            Problem(
                criterion.line,
                f"criterion {criterion.id} names a gate twice",
                "name each gate once",
            )
        )
    return problems


def looks_like_path(code: str) -> bool:
    """Whether a code span names a repository path (see vault/README.md, Entregáveis)."""
    if not code or "://" in code or _WHITESPACE.search(code):
        return False
    if "/" in code:
        return True
    dot = code.rfind(".")
    return dot > 0 and code[dot:].lower() in PATH_SUFFIXES


def _deliverables(scanned: Scan, block: Block, problems: list[Problem]) -> tuple[Deliverable, ...]:
    found: dict[str, Deliverable] = {}
    for source in scanned.lines_of(block):
        if source.in_fence or "`" not in source.text:
            continue
        for span in _CODE_SPAN.finditer(source.text):
            code = span.group(1).strip()
            if not looks_like_path(code):
                continue
            normalized = paths.normalized(code)
            reason = paths.escape_reason(code, normalized)
            if reason:
                problems.append(
                    Problem(
                        source.number,
                        f"deliverable path '{code}' {reason}",
                        "write it relative to the repository root, e.g. crm_core/main.py; "
                        "for what is not a file, such as a route, write `POST /ingest/message` "
                        "or leave out the backticks",
                    )
                )
                continue
            if normalized not in found:
                found[normalized] = Deliverable(PurePosixPath(normalized), source.number)
    return tuple(found.values())


def _shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
