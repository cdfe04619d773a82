"""The gate configuration of a repository: `[tool.gates]` in its pyproject.toml.

Gates that run commands (lint, types, tests, migrations by default) take them from
`[tool.gates.commands]`; `acceptance` (the OS's scenarios) and `deliverables` (the OS's paths)
are built in. Everything has a default, so a repository without the table still certifies.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gates.catalog import GATE_NAMES
from gates.exceptions import GatesConfigError
from gates.signing import public_key_from_b64

BUILT_IN_GATES = frozenset({"acceptance", "deliverables"})

DEFAULT_COMMANDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "lint": (("ruff", "check", "."), ("ruff", "format", "--check", ".")),
    "types": (("mypy",),),
    "tests": (("python", "-m", "pytest", "-q", "-p", "no:cacheprovider"),),
    "migrations": (
        ("alembic", "upgrade", "head"),
        ("alembic", "downgrade", "base"),
        ("alembic", "upgrade", "head"),
        ("alembic", "check"),
    ),
}

DEFAULT_TOOLS = ("pytest", "pytest-bdd", "ruff", "mypy")


@dataclass(frozen=True, slots=True)
class GatesConfig:
    """What `gates certify` runs, and where it reads and writes."""

    vault: PurePosixPath = field(default_factory=lambda: PurePosixPath("vault"))
    steps: tuple[PurePosixPath, ...] = field(default_factory=lambda: (PurePosixPath("tests/bdd"),))
    acceptance: tuple[PurePosixPath, ...] = ()
    commands: dict[str, tuple[tuple[str, ...], ...]] = field(
        default_factory=lambda: dict(DEFAULT_COMMANDS)
    )
    timeout_seconds: float = 1800.0
    tools: tuple[str, ...] = DEFAULT_TOOLS
    source: PurePosixPath | None = None
    flaky_proves: bool = False
    """Whether a scenario that passed only when run again after failing proves its criteria."""
    public_key: str | None = None
    """A pinned ed25519 public key (base64 of its 32 raw bytes): every ledger entry from
    `signed_from` on must carry its signature, whatever key `gates verify` is given."""
    signed_from: int = 1
    from_tests: dict[str, tuple[PurePosixPath, ...]] = field(default_factory=dict)
    """Gates read from the `tests` gate's own pytest run instead of running again (gate name
    to the test paths that make it up): the suite runs once per certify."""
    environment: tuple[str, ...] = ()
    """Environment variables that choose what the gates run against (the databases): their
    values are part of the key under which gate results are kept as evidence."""

    @property
    def acceptance_paths(self) -> tuple[PurePosixPath, ...]:
        """What the acceptance gate runs: `acceptance` (or its `from_tests` paths), else every
        step folder."""
        return self.from_tests.get("acceptance") or self.acceptance or self.steps

    def fingerprint(self) -> str:
        """The sha256 of the configuration as the runner uses it (bound into each record)."""
        canonical = json.dumps(
            {
                "vault": str(self.vault),
                "steps": [str(step) for step in self.steps],
                "acceptance": [str(path) for path in self.acceptance_paths],
                "commands": {name: [list(c) for c in cmds] for name, cmds in self.commands.items()},
                "timeout_seconds": self.timeout_seconds,
                "flaky_proves": self.flaky_proves,
                "public_key": self.public_key,
                "signed_from": self.signed_from,
                "from_tests": {k: [str(p) for p in v] for k, v in self.from_tests.items()},
                "environment": list(self.environment),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def load_config(root: Path) -> GatesConfig:
    """Read `[tool.gates]` from `root/pyproject.toml`; defaults when there is none."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return GatesConfig()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GatesConfigError(f"pyproject.toml: cannot read [tool.gates]: {exc}") from None
    table = data.get("tool", {}).get("gates")
    if table is None:
        return GatesConfig(source=PurePosixPath("pyproject.toml"))
    if not isinstance(table, dict):
        raise GatesConfigError("pyproject.toml: [tool.gates] must be a table")
    return _parse(table)


def _parse(table: dict[str, Any]) -> GatesConfig:
    known = {
        "vault",
        "steps",
        "acceptance",
        "commands",
        "timeout_seconds",
        "tools",
        "flaky_proves",
        "public_key",
        "signed_from",
        "from_tests",
        "environment",
    }
    unknown = sorted(set(table) - known)
    if unknown:
        raise GatesConfigError(
            f"pyproject.toml: unknown key(s) in [tool.gates]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    commands = dict(DEFAULT_COMMANDS)
    for name, value in table.get("commands", {}).items():
        if name not in GATE_NAMES or name in BUILT_IN_GATES:
            allowed = ", ".join(g for g in GATE_NAMES if g not in BUILT_IN_GATES)
            raise GatesConfigError(
                f"pyproject.toml: [tool.gates.commands] names {name!r}; "
                f"commands can be set for: {allowed}"
            )
        commands[name] = _command_list(name, value)
    timeout = table.get("timeout_seconds", 1800)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise GatesConfigError("pyproject.toml: [tool.gates] timeout_seconds must be > 0")
    flaky_proves = table.get("flaky_proves", False)
    if not isinstance(flaky_proves, bool):
        raise GatesConfigError("pyproject.toml: [tool.gates] flaky_proves must be true or false")
    public_key = table.get("public_key")
    if public_key is not None and (
        not isinstance(public_key, str) or public_key_from_b64(public_key) is None
    ):
        raise GatesConfigError(
            "pyproject.toml: [tool.gates] public_key must be an ed25519 public key in base64 "
            "(the `public_key` of a signed ledger entry, or what `gates keygen` prints)"
        )
    signed_from = table.get("signed_from", 1)
    if not isinstance(signed_from, int) or isinstance(signed_from, bool) or signed_from < 1:
        raise GatesConfigError("pyproject.toml: [tool.gates] signed_from must be a seq >= 1")
    explicit = set(table.get("commands", {}))
    from_tests = _from_tests(table.get("from_tests", {}), commands, explicit, table)
    environment = tuple(_strings("environment", table, []))
    return GatesConfig(
        from_tests=from_tests,
        environment=environment,
        flaky_proves=flaky_proves,
        public_key=public_key,
        signed_from=signed_from,
        vault=_relative_path("vault", table.get("vault", "vault")),
        steps=tuple(_relative_path("steps", p) for p in _strings("steps", table, ["tests/bdd"])),
        acceptance=tuple(
            _relative_path("acceptance", p) for p in _strings("acceptance", table, [])
        ),
        commands=commands,
        timeout_seconds=float(timeout),
        tools=tuple(_strings("tools", table, list(DEFAULT_TOOLS))),
        source=PurePosixPath("pyproject.toml"),
    )


PYTEST_LAUNCHERS = (("pytest",), ("python", "-m", "pytest"), ("python3", "-m", "pytest"))


def _from_tests(
    value: object,
    commands: dict[str, tuple[tuple[str, ...], ...]],
    explicit: set[str],
    table: dict[str, Any],
) -> dict[str, tuple[PurePosixPath, ...]]:
    """`[tool.gates.from_tests]`: gate name to test paths inside the `tests` gate's run, which
    must then be one pytest command (the gates plugin is added to it)."""
    if not isinstance(value, dict):
        raise GatesConfigError(
            "pyproject.toml: [tool.gates.from_tests] must be a table of gate = [test paths]"
        )
    parsed: dict[str, tuple[PurePosixPath, ...]] = {}
    for name, paths in value.items():
        if name not in ("migrations", "acceptance"):
            raise GatesConfigError(
                f"pyproject.toml: [tool.gates.from_tests] names {name!r}; only migrations and "
                "acceptance can be read from the tests gate's run"
            )
        if name in explicit or (name == "acceptance" and "acceptance" in table):
            where = "[tool.gates.commands]" if name in explicit else "[tool.gates] acceptance"
            raise GatesConfigError(
                f"pyproject.toml: gate {name!r} is set both in [tool.gates.from_tests] and in "
                f"{where}: keep one"
            )
        listed = _strings(f"from_tests.{name}", {f"from_tests.{name}": paths}, [])
        if not listed:
            raise GatesConfigError(
                f"pyproject.toml: [tool.gates.from_tests] {name} must list at least one test path"
            )
        parsed[name] = tuple(_relative_path(f"from_tests.{name}", p) for p in listed)
    if parsed:
        tests = commands["tests"]
        if len(tests) != 1 or not any(tests[0][: len(p)] == p for p in PYTEST_LAUNCHERS):
            raise GatesConfigError(
                "pyproject.toml: [tool.gates.from_tests] needs the tests gate to be one pytest "
                'command (e.g. tests = [["python", "-m", "pytest", "-q"]])'
            )
        if "migrations" in parsed:
            commands.pop("migrations", None)
    return parsed


def _strings(key: str, table: dict[str, Any], default: list[str]) -> list[str]:
    value = table.get(key, default)
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise GatesConfigError(f"pyproject.toml: [tool.gates] {key} must be a list of strings")
    return value


def _relative_path(key: str, value: object) -> PurePosixPath:
    if not isinstance(value, str) or not value:
        raise GatesConfigError(f"pyproject.toml: [tool.gates] {key} must be a path")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise GatesConfigError(
            f"pyproject.toml: [tool.gates] {key} = {value!r} must stay inside the repository"
        )
    return path


def _command_list(name: str, value: object) -> tuple[tuple[str, ...], ...]:
    problem = (
        f"pyproject.toml: [tool.gates.commands] {name} must be a list of commands, "
        'each a list of strings, e.g. [["ruff", "check", "."]]'
    )
    if not isinstance(value, list) or not value:
        raise GatesConfigError(problem)
    commands = []
    for command in value:
        if not isinstance(command, list) or not command:
            raise GatesConfigError(problem)
        if not all(isinstance(arg, str) and arg for arg in command):
            raise GatesConfigError(problem)
        commands.append(tuple(command))
    return tuple(commands)
