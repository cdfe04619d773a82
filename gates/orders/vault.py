"""The vault: the repository root, the OS specs it holds, and the checks across them."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gates.exceptions import InputNotFound, RepositoryRootNotFound
from gates.orders.documents import ParsedDocument, parse_work_order
from gates.orders.model import DocumentError, WorkOrder


@dataclass(frozen=True, slots=True, eq=False)
class Vault:
    """Valid documents by id, in path order, and every error of every document checked."""

    root: Path
    documents: Mapping[str, WorkOrder]
    errors: tuple[DocumentError, ...]
    checked: int

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def failing(self) -> int:
        """How many documents have at least one error."""
        return len({error.path for error in self.errors})


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding vault/ and pyproject.toml or .git."""
    start = Path(os.path.abspath(start))
    for folder in (start, *start.parents):
        has_marker = (folder / "pyproject.toml").is_file() or (folder / ".git").exists()
        if has_marker and (folder / "vault").is_dir():
            return folder
    raise RepositoryRootNotFound(
        f"no repository root at or above {start} (a folder holding vault/ and "
        "pyproject.toml or .git); pass --root"
    )


def discover(root: Path) -> list[Path]:
    """Every OS spec of the vault: vault/<project>/os/<ID>.md."""
    return sorted((root / "vault").glob("*/os/*.md"))


def specs_under(folder: Path) -> list[Path]:
    """The OS specs in a folder: `*.md` files in folders named os/, the folder included."""
    found = set(folder.glob("**/os/*.md"))
    if folder.name == "os":
        found.update(folder.glob("*.md"))
    return sorted(found)


def expand(arguments: Sequence[Path]) -> list[Path]:
    """The files named on a command line, folders replaced by the specs they hold."""
    files: dict[str, Path] = {}
    for argument in arguments:
        if not os.path.lexists(argument):
            raise InputNotFound(f"{argument}: no such file or folder")
        if argument.is_dir():
            found = specs_under(argument)
            if not found:
                raise InputNotFound(
                    f"{argument}: no OS spec in this folder (specs are *.md files in folders "
                    "named os/)"
                )
        else:
            found = [argument]
        for path in found:
            files.setdefault(os.path.abspath(path), path)
    return list(files.values())


def load_vault(root: Path) -> Vault:
    """Parse every OS spec of the vault under `root`, check them against each other, and check
    that the vault holds no input of a gate (see `gate_inputs`)."""
    vault = load_documents(discover(root), root=root)
    misplaced = gate_inputs(root) + _features_inside(root, vault.documents.values())
    if not misplaced:
        return vault
    return Vault(vault.root, vault.documents, (*vault.errors, *misplaced), vault.checked)


# What pytest, pytest-bdd and Python read, and so what could change a gate run from inside the
# vault, whose changes do not count as changes of the code (only specs and records live there).
_GATE_INPUT_NAMES = frozenset(
    {"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml", "noxfile.py"}
)
_GATE_INPUT_SUFFIXES = frozenset({".py", ".pyc", ".pth", ".feature"})


def gate_inputs(root: Path) -> list[DocumentError]:
    """An error for each file under vault/ that a gate would read: Python modules (a conftest
    included), pytest and Python configuration, and feature files."""
    vault = root / "vault"
    found = []
    for path in sorted(vault.rglob("*")) if vault.is_dir() else []:
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        if path.name in _GATE_INPUT_NAMES or path.suffix in _GATE_INPUT_SUFFIXES:
            found.append(
                DocumentError(
                    path.relative_to(root),
                    1,
                    "an input of the gates inside the vault (a module, a conftest, a "
                    "configuration or a feature file): the vault holds OS specs and closure "
                    "records only",
                    "move it out of vault/ (features/ for feature files, tests/ for step code)",
                )
            )
    return found


def _features_inside(root: Path, orders: Iterable[WorkOrder]) -> list[DocumentError]:
    return [
        DocumentError(
            order.path,
            order.line_of("features"),
            f"the feature file {feature.as_posix()} is inside the vault",
            "keep feature files outside vault/ (e.g. in features/)",
        )
        for order in orders
        for feature in order.features
        if feature.parts and feature.parts[0] == "vault"
    ]


def load_documents(
    paths: Iterable[Path],
    *,
    root: Path,
    parse_all: Callable[[Iterable[Path]], Iterable[ParsedDocument]] | None = None,
) -> Vault:
    """Parse the given specs and check them against each other (ids and numbers unique).

    `parse_all` parses the files in order, e.g. in other processes; by default one by one here.
    """
    if parse_all is None:
        parse_all = functools.partial(map, functools.partial(parse_work_order, root=root))
    documents: dict[str, WorkOrder] = {}
    by_number: dict[int, WorkOrder] = {}
    errors: list[DocumentError] = []
    checked = 0
    with _no_cycle_collection():
        for parsed in parse_all(paths):
            checked += 1
            errors.extend(parsed.errors)
            order = parsed.document
            if order is None:
                continue
            clash = _clash(order, documents, by_number)
            if clash:
                errors.append(clash)
                continue
            documents[order.id] = order
            by_number[order.number] = order
    return Vault(root, documents, tuple(errors), checked)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cycle collector while parsing.

    Parsing allocates many small objects that live on and makes no reference cycles, so the
    collector only rescans a growing heap: on a vault of 10,000 specs it took a quarter of the
    time and made the cost grow faster than the vault.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _clash(
    order: WorkOrder, documents: Mapping[str, WorkOrder], by_number: Mapping[int, WorkOrder]
) -> DocumentError | None:
    first = documents.get(order.id)
    if first:
        return DocumentError(
            order.path,
            order.line_of("id"),
            f"duplicate OS id {order.id} (first in {first.path.as_posix()}:{first.line_of('id')})",
            "give each OS its own id; a copy of an OS must not stay in the vault",
        )
    first = by_number.get(order.number)
    if first:
        return DocumentError(
            order.path,
            order.line_of("number"),
            f"OS number {order.number} ({order.tag}) is already used by {first.id} "
            f"({first.path.as_posix()}:{first.line_of('number')})",
            "give each OS its own number: feature files find an OS by its tag",
        )
    return None
