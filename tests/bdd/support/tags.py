"""The tags of the feature files: found with their file and line, and checked for form.

pytest-bdd turns every tag into a pytest marker (`pytest_bdd_apply_tag` for scenario, rule and
feature tags; `getattr(pytest.mark, tag)` directly for Examples tags), so under
--strict-markers each tag must be a registered marker. Only work-order and criterion tags are
well formed: a stray `@skip` or `@xfail` would otherwise quietly stop a scenario from proving
anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

WELL_FORMED_TAG = re.compile(r"OS-\d{3}|AC-\d{2,}")
_DOCSTRING_FENCES = ('"""', "```")


@dataclass(frozen=True)
class Tag:
    name: str
    """Without the leading @, as pytest-bdd and the cucumber JSON report name it."""
    path: Path
    line: int

    @property
    def well_formed(self) -> bool:
        return WELL_FORMED_TAG.fullmatch(self.name) is not None

    def location(self, root: Path) -> str:
        try:
            shown = self.path.relative_to(root)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}"


def feature_files(features_dir: Path) -> list[Path]:
    return sorted(features_dir.rglob("*.feature"))


def tags_of(path: Path) -> Iterator[Tag]:
    """Every tag written in a feature file (tag lines hold tags and, at most, a comment)."""
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(_DOCSTRING_FENCES):
            fence = stripped[:3]
            continue
        if not stripped.startswith("@"):
            continue
        for word in stripped.split():
            if word.startswith("#"):
                break
            yield Tag(word.removeprefix("@"), path, number)


def feature_tags(features_dir: Path) -> list[Tag]:
    return [tag for path in feature_files(features_dir) for tag in tags_of(path)]
