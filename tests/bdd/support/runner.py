"""Run pytest in a child process, on the repository or on a scratch copy of its specifications."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

NESTED_ENV = "AURORA_BDD_NESTED_RUN"
"""Set in the child's environment; a child that would start another child refuses to."""

BDD_DIR = Path(__file__).resolve().parent.parent
SPEC_FILES = ("__init__.py", "conftest.py", "test_features.py")
"""What a scratch copy of tests/bdd holds, besides steps/ and support/: the binder, never the
tests that start child processes (so a child cannot start another one)."""


def run_pytest(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pytest ARGS` in `root`, with this process's environment (and database)."""
    if os.environ.get(NESTED_ENV):
        raise RuntimeError(f"refusing to start pytest inside a pytest started by {__name__}")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=root,
        env={**os.environ, NESTED_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def copy_specifications(destination: Path, features: dict[str, str]) -> Path:
    """A scratch project: the repository's pytest settings, root conftest and BDD steps, with
    `features` (file name -> Gherkin text) as its only feature files."""
    shutil.copy2(REPO_ROOT / "pyproject.toml", destination / "pyproject.toml")
    tests = destination / "tests"
    (tests / "bdd").mkdir(parents=True)
    for name in ("__init__.py", "conftest.py"):
        shutil.copy2(REPO_ROOT / "tests" / name, tests / name)
    for name in SPEC_FILES:
        shutil.copy2(BDD_DIR / name, tests / "bdd" / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("steps", "support"):
        shutil.copytree(BDD_DIR / package, tests / "bdd" / package, ignore=ignore)
    features_dir = destination / "features"
    features_dir.mkdir()
    for name, text in features.items():
        (features_dir / name).write_text(text, encoding="utf-8")
    return destination
