"""Running one command of a gate: in its own process group, bounded in time, and never left
behind: a timeout, an interrupt or a SIGTERM of `gates` kills the whole group (the servers its
tests started too). Its own session no longer receives the signals sent to `gates`' group, so
`gates` passes them on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Finished:
    """How a command ended: its exit code (`None` when it ran past its time and was killed)
    and, when captured, its output (stdout and stderr merged, decoded as UTF-8 with
    replacement)."""

    code: int | None
    output: str = ""

    @property
    def timed_out(self) -> bool:
        return self.code is None


def run_command(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str] | None,
    timeout_s: float,
    *,
    capture: bool = False,
    echo: bool = False,
) -> Finished:
    """Run `argv` in `cwd` to its end, in a new session (its own process group), stdin empty.

    With `capture`, stdout and stderr are read (merged) into `Finished.output`; with `echo`
    too, each line is also copied to our standard output as it comes. Without `capture` the
    output is discarded. After `timeout_s` seconds, or if this process is interrupted while
    waiting, the whole group gets SIGKILL (then a timeout returns `code=None`; an interrupt is
    raised again). `OSError` if the program cannot be started."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
        start_new_session=True,
    )
    chunks: list[bytes] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            chunks.append(line)
            if echo:
                sys.stdout.write(line.decode("utf-8", errors="replace"))
                sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True) if capture else None
    if reader is not None:
        reader.start()
    code: int | None
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        code = None
    except BaseException:
        _kill_group(process)
        raise
    if reader is not None:
        reader.join(timeout=5 if code is None else None)
    return Finished(code, b"".join(chunks).decode("utf-8", errors="replace"))


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM raises SystemExit(143), so that
    `gates` cleans up as on an interrupt (its commands' process groups killed, its clean
    checkout removed) instead of vanishing with its commands still running in their own
    sessions; the previous handler is restored afterwards. Elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
