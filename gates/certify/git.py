"""What git says about the repository: the commit, the branch, the uncommitted changes, and
a clean checkout of a commit for the gates to run in."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gates.exceptions import GitError


@dataclass(frozen=True, slots=True)
class Checkout:
    """The commit a certification is bound to, and what in the tree differs from it."""

    commit: str
    branch: str
    changes: tuple[PurePosixPath, ...]

    @property
    def short(self) -> str:
        return self.commit[:12]


def run_git(root: Path, *args: str) -> bytes:
    """`git ARGS` in `root`: its standard output, as bytes. `GitError` when git is missing,
    fails (with the first line of its error) or does not answer within 60 s."""
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise GitError("git is not installed; gates binds each record to a commit") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} did not answer within 60 s") from None
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", errors="replace")
        reason = (stderr.strip().splitlines() or ["unknown error"])[0]
        raise GitError(f"git {' '.join(args)}: {reason}")
    return result.stdout


def _git(root: Path, *args: str) -> str:
    return run_git(root, *args).decode("utf-8", errors="replace")


def read_checkout(root: Path) -> Checkout:
    """The HEAD commit, its branch, and every changed or untracked (not ignored) path."""
    commit = _git(root, "rev-parse", "--verify", "HEAD^{commit}").strip()
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    changes: list[PurePosixPath] = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        changes.append(PurePosixPath(path))
        if "R" in code or "C" in code:
            next(entries, None)  # the rename's source path follows
    return Checkout(commit=commit, branch=branch, changes=tuple(sorted(set(changes))))


def exists_at_commit(root: Path, commit: str, path: PurePosixPath) -> bool:
    """Whether `path` is a file (blob) in `commit`."""
    try:
        kind = _git(root, "cat-file", "-t", f"{commit}:{path.as_posix()}").strip()
    except GitError:
        return False
    return kind == "blob"


def is_repository(root: Path) -> bool:
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").strip() == "true"
    except GitError:
        return False


@contextmanager
def commit_tree(root: Path, commit: str) -> Iterator[Path]:
    """A clean checkout of `commit` in a temporary folder (a detached `git worktree`), removed
    on the way out: it holds what the commit holds and nothing else (no untracked, ignored or
    staged file, no uncommitted edit), so that the gates run on the commit alone."""
    _remove_abandoned(root)
    scratch = Path(tempfile.mkdtemp(prefix="gates-commit-"))
    tree = scratch / "tree"
    reason = f"{_LOCK_REASON}{os.getpid()}"
    try:
        _git(root, "worktree", "add", "--detach", "--lock", "--reason", reason, str(tree), commit)
        yield tree
    finally:
        with contextlib.suppress(GitError):  # twice forced: the checkout is locked
            _git(root, "worktree", "remove", "--force", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)


_LOCK_REASON = "gates certify, pid "


def _remove_abandoned(root: Path) -> None:
    """Remove the checkouts of `gates certify` runs that were killed (their process is gone);
    a checkout of a run still going is left alone."""
    try:
        listing = _git(root, "worktree", "list", "--porcelain")
    except GitError:
        return
    for block in listing.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines() if line)
        reason = fields.get("locked", "")
        if not reason.startswith(_LOCK_REASON) or not reason[len(_LOCK_REASON) :].isdigit():
            continue
        if _alive(int(reason[len(_LOCK_REASON) :])):
            continue
        tree = Path(fields["worktree"])
        with contextlib.suppress(GitError):
            _git(root, "worktree", "remove", "--force", "--force", str(tree))
        if tree.parent.name.startswith("gates-commit-"):
            shutil.rmtree(tree.parent, ignore_errors=True)
    with contextlib.suppress(GitError):
        _git(root, "worktree", "prune")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tree_of(root: Path, commit: str) -> str:
    """The id of `commit`'s git tree: its content, whatever its message, author or parents."""
    return _git(root, "rev-parse", "--verify", f"{commit}^{{tree}}").strip()
