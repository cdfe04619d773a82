"""The front matter keys of an OS spec: the pydantic model, and its errors in plain words."""

from __future__ import annotations

import datetime
import difflib
import functools
import re
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from gates import paths
from gates.catalog import DEFAULT_TIMEZONE, GATE_NAMES
from gates.orders.model import Problem, WorkOrderStatus

ID_PATTERN: Final = re.compile(r"OS(?:-[A-Z0-9]+)*-(?P<number>[0-9]+)")
PROJECT_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9-]*")
ENDPOINT_PATTERN: Final = re.compile(r"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S*")
_DATE_PATTERN: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

EXAMPLES: Final = {
    "id": "id: OS-CODEX-AURORA-CRM-HEADLESS-GENESIS-20260103-004",
    "number": "number: 4",
    "title": "title: CRM Headless Genesis",
    "project": "project: aurora-crm",
    "status": "status: rascunho",
    "executor": "executor: CODEX / Copilot",
    "repository": "repository: aurora-crm",
    "branch": "branch: main",
    "scope": "scope: crm_core",
    "date": "date: 2026-01-03",
    "timezone": f"timezone: {DEFAULT_TIMEZONE}",
    "endpoint": "endpoint: POST /ingest/message",
    "gates": "gates: [lint, types, tests]",
    "features": "features: [features/os_004_genesis.feature]",
    "mutation": "mutation: {mutants: 12, seconds: 180, threshold: 0.5, exempt: [AC-05]}",
}
_EXPECTED: Final = {
    "number": "an integer",
    "status": "one of " + ", ".join(status.value for status in WorkOrderStatus),
    "date": "a date written YYYY-MM-DD",
    "gates": "a list of gate names",
    "features": "a list of .feature paths",
    "mutation": "a mapping with mutants (0 to 1000), seconds (> 0), threshold (0 to 1) and "
    "exempt (criterion ids)",
}
_STATUSES: Final = ", ".join(status.value for status in WorkOrderStatus)


def _invalid(message: str, fix: str, index: int | None = None) -> PydanticCustomError:
    return PydanticCustomError(
        "gates_invalid", "{message}", {"message": message, "fix": fix, "index": index}
    )


def _single_line(value: str) -> str:
    value = value.strip()
    if not value:
        raise _invalid("is empty", "write a value")
    if "\n" in value:
        raise _invalid("spans several lines", "write it on one line")
    return value


def _gate_name(value: str) -> str:
    if value not in GATE_NAMES:
        close = difflib.get_close_matches(value, GATE_NAMES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise _invalid(f"unknown gate '{value}'", f"{hint}known gates: {', '.join(GATE_NAMES)}")
    return value


def _feature_path(value: str) -> str:
    reason = paths.escape_reason(value)
    if reason:
        raise _invalid(
            f"feature path '{value}' {reason}",
            "write the path relative to the repository root, e.g. features/os_004.feature",
        )
    if not value.endswith(".feature"):
        raise _invalid(
            f"'{value}' is not a .feature file", "name a Gherkin file ending in .feature"
        )
    return paths.normalized(value)


def _no_duplicates(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise _invalid(f"{what} '{value}' is listed twice", "list it once", index)
        seen.add(value)
    return values


@functools.lru_cache(maxsize=256)
def _is_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        return False
    return True


Line = Annotated[str, AfterValidator(_single_line)]
GateName = Annotated[str, AfterValidator(_gate_name)]
FeaturePath = Annotated[str, AfterValidator(_feature_path)]


class MutationSettings(BaseModel):
    """`mutation:` in the front matter (see `gates.orders.model.MutationPolicy`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mutants: int = Field(default=12, ge=0, le=1000)
    seconds: float = Field(default=180.0, gt=0, le=7200)
    threshold: float = Field(default=0.0, ge=0, le=1)
    exempt: list[Annotated[str, Field(pattern=r"^AC-[0-9]{2,}$")]] = Field(default_factory=list)


class FrontMatter(BaseModel):
    """The front matter keys of an OS spec, validated; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str
    number: int
    title: Line
    project: str
    status: WorkOrderStatus
    executor: Line
    repository: Line
    branch: Line
    scope: Line
    date: datetime.date
    timezone: str = DEFAULT_TIMEZONE
    endpoint: str | None = None
    gates: list[GateName]
    features: list[FeaturePath]
    mutation: MutationSettings | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not ID_PATTERN.fullmatch(value):
            raise _invalid(
                f"'{value}' is not an OS id",
                "write OS-, words in capitals and the OS number, separated by hyphens, "
                "e.g. OS-CODEX-AURORA-CRM-HEADLESS-GENESIS-20260103-004",
            )
        return value

    @field_validator("number")
    @classmethod
    def _check_number(cls, value: int) -> int:
        if value < 1:
            raise _invalid(f"{value} is not a positive number", "number OSes from 1")
        return value

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str) -> str:
        if not PROJECT_PATTERN.fullmatch(value):
            raise _invalid(
                f"'{value}' is not a project slug",
                "use lower-case letters, digits and hyphens: the name of the vault/<project>/ "
                "folder, e.g. aurora-crm",
            )
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _check_status(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        for status in WorkOrderStatus:
            if value.strip().casefold() == status.value:
                return status
        raise _invalid(
            f"unknown status '{value}'",
            f"use one of: {_STATUSES} (the executor's claim; only gates certify an OS)",
        )

    @field_validator("date", mode="before")
    @classmethod
    def _check_date(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        fix = "write the date as YYYY-MM-DD, e.g. 2026-01-03"
        if not _DATE_PATTERN.fullmatch(value):
            raise _invalid(f"'{value}' is not a date written YYYY-MM-DD", fix)
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            raise _invalid(f"'{value}' is not a valid date", fix) from None

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if not _is_timezone(value):
            raise _invalid(
                f"unknown time zone '{value}'",
                f"use an IANA time zone name such as {DEFAULT_TIMEZONE}",
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not ENDPOINT_PATTERN.fullmatch(value):
            raise _invalid(
                f"'{value}' is not an HTTP method and a path",
                "write it as METHOD /path, e.g. POST /ingest/message",
            )
        return value

    @field_validator("gates")
    @classmethod
    def _check_gates(cls, value: list[str]) -> list[str]:
        return _no_duplicates(value, "gate")

    @field_validator("features")
    @classmethod
    def _check_features(cls, value: list[str]) -> list[str]:
        return _no_duplicates(value, "feature file")


KNOWN_KEYS: Final = tuple(FrontMatter.model_fields)
REQUIRED_KEYS: Final = tuple(
    name for name, info in FrontMatter.model_fields.items() if info.is_required()
)


@dataclass(slots=True)
class RawFrontMatter:
    """The YAML values by key, before validation, with the lines they came from."""

    values: dict[str, object]
    key_lines: dict[str, int]
    item_lines: dict[str, list[int]]
    unreadable: set[str]


def validate(raw: RawFrontMatter) -> tuple[FrontMatter | None, list[Problem]]:
    """The validated front matter, or None and one problem per key that is wrong."""
    try:
        return FrontMatter.model_validate(raw.values), []
    except ValidationError as exc:
        return None, [
            _translate(error, raw)
            for error in exc.errors()
            if not (error["loc"] and error["loc"][0] in raw.unreadable)
        ]


def _describe(value: object) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text '{value}'" if len(value) <= 60 else "a long text"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _translate(error: ErrorDetails, raw: RawFrontMatter) -> Problem:
    loc = error["loc"]
    key = str(loc[0]) if loc else ""
    ctx = error.get("ctx") or {}
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else ctx.get("index")
    line = raw.key_lines.get(key, 1)
    items = raw.item_lines.get(key, [])
    if isinstance(index, int) and index < len(items):
        line = items[index]
    where = f"front matter key '{key}'" + (f" item {index + 1}" if isinstance(index, int) else "")
    example = EXAMPLES.get(key, "key: value")
    kind = error["type"]
    if key == "mutation" and len(loc) > 1 and not isinstance(loc[1], int):
        inner = ".".join(str(part) for part in loc[1:])
        if kind == "extra_forbidden":
            known = ", ".join(MutationSettings.model_fields)
            return Problem(line, f"unknown key 'mutation.{inner}'", f"known keys: {known}")
        message = f"front matter key 'mutation.{inner}': {error['msg']}"
        return Problem(line, message, f"write it like `{example}`")
    if kind == "missing":
        return Problem(1, f"missing front matter key '{key}'", f"add `{example}`")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else "remove it; "
        return Problem(
            line, f"unknown front matter key '{key}'", f"{hint}known keys: {', '.join(KNOWN_KEYS)}"
        )
    if kind == "gates_invalid":
        return Problem(line, f"{where}: {ctx['message']}", str(ctx["fix"]))
    expected = _EXPECTED.get(key, "a text") if not isinstance(index, int) else "a text"
    return Problem(
        line,
        f"{where} must be {expected}, not {_describe(error['input'])}",
        f"write it like `{example}`",
    )
