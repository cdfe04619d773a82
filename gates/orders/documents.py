"""Parsing an OS spec file into a `WorkOrder`, collecting every problem instead of raising.

Each document costs one read, one YAML parse and one scan of its lines. Layout rules (the file
name is the id, the folder is the project) apply only to files in `vault/<project>/os/` under the
root; a file elsewhere, such as a draft written by `gates import-closure`, is checked for content.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from gates.catalog import GATE_NAMES
from gates.orders import body, front_matter, metadata
from gates.orders.model import (
    Criterion,
    Deliverable,
    DocumentError,
    MutationPolicy,
    ParsedDocument,
    Problem,
    WorkOrder,
    WorkOrderStatus,
)

__all__ = [
    "MAX_FILE_BYTES",
    "Criterion",
    "Deliverable",
    "DocumentError",
    "Location",
    "ParsedDocument",
    "WorkOrder",
    "WorkOrderStatus",
    "decode_text",
    "locate",
    "parse_work_order",
    "parse_work_order_bytes",
]

MAX_FILE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Location:
    """Where a document sits: its display path and, inside `vault/<project>/os/`, the project."""

    path: Path
    inside_root: bool
    vault_project: str | None


def locate(path: Path, root: Path) -> Location:
    """Place `path` relative to `root` without following symbolic links."""
    absolute = os.path.abspath(path)
    root_prefix = os.path.join(os.path.abspath(root), "")
    if not absolute.startswith(root_prefix):
        return Location(Path(absolute), inside_root=False, vault_project=None)
    parts = absolute[len(root_prefix) :].split(os.sep)
    in_vault = len(parts) == 4 and parts[0] == "vault" and parts[2] == "os"
    return Location(Path(*parts), inside_root=True, vault_project=parts[1] if in_vault else None)


def parse_work_order(path: Path, *, root: Path) -> ParsedDocument:
    """Read and parse one OS spec; every problem comes back as a `DocumentError`."""
    location = locate(path, root)
    data = _read(path, location, root)
    if isinstance(data, Problem):
        return ParsedDocument(location.path, None, (data.at(location.path),))
    return _parse(data, location, path.name)


def parse_work_order_bytes(data: bytes, *, path: Path, root: Path | None) -> ParsedDocument:
    """Parse the content of a file that lives (or will live) at `path`.

    With `root` None the layout rules are skipped and `path` is only used to name the file.
    """
    location = locate(path, root) if root else Location(path, False, None)
    return _parse(data, location, path.name)


def _read(path: Path, location: Location, root: Path) -> bytes | Problem:
    if location.inside_root and _is_linked(path, location, root):
        try:
            target = path.resolve()
            outside = not target.is_relative_to(root.resolve())
        except (OSError, RuntimeError):
            return Problem(1, "symbolic link cannot be resolved", "replace it with the file")
        if outside:
            return Problem(
                1,
                f"symbolic link points outside the repository ({target})",
                "put the file itself inside the repository; links out of it are never followed",
            )
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return Problem(1, f"cannot read the file: {exc.strerror or exc}", "check the path")
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return Problem(1, "not a regular file", "an OS spec must be a plain .md file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(descriptor, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        return Problem(1, f"cannot read the file: {exc.strerror or exc}", "check the path")
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def _is_linked(path: Path, location: Location, root: Path) -> bool:
    """Whether the file, or a folder between the root and it, is a symbolic link."""
    if os.path.islink(path):
        return True
    folder = os.path.abspath(root)
    for part in location.path.parts[:-1]:
        folder = os.path.join(folder, part)
        if os.path.islink(folder):
            return True
    return False


def decode_text(data: bytes) -> str | Problem:
    """UTF-8 text with the BOM dropped and LF line ends, or the first undecodable byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        return Problem(
            data.count(b"\n", 0, exc.start) + 1,
            f"invalid UTF-8 byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
            f"(column {exc.start - line_start + 1})",
            "save the file as UTF-8",
        )
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _parse(data: bytes, location: Location, file_name: str) -> ParsedDocument:
    order, problems = _build(data, location, file_name)
    problems.sort(key=lambda problem: (problem.line, problem.message))
    return ParsedDocument(
        location.path, order, tuple(problem.at(location.path) for problem in problems)
    )


def _build(
    data: bytes, location: Location, file_name: str
) -> tuple[WorkOrder | None, list[Problem]]:
    if len(data) > MAX_FILE_BYTES:
        return None, [
            Problem(
                1,
                f"file too large: more than {MAX_FILE_BYTES} bytes",
                "keep an OS spec under 1 MiB; move long material to other files",
            )
        ]
    text = decode_text(data)
    if isinstance(text, Problem):
        return None, [text]
    parts = front_matter.split(text)
    if isinstance(parts, Problem):
        return None, [parts]
    meta = front_matter.parse(parts.yaml_text)
    content = body.parse(parts.body.split("\n"), parts.body_first_line)
    problems = meta.problems + content.problems
    fm = meta.front_matter
    if fm is None:
        return None, problems
    problems.extend(_cross_problems(fm, meta.key_lines, content.criteria, location, file_name))
    if problems:
        return None, problems
    order = WorkOrder(
        path=location.path,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        id=fm.id,
        number=fm.number,
        title=fm.title,
        project=fm.project,
        status=fm.status,
        executor=fm.executor,
        repository=fm.repository,
        branch=fm.branch,
        scope=fm.scope,
        date=fm.date,
        timezone=fm.timezone,
        endpoint=fm.endpoint,
        gates=tuple(fm.gates),
        features=tuple(PurePosixPath(feature) for feature in fm.features),
        body=content.body,
        criteria=content.criteria,
        deliverables=content.deliverables,
        key_lines=meta.key_lines,
        mutation=_mutation_policy(fm.mutation),
    )
    return order, []


def _mutation_policy(settings: metadata.MutationSettings | None) -> MutationPolicy:
    if settings is None:
        return MutationPolicy()
    return MutationPolicy(
        settings.mutants, settings.seconds, settings.threshold, tuple(settings.exempt)
    )


def _cross_problems(
    fm: metadata.FrontMatter,
    key_lines: dict[str, int],
    criteria: tuple[Criterion, ...],
    location: Location,
    file_name: str,
) -> list[Problem]:
    problems: list[Problem] = []
    id_match = metadata.ID_PATTERN.fullmatch(fm.id)
    if id_match and int(id_match.group("number")) != fm.number:
        problems.append(
            Problem(
                key_lines.get("number", 1),
                f"number {fm.number} does not match the id, which ends in "
                f"-{id_match.group('number')}",
                "make the number the last part of the id (…-004 is number: 4)",
            )
        )
    if location.vault_project is not None:
        if file_name != f"{fm.id}.md":
            problems.append(
                Problem(
                    key_lines.get("id", 1),
                    f"id {fm.id} does not match the file name {file_name}",
                    f"rename the file to {fm.id}.md or correct the id",
                )
            )
        if fm.project != location.vault_project:
            problems.append(
                Problem(
                    key_lines.get("project", 1),
                    f"project '{fm.project}' does not match the folder "
                    f"vault/{location.vault_project}/",
                    f"write project: {location.vault_project}, or move the file to "
                    f"vault/{fm.project}/os/",
                )
            )
    required = set(fm.gates)
    for criterion in criteria:
        for gate in dict.fromkeys(criterion.gates):
            if gate and gate not in required and gate in GATE_NAMES:
                problems.append(
                    Problem(
                        criterion.line,
                        f"criterion {criterion.id} relies on gate '{gate}', "
                        "which the OS does not require",
                        "add the gate to the front matter 'gates' list, "
                        "or drop it from the criterion",
                    )
                )
    return problems
