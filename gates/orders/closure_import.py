"""Turning a legacy closure document (the seed's shape) into an OS spec in the vault format.

The legacy shape has no front matter: its facts are bold `**Label:** value` lines in the title
block and in Execução; its criteria have no IDs and arrive ticked. The import moves the facts into
front matter, gives the criteria IDs in order (the ticks stay, as the executor's claim), marks a
"Gates PASS" criterion as proved by the gates, and leaves out Evidências, Decisão Final and
Registro no Vault, which only a closure record may hold.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from gates.catalog import DEFAULT_TIMEZONE, GATE_NAMES
from gates.exceptions import ClosureImportError, InputNotFound
from gates.orders import body, front_matter, metadata
from gates.orders.documents import MAX_FILE_BYTES, decode_text, parse_work_order_bytes
from gates.orders.model import Criterion, DocumentError, Problem, SectionKind, WorkOrderStatus

_FIELD: Final = re.compile(
    r"[ \t]*(?:[-*+][ \t]+)?\*\*(?P<label>[^*\n]+?)[ \t]*:?[ \t]*\*\*:?[ \t]*(?P<value>.*)"
)
_CHECKBOX_LINE: Final = re.compile(
    r"(?P<prefix>[ \t]*(?:[-*+]|[0-9]{1,9}[.)])[ \t]+\[[ xX]\])(?P<rest>.*)"
)
_DATE: Final = re.compile(r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:[ \t]*\((?P<zone>[^)]+)\))?")
_VAULT_PATH: Final = re.compile(r"vault/(?P<project>[a-z0-9][a-z0-9-]*)/os/")
_TRAILING_PARENTHETICAL: Final = re.compile(r"[ \t]*\([^)]*\)[ \t]*$")
_HEADING_LINE: Final = re.compile(r" {0,3}(?P<hashes>#{1,2})[ \t]+(?P<text>.*?)[ \t]*")

_LABELS: Final = {
    "os id": "id",
    "id": "id",
    "projeto": "project_name",
    "project": "project_name",
    "status": "status",
    "executor": "executor",
    "repositorio": "repository",
    "repository": "repository",
    "branch": "branch",
    "escopo": "scope",
    "scope": "scope",
    "data": "date",
    "date": "date",
    "endpoint final": "endpoint",
    "endpoint": "endpoint",
}
_MOVED_FROM_TITLE_BLOCK: Final = frozenset({"id", "project_name", "status"})
_REQUIRED: Final = {
    "id": "**OS ID:**",
    "executor": "**Executor:**",
    "repository": "**Repositório:**",
    "branch": "**Branch:**",
    "scope": "**Escopo:**",
    "date": "**Data:**",
}


@dataclass(frozen=True, slots=True)
class ImportedSpec:
    """The spec text an import produced, and what `gates lint` finds in it (content rules)."""

    id: str
    text: str
    criteria: tuple[Criterion, ...]
    errors: tuple[DocumentError, ...]


def import_closure(
    source: Path,
    *,
    project: str | None = None,
    gates: Sequence[str] = GATE_NAMES,
    features: Sequence[str] | None = None,
) -> ImportedSpec:
    """Read a legacy closure document and write its spec; raises `ClosureImportError`."""
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputNotFound(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ClosureImportError(f"{source}: file too large (more than {MAX_FILE_BYTES} bytes)")
    text = decode_text(data)
    if isinstance(text, Problem):
        raise ClosureImportError(f"{source}:{text.line}: {text.message}")
    return convert_closure(text, source=source, project=project, gates=gates, features=features)


def convert_closure(
    text: str,
    *,
    source: Path,
    project: str | None = None,
    gates: Sequence[str] = GATE_NAMES,
    features: Sequence[str] | None = None,
) -> ImportedSpec:
    """Convert the text of a legacy closure document; `source` names it in messages."""
    if isinstance(front_matter.split(text), front_matter.SplitText):
        raise ClosureImportError(
            f"{source}: already has front matter; it is a spec, not a legacy closure document"
        )
    lines = text.split("\n")
    scanned = body.scan(lines, 1)
    facts, fact_lines = _facts(scanned)
    missing = [label for key, label in _REQUIRED.items() if not facts.get(key)]
    if missing:
        raise ClosureImportError(
            f"{source}: no {', '.join(missing)} line (a spec needs these facts)"
        )
    spec_id = facts["id"]
    id_match = metadata.ID_PATTERN.fullmatch(spec_id)
    if not id_match:
        raise ClosureImportError(f"{source}: '{spec_id}' is not an OS id such as OS-X-20260103-004")
    number = int(id_match.group("number"))
    criteria_block = scanned.first(SectionKind.CRITERIA)
    if criteria_block is None:
        raise ClosureImportError(f"{source}: no Critérios de Aceite section")
    date_match = _DATE.match(facts["date"])
    try:
        date = datetime.date.fromisoformat(date_match.group("date") if date_match else "")
    except ValueError:
        raise ClosureImportError(
            f"{source}: '{facts['date']}' is not a date written YYYY-MM-DD"
        ) from None
    zone = date_match.group("zone") if date_match else None
    fields: dict[str, object] = {
        "id": spec_id,
        "number": number,
        "title": _title(scanned, spec_id),
        "project": project or _project(scanned, facts.get("project_name", "")),
        "status": _status(facts.get("status", "")).value,
        "executor": facts["executor"],
        "repository": facts["repository"],
        "branch": facts["branch"],
        "scope": facts["scope"],
        "date": date,
        "timezone": (zone or DEFAULT_TIMEZONE).strip(),
    }
    if facts.get("endpoint"):
        fields["endpoint"] = facts["endpoint"]
    fields["gates"] = list(gates)
    fields["features"] = list(features or [f"features/os_{number:03d}.feature"])
    rewritten = _rewrite_criteria(scanned, criteria_block, gates)
    if not rewritten:
        raise ClosureImportError(f"{source}: the Critérios de Aceite section has no checkbox")
    spec_text = _render(fields, lines, scanned, fact_lines, rewritten)
    parsed = parse_work_order_bytes(
        spec_text.encode("utf-8"), path=Path(f"{spec_id}.md"), root=None
    )
    criteria = parsed.document.criteria if parsed.document else ()
    return ImportedSpec(spec_id, spec_text, criteria, parsed.errors)


def _fold(label: str) -> str:
    decomposed = unicodedata.normalize("NFKD", label.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def _clean(value: str) -> str:
    value = value.strip()
    if len(value) > 1 and value.startswith("`") and value.endswith("`"):
        value = value[1:-1].strip()
    return value


def _facts(scanned: body.Scan) -> tuple[dict[str, str], set[int]]:
    """The bold `**Label:** value` facts of the title block and Execução, first one wins."""
    facts: dict[str, str] = {}
    title_block_lines: set[int] = set()
    execution = scanned.first(SectionKind.EXECUTION)
    sources = [*scanned.preamble, *(scanned.lines_of(execution) if execution else [])]
    preamble_numbers = {source.number for source in scanned.preamble}
    for source in sources:
        match = None if source.in_fence else _FIELD.fullmatch(source.text)
        if not match:
            continue
        key = _LABELS.get(_fold(match.group("label")))
        if key is None or key in facts:
            continue
        facts[key] = _clean(match.group("value"))
        if key in _MOVED_FROM_TITLE_BLOCK and source.number in preamble_numbers:
            title_block_lines.add(source.number)
    return facts, title_block_lines


def _title(scanned: body.Scan, spec_id: str) -> str:
    """The title block's `##` subtitle without its "(OS 004)", else the `#` title after "—"."""
    title = subtitle = ""
    for source in scanned.preamble:
        match = None if source.in_fence else _HEADING_LINE.fullmatch(source.text)
        if match is None:
            continue
        if len(match.group("hashes")) == 2:
            subtitle = subtitle or match.group("text")
        else:
            title = title or match.group("text")
    if subtitle:
        return _TRAILING_PARENTHETICAL.sub("", subtitle) or spec_id
    return title.split("—")[-1].strip() or spec_id


def _project(scanned: body.Scan, project_name: str) -> str:
    record = scanned.first(SectionKind.VAULT_RECORD)
    for source in scanned.lines_of(record) if record else []:
        match = _VAULT_PATH.search(source.text)
        if match:
            return match.group("project")
    slug = re.sub(r"[^a-z0-9]+", "-", _fold(project_name)).strip("-")
    if not slug:
        raise ClosureImportError("no project found: pass --project, e.g. --project aurora-crm")
    return slug


def _status(claimed: str) -> WorkOrderStatus:
    folded = _fold(claimed)
    if "conclu" in folded:
        return WorkOrderStatus.DECLARED_DONE
    if "execu" in folded or "andamento" in folded:
        return WorkOrderStatus.IN_PROGRESS
    return WorkOrderStatus.DRAFT


def _rewrite_criteria(
    scanned: body.Scan, block: body.Block, gates: Sequence[str]
) -> dict[int, str]:
    """The criterion lines with IDs (and a gates list for "Gates PASS"), by line number."""
    items: list[tuple[int, str, str]] = []
    used: set[str] = set()
    for source in scanned.lines_of(block):
        match = None if source.in_fence else _CHECKBOX_LINE.fullmatch(source.text)
        if match:
            rest = match.group("rest").strip()
            items.append((source.number, match.group("prefix"), rest))
            used.add(_existing_id(rest))
    rewritten: dict[int, str] = {}
    counter = 0
    for number, prefix, rest in items:
        text = rest
        if not _existing_id(rest):
            counter += 1
            while f"AC-{counter:02d}" in used:
                counter += 1
            text = f"**AC-{counter:02d}** {rest}"
        folded = _fold(rest)
        if "gate" in folded and "pass" in folded and "(gates:" not in folded and gates:
            text += f" (gates: {', '.join(gates)})"
        rewritten[number] = f"{prefix} {text}"
    return rewritten


def _existing_id(criterion: str) -> str:
    """The criterion's ID when it already starts with one (`**AC-03** ...`), else ""."""
    first_word = criterion.strip("*_ ").split(" ", 1)[0].rstrip(":*_")
    return first_word if body.CRITERION_ID.fullmatch(first_word) else ""


def _render(
    fields: dict[str, object],
    lines: Sequence[str],
    scanned: body.Scan,
    dropped_lines: set[int],
    criteria_lines: dict[int, str],
) -> str:
    out = [source.text for source in scanned.preamble if source.number not in dropped_lines]
    for block in scanned.blocks:
        if block.kind is not None and block.kind.output_only:
            continue
        out.append(lines[block.line - 1])
        out.extend(
            criteria_lines.get(source.number, source.text) for source in scanned.lines_of(block)
        )
    while out and (not out[-1].strip() or set(out[-1].strip()) == {"-"}):
        out.pop()
    while out and not out[0].strip():
        out.pop(0)
    yaml_text = yaml.safe_dump(
        fields, sort_keys=False, allow_unicode=True, default_flow_style=None, width=1000
    )
    return "---\n" + yaml_text + "---\n\n" + "\n".join(out) + "\n"
