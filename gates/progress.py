"""Live progress of `gates certify`: rich on a terminal, plain lines in a CI log."""

from __future__ import annotations

import sys
import time
from typing import IO, TextIO

from rich.console import Console
from rich.markup import escape
from rich.status import Status as Spinner

from gates.certify.checks import GateResult
from gates.certify.mutation import MutationRun
from gates.record.publish import CertifyResult


class PlainProgress:
    """One line per event, flushed at once, so a CI log shows where a run is."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._started = 0.0

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def gate_started(self, name: str) -> None:
        self._started = time.perf_counter()
        self._say(f"gate {name}: running")

    def gate_finished(self, result: GateResult) -> None:
        detail = f" — {result.detail}" if result.detail else ""
        self._say(
            f"gate {result.name}: {result.status.value} in {result.duration_s:.1f} s{detail}"
            f"{reused(result)}"
        )

    def mutation_finished(self, run: MutationRun) -> None:
        self._say(mutation_line(run))

    def decided(self, result: CertifyResult) -> None:
        record = f" — {result.record} ({result.written})" if result.record else ""
        self._say(f"{result.order.short_id} {result.order.id}: {result.decision.value}{record}")
        for reason in result.evaluation.reasons:
            self._say(f"  - {reason}")


class RichProgress(PlainProgress):
    """A spinner while a gate runs; a coloured line (with a word, not colour alone) after."""

    def __init__(self, console: Console) -> None:
        super().__init__(console.file)
        self.console = console
        self._spinner: Spinner | None = None

    def gate_started(self, name: str) -> None:
        self._spinner = self.console.status(f"gate [bold]{escape(name)}[/]: running…")
        self._spinner.start()

    def gate_finished(self, result: GateResult) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        style = "green" if result.passed else "red"
        detail = f" — {escape(result.detail)}" if result.detail else ""
        self.console.print(
            f"gate [bold]{escape(result.name)}[/]: [{style}]{result.status.value}[/] "
            f"in {result.duration_s:.1f} s{detail}{escape(reused(result))}",
            highlight=False,
            markup=True,
        )

    def mutation_finished(self, run: MutationRun) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self.console.print(mutation_line(run), highlight=False, markup=False)

    def decided(self, result: CertifyResult) -> None:
        style = "green" if result.concluded else "red"
        record = f" — {escape(str(result.record))} ({result.written})" if result.record else ""
        self.console.print(
            f"[bold]{result.order.short_id}[/] {escape(result.order.id)}: "
            f"[{style} bold]{result.decision.value}[/]{record}",
            highlight=False,
        )
        for reason in result.evaluation.reasons:
            self.console.print(f"  - {reason}", highlight=False, markup=False)


def mutation_line(run: MutationRun) -> str:
    """`mutation OS-…-005: 9 of 12 mutants run in 170.2 s; killed: AC-01 3/4, AC-02 0/2 …`."""
    kept = run.evidence or {}
    head = f"mutation {run.os_id}: "
    if kept.get("reused"):
        commit = str(kept.get("commit"))[:12]
        head += f"reused (produced at {kept.get('produced_at')}, commit {commit}); "
    if run.note and not run.tested:
        return head + run.note
    scores = ", ".join(
        f"{cid} {score.killed}/{score.tested}"
        for cid, score in sorted(run.criteria.items())
        if score.tested
    )
    tail = f" ({run.note})" if run.note else ""
    ran = f"{run.tested} of {run.sampled} mutants run in {run.elapsed_s:.1f} s{tail}"
    return f"{head}{ran}; killed: {scores}"


def reused(result: GateResult) -> str:
    """` (reused: evidence produced at … on HOST)` for a result taken from kept evidence."""
    kept = result.evidence
    if not kept or not kept.get("reused"):
        return ""
    return f" (reused: evidence produced at {kept.get('produced_at')} on {kept.get('host')})"


def progress_for(stream: TextIO | None = None) -> PlainProgress:
    """RichProgress on a terminal, PlainProgress otherwise."""
    stream = stream or sys.stdout
    if stream.isatty():
        return RichProgress(Console(file=stream))
    return PlainProgress(stream)
