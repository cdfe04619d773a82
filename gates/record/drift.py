"""Drift since certification: what HEAD changed, after an OS's last certified commit, in the
files that OS is about (its deliverables, its feature files and the step modules).

PLAN.md's status block, which `gates certify` writes after the commit it certifies, is not a
change. A verdict is about one commit. When HEAD has moved and changed those files, the verdict says
nothing of the code that is there now: `gates status` and the report show it beside the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gates.certify.config import GatesConfig
from gates.certify.git import run_git
from gates.exceptions import GitError
from gates.orders.model import WorkOrder
from gates.record import plan


@dataclass(frozen=True, slots=True)
class Drift:
    """`files` changed between the certified commit and HEAD (`commits` commits touched them);
    `unknown` when git cannot compare them (the commit is not in this clone's history)."""

    certified: str
    head: str
    files: tuple[str, ...] = ()
    commits: int = 0
    unknown: bool = False

    @property
    def drifted(self) -> bool:
        return bool(self.files) or self.unknown

    def as_json(self) -> dict[str, object]:
        return {
            "certified": self.certified,
            "head": self.head,
            "files": list(self.files),
            "commits": self.commits,
            "unknown": self.unknown,
        }

    def describe(self) -> str:
        """One line, pt-BR, for the terminal and the report."""
        if self.unknown:
            return (
                f"o commit certificado {self.certified[:12]} não está no histórico deste clone: "
                "não dá para dizer o que mudou"
            )
        shown = ", ".join(self.files[:8]) + (" …" if len(self.files) > 8 else "")
        return (
            f"HEAD ({self.head[:12]}) mudou {len(self.files)} arquivo(s) desta OS em "
            f"{self.commits} commit(s) desde {self.certified[:12]}: {shown}"
        )


class DriftFinder:
    """Finds each OS's drift, asking git once per certified commit (many OSes share one)."""

    def __init__(self, root: Path, config: GatesConfig) -> None:
        self.root = root
        self.steps = tuple(step.as_posix() for step in config.steps)
        self.head = self._git("rev-parse", "--verify", "HEAD^{commit}")
        self._changed: dict[str, tuple[str, ...] | None] = {}

    def _git(self, *args: str) -> str | None:
        """git's output, stripped; `None` when git cannot tell (the drift is then unknown)."""
        try:
            return run_git(self.root, *args).decode("utf-8", errors="replace").strip()
        except GitError:
            return None

    def _changed_since(self, commit: str) -> tuple[str, ...] | None:
        if commit not in self._changed:
            listing = self._git("diff", "--name-only", "--no-renames", "-z", commit, "HEAD")
            self._changed[commit] = (
                None if listing is None else tuple(p for p in listing.split("\0") if p)
            )
        return self._changed[commit]

    def drift(self, order: WorkOrder, commit: str | None) -> Drift | None:
        """The drift of `order` certified at `commit`; `None` when it was never certified, or
        the folder is not a git repository."""
        if commit is None or self.head is None:
            return None
        changed = self._changed_since(commit)
        if changed is None:
            return Drift(certified=commit, head=self.head, unknown=True)
        watched = _watched(order, self.steps)
        files = tuple(
            path
            for path in changed
            if _matches(path, watched)
            and not (path == plan.PLAN and plan.only_block_differs(self.root, commit, "HEAD"))
        )
        if not files:
            return Drift(certified=commit, head=self.head)
        count = self._git("rev-list", "--count", f"{commit}..HEAD", "--", *files)
        return Drift(
            certified=commit,
            head=self.head,
            files=files,
            commits=int(count) if count and count.isdigit() else 0,
        )


def _watched(order: WorkOrder, steps: Iterable[str]) -> tuple[str, ...]:
    return (
        *(d.path.as_posix() for d in order.deliverables),
        *(f.as_posix() for f in order.features),
        *steps,
    )


def _matches(path: str, watched: Iterable[str]) -> bool:
    candidate = PurePosixPath(path)
    return any(
        candidate == PurePosixPath(w) or PurePosixPath(w) in candidate.parents for w in watched
    )
