"""Front matter: split off with python-frontmatter, loaded with a hardened YAML loader.

Line numbers are the file's: the opening `---` is line 1, so a YAML mark on line `n` (0-based,
counted from that opening line) is file line `n + 1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import yaml
from frontmatter.default_handlers import YAMLHandler

from gates.orders import metadata
from gates.orders.metadata import EXAMPLES, FrontMatter, RawFrontMatter
from gates.orders.model import Problem

_HANDLER: Final = YAMLHandler(fm_boundary=re.compile(r"^---[ \t]*$", re.MULTILINE))
_BASE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


class _Loader(_BASE_LOADER):  # type: ignore[valid-type,misc]
    """The safe loader (libyaml when available) with the tag of each plain scalar memoised.

    Tag resolution is a pure function of the scalar while no path resolver is registered, and
    it is most of the Python work of loading a front matter block.
    """

    _tags: ClassVar[dict[tuple[str, tuple[bool, bool]], str]] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode or len(value) > 64:
            return str(super().resolve(kind, value, implicit))
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(self._tags) < 4096:
                self._tags[key] = tag
        return tag

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


_STR_TAG: Final = "tag:yaml.org,2002:str"
_NULL_TAG: Final = "tag:yaml.org,2002:null"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MAX_DEPTH: Final = 16
_CONSTRUCT_ERRORS: Final = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError)
_DECIMAL_PATTERN: Final = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class SplitText:
    """A document cut in two: the YAML between the `---` lines and the markdown after them.

    `body` starts with the rest of the closing `---` line, which is file line `body_first_line`.
    """

    yaml_text: str
    body: str
    body_first_line: int


@dataclass(frozen=True, slots=True)
class FrontMatterResult:
    """Validated front matter (None when invalid), each key's line, and the problems found."""

    front_matter: FrontMatter | None
    key_lines: dict[str, int]
    problems: list[Problem]


def split(text: str) -> SplitText | Problem:
    """Cut the front matter off `text`, or say why it has none."""
    fix = "start the file with a '---' line, the YAML keys, and a closing '---' line"
    if not _HANDLER.detect(text):
        return Problem(1, "no front matter: the file does not start with a '---' line", fix)
    try:
        yaml_text, body = _HANDLER.split(text)
    except ValueError:
        return Problem(1, "front matter is not closed: no second '---' line", fix)
    return SplitText(yaml_text, body, body_first_line=yaml_text.count("\n") + 1)


def parse(yaml_text: str) -> FrontMatterResult:
    """Load and validate the YAML of a front matter block; never raises for bad input."""
    problems: list[Problem] = []
    raw = _load(yaml_text, problems)
    if raw is None:
        return FrontMatterResult(None, {}, problems)
    front_matter, invalid = metadata.validate(raw)
    problems.extend(invalid)
    return FrontMatterResult(front_matter, raw.key_lines, sorted(problems, key=_by_line))


def _by_line(problem: Problem) -> int:
    return problem.line


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _load(yaml_text: str, problems: list[Problem]) -> RawFrontMatter | None:
    loader = _Loader(yaml_text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            problems.append(_yaml_problem(exc))
            return None
        if root is None:
            problems.append(
                Problem(1, "front matter is empty", "write the keys, see vault/README.md")
            )
            return None
        graph_problem = _graph_problem(root) if "&" in yaml_text else None
        if graph_problem:
            problems.append(graph_problem)
            return None
        if not isinstance(root, yaml.MappingNode):
            problems.append(
                Problem(
                    _line(root),
                    "front matter is not a mapping of keys to values",
                    "write one 'key: value' per line",
                )
            )
            return None
        return _construct(loader, root, problems)
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    mark_line = getattr(mark, "line", None)
    line = mark_line + 1 if isinstance(mark_line, int) else 1
    detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Problem(line, f"front matter is not valid YAML: {detail}", "correct the YAML syntax")


def _graph_problem(root: yaml.Node) -> Problem | None:
    """Refuse aliases (shared nodes) and deep nesting before anything is constructed.

    Only needed when the text has an `&`: an alias without an anchor does not compose.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int, int]] = [(root, 0, _line(root))]
    while stack:
        node, depth, line = stack.pop()
        if id(node) in seen:
            return Problem(
                line,
                "front matter uses a YAML alias (*name)",
                "write each value out in full; anchors and aliases are not allowed",
            )
        seen.add(id(node))
        if depth > _MAX_DEPTH:
            return Problem(line, "front matter is nested too deeply", "keep values flat")
        children: list[tuple[yaml.Node, int, int]] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                key_line = _line(key)
                children.extend(((key, depth + 1, key_line), (value, depth + 1, key_line)))
        elif isinstance(node, yaml.SequenceNode):
            children.extend((item, depth + 1, line) for item in node.value)
        stack.extend(reversed(children))
    return None


def _construct(loader: _Loader, root: yaml.MappingNode, problems: list[Problem]) -> RawFrontMatter:
    raw = RawFrontMatter({}, {}, {}, set())
    for key_node, value_node in root.value:
        line = _line(key_node)
        if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR_TAG):
            problems.append(
                Problem(line, "front matter key is not a name", "write keys as plain words")
            )
            continue
        key = str(key_node.value)
        if key in raw.key_lines:
            problems.append(
                Problem(
                    line,
                    f"front matter key '{key}' is repeated (first at line {raw.key_lines[key]})",
                    "keep one of them",
                )
            )
            continue
        raw.key_lines[key] = line
        if isinstance(value_node, yaml.SequenceNode):
            raw.item_lines[key] = [_line(item) for item in value_node.value]
        try:
            raw.values[key] = _value(loader, key, value_node)
        except _CONSTRUCT_ERRORS as exc:
            raw.unreadable.add(key)
            detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            problems.append(
                Problem(
                    _line(value_node),
                    f"front matter key '{key}' has a value YAML cannot read: {detail}",
                    f"write it like `{EXAMPLES.get(key, 'key: value')}`",
                )
            )
    return raw


def _value(loader: _Loader, key: str, node: yaml.Node) -> object:
    """Construct a value; `date` and `number` are read from their text, as YAML 1.1 misreads them
    (`2026-02-30` fails in the constructor, `010` is octal)."""
    if isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        if node.tag == _STR_TAG:
            return text
        if key == "date" and node.tag != _NULL_TAG:
            return text
        if key == "number" and not node.style and _DECIMAL_PATTERN.fullmatch(text):
            return int(text, 10)
    elif (
        isinstance(node, yaml.SequenceNode)
        and node.tag == _SEQ_TAG
        and all(_is_text(item) for item in node.value)
    ):
        return [str(item.value) for item in node.value]
    value: Any = loader.construct_object(node, deep=True)
    return value


def _is_text(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG
