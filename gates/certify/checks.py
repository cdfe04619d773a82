"""Running the gates that are commands: each one timed, logged, and judged by its exit code."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from gates.certify.process import run_command

MAX_LOG_CHARS = 200_000


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class GateResult:
    """The outcome of one gate: status, duration, the commands run, their log, and why."""

    name: str
    status: Status
    duration_s: float
    commands: tuple[str, ...]
    log: str
    detail: str = ""
    facts: Mapping[str, object] = field(default_factory=dict, compare=False)
    evidence: Mapping[str, object] | None = field(default=None, compare=False)
    """Where the result was kept or taken from (`gates.certify.evidence.Evidence.describe`)."""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS


def _resolve(argv: tuple[str, ...]) -> list[str] | None:
    """`python` is this interpreter; other programs are looked up beside it, then on PATH."""
    program = argv[0]
    if program in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    beside = Path(sys.executable).parent / program
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside), *argv[1:]]
    found = shutil.which(program)
    return [found, *argv[1:]] if found else None


def run_commands(
    name: str,
    commands: tuple[tuple[str, ...], ...],
    *,
    root: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    echo: bool = False,
) -> GateResult:
    """Run each command in order in `root`; the gate fails at the first one that fails.

    `timeout_s` bounds the whole gate, in seconds. With `echo`, each command's output is also
    copied to standard output as it comes (a developer watching the suite run)."""
    started = time.perf_counter()
    log: list[str] = []
    shown = tuple(shlex.join(command) for command in commands)
    for command, text in zip(commands, shown, strict=True):
        argv = _resolve(command)
        if argv is None:
            detail = f"ferramenta não instalada: {command[0]!r} não foi encontrado"
            log.append(f"$ {text}\n{detail}\n")
            return _result(name, Status.FAIL, started, shown, log, detail)
        log.append(f"$ {text}\n")
        remaining = max(timeout_s - (time.perf_counter() - started), 1.0)
        try:
            finished = run_command(argv, root, env, remaining, capture=True, echo=echo)
        except OSError as exc:
            detail = f"não foi possível executar {text}: {exc.strerror}"
            return _result(name, Status.FAIL, started, shown, log, detail)
        log.append(finished.output)
        if finished.timed_out:
            detail = f"tempo esgotado após {timeout_s:.0f} s em: {text}"
            return _result(name, Status.FAIL, started, shown, log, detail)
        returncode = finished.code
        log.append(f"[exit {returncode}]\n")
        if returncode != 0:
            detail = f"{text} terminou com código {returncode}"
            return _result(name, Status.FAIL, started, shown, log, detail)
    return _result(name, Status.PASS, started, shown, log, "")


def trim_log(text: str) -> str:
    """Keep the end of a long log, where the verdict of a tool is printed."""
    if len(text) <= MAX_LOG_CHARS:
        return text
    return f"[… {len(text) - MAX_LOG_CHARS} caracteres omitidos …]\n" + text[-MAX_LOG_CHARS:]


def _result(
    name: str,
    status: Status,
    started: float,
    commands: tuple[str, ...],
    log: list[str],
    detail: str,
) -> GateResult:
    return GateResult(
        name=name,
        status=status,
        duration_s=round(time.perf_counter() - started, 3),
        commands=commands,
        log=trim_log("".join(log)),
        detail=detail,
    )
