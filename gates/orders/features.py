"""Feature files, read statically: which scenarios exist and which tags they carry.

The runner needs this before and independently of any test run: it tells what each criterion
is supposed to be proved by, so a scenario that never ran is seen as missing, not forgotten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gherkin.errors import CompositeParserException, ParserError
from gherkin.parser import Parser
from gherkin.token_scanner import TokenScanner

OS_TAG = re.compile(r"^@OS-(\d{3,})$")
CRITERION_TAG = re.compile(r"^@(AC-\d{2,})$")
MAX_FEATURE_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A scenario as written: its feature file, name, line, tags (feature's included)."""

    feature: PurePosixPath
    name: str
    line: int
    tags: frozenset[str]
    examples: int

    @property
    def criteria(self) -> tuple[str, ...]:
        """The criterion IDs its tags name, e.g. ("AC-01", "AC-03")."""
        return tuple(sorted(m.group(1) for t in self.tags if (m := CRITERION_TAG.match(t))))

    @property
    def work_orders(self) -> tuple[str, ...]:
        """The OS tags it carries, e.g. ("OS-004",)."""
        return tuple(sorted(t[1:] for t in self.tags if OS_TAG.match(t)))

    @property
    def ref(self) -> str:
        return f"{self.feature}:{self.line}"


@dataclass(frozen=True, slots=True)
class FeatureProblem:
    """A feature file that is missing or does not parse."""

    feature: PurePosixPath
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.feature}:{self.line}: {self.message}"


def read_feature(root: Path, feature: PurePosixPath) -> list[ScenarioSpec] | FeatureProblem:
    """Parse one feature file (repository-relative) into its scenarios."""
    path = root / feature
    if path.is_symlink() or not path.is_file():
        return FeatureProblem(feature, 0, "feature file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return FeatureProblem(feature, 0, f"cannot read the feature file: {exc.strerror}")
    if len(raw) > MAX_FEATURE_BYTES:
        return FeatureProblem(feature, 0, f"feature file larger than {MAX_FEATURE_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return FeatureProblem(feature, line, "feature file is not valid UTF-8")
    try:
        document = Parser().parse(TokenScanner(text.replace("\r\n", "\n")))
    except (CompositeParserException, ParserError) as exc:
        return FeatureProblem(feature, _first_error_line(exc), _first_error(exc))
    node: dict[str, Any] = dict(document.get("feature") or {})
    return _scenarios(feature, node)


def _scenarios(feature: PurePosixPath, node: dict[str, Any]) -> list[ScenarioSpec]:
    inherited = frozenset(tag["name"] for tag in node.get("tags", []))
    found: list[ScenarioSpec] = []
    for child in node.get("children", []):
        if "rule" in child:
            rule = child["rule"]
            rule_tags = inherited | {tag["name"] for tag in rule.get("tags", [])}
            found.extend(
                _scenario(feature, grandchild["scenario"], rule_tags)
                for grandchild in rule.get("children", [])
                if "scenario" in grandchild
            )
        elif "scenario" in child:
            found.append(_scenario(feature, child["scenario"], inherited))
    return found


def _scenario(
    feature: PurePosixPath, scenario: dict[str, Any], inherited: frozenset[str]
) -> ScenarioSpec:
    tags = inherited | {tag["name"] for tag in scenario.get("tags", [])}
    # Distinct example rows: pytest-bdd runs an outline once per row, and two equal rows of the
    # same columns are one example.
    examples = len(
        {
            tuple(
                zip(
                    (cell["value"] for cell in table.get("tableHeader", {}).get("cells", [])),
                    (cell["value"] for cell in row.get("cells", [])),
                    strict=False,
                )
            )
            for table in scenario.get("examples", [])
            for row in table.get("tableBody", [])
        }
    )
    return ScenarioSpec(
        feature=feature,
        name=scenario.get("name", ""),
        line=int(scenario["location"]["line"]),
        tags=frozenset(tags),
        examples=examples,
    )


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or [exc]
    message = str(errors[0]).strip().splitlines()[0]
    return f"the feature does not parse: {message}"


def _first_error_line(exc: Exception) -> int:
    errors = getattr(exc, "errors", None) or [exc]
    location = getattr(errors[0], "location", None) or {}
    line = location.get("line", 0) if isinstance(location, dict) else 0
    return int(line or 0)
