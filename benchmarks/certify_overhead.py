"""How much `gates certify` adds to the commands it runs.

In one run, on this machine: (1) every command the gates of OS 004 run, executed bare, one after
the other, and (2) `gates certify --check OS-004`, which runs the same commands and does the
rest (parsing, deciding, rendering). Both are warm (same venv, caches filled by a first pass that
is not counted). Prints the medians and the ratio; the target is under 1.3x.

    python benchmarks/certify_overhead.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gates.certify.config import load_config  # noqa: E402


def bare_commands() -> list[list[str]]:
    config = load_config(ROOT)
    commands: list[list[str]] = []
    for name in ("lint", "types", "tests", "migrations"):
        commands.extend(list(command) for command in config.commands.get(name, ()))
    if "acceptance" not in config.from_tests:  # otherwise read from the tests gate's run
        acceptance = ["python", "-m", "pytest", *(p.as_posix() for p in config.acceptance_paths)]
        commands.append([*acceptance, "-p", "no:cacheprovider", "-q"])
    bin_dir = Path(sys.executable).parent
    resolved = []
    for command in commands:
        head = sys.executable if command[0] == "python" else str(bin_dir / command[0])
        resolved.append([head, *command[1:]])
    return resolved


def timed(commands: list[list[str]]) -> float:
    started = time.perf_counter()
    for command in commands:
        subprocess.run(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("NO_COLOR", "1")
    bare = bare_commands()
    certify = [[sys.executable, "-m", "gates", "certify", "--check", "OS-004"]]
    timed(bare)  # warm-up: imports, bytecode, mypy cache
    bare_runs, certify_runs = [], []
    for _ in range(args.repeat):
        bare_runs.append(timed(bare))
        certify_runs.append(timed(certify))
    bare_median = statistics.median(bare_runs)
    certify_median = statistics.median(certify_runs)
    print(
        f"bare commands      median {bare_median:7.1f} s  runs {[round(t, 1) for t in bare_runs]}"
    )
    print(
        f"gates certify      median {certify_median:7.1f} s  "
        f"runs {[round(t, 1) for t in certify_runs]}"
    )
    print(f"overhead ratio     {certify_median / bare_median:.3f}x (target < 1.3x)")


if __name__ == "__main__":
    main()
