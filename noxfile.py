"""Developer and CI sessions. `nox --list` shows them; `nox` runs the whole test suite.

lint, typecheck, tests, gates and report share one environment, `.nox/dev`, installed once
(the project, editable, with its dev group) and again only when pyproject.toml changes: the
gates certify with the very tools the tests ran with, and find the evidence the tests left.
Without arguments, lint, typecheck and tests run through `gates run`: on a working tree that is
its commit, in a clean checkout of that commit, and what passes is kept as evidence that
`gates certify` reuses instead of running the suite again. With arguments (`nox -s tests --
-k ingest`), the tool runs on the working tree with those arguments alone.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEV = Path(".nox") / "dev"


def install_project(session: nox.Session, *groups: str) -> None:
    """Install the project (editable) and the named dependency groups."""
    session.install("-e", ".")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


def dev(session: nox.Session) -> Path:
    """The shared environment's bin folder, created or updated first when needed."""
    bin_dir = (DEV / "bin").resolve()
    stamp = DEV / ".installed"
    wanted = hashlib.sha256(Path("pyproject.toml").read_bytes()).hexdigest()
    if not (bin_dir / "python").exists():
        session.run(sys.executable, "-m", "venv", str(DEV), external=True)
        stamp.unlink(missing_ok=True)
    if not stamp.is_file() or stamp.read_text() != wanted:
        pip = (str(bin_dir / "python"), "-m", "pip", "install", "--quiet")
        session.run(*pip, "-e", ".", external=True)
        session.run(*pip, *nox.project.dependency_groups(PYPROJECT, "dev"), external=True)
        stamp.write_text(wanted)
    session.env["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    session.env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return bin_dir


def run_dev(session: nox.Session, program: str, *args: str) -> None:
    """Run a program of the shared environment."""
    session.run(str(dev(session) / program), *args, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """Run ruff (lint and format check); `-- ARGS` runs `ruff check ARGS` instead."""
    if session.posargs:
        run_dev(session, "ruff", "check", *session.posargs)
    else:
        run_dev(session, "gates", "run", "lint")


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """Run mypy in strict mode over the packages, tests and migrations (`-- ARGS`: mypy ARGS)."""
    if session.posargs:
        run_dev(session, "mypy", *session.posargs)
    else:
        run_dev(session, "gates", "run", "types")


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the pytest suite (PostgreSQL tests need AURORA_TEST_POSTGRES_URL); `-- ARGS` passes
    ARGS to pytest alone, on the working tree."""
    session.env.setdefault("AURORA_TEST_ARTIFACTS", str(Path("test-artifacts").resolve()))
    if session.posargs:
        run_dev(session, "python", "-m", "pytest", *session.posargs)
    else:
        run_dev(session, "gates", "run", "tests")


@nox.session(venv_backend="none")
def gates(session: nox.Session) -> None:
    """Certify the vault's OSes and write their closure records (`-- --check` writes nothing)."""
    run_dev(session, "gates", "certify", *session.posargs)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """Render the auditors' static site of the vault into site/ (`-- --out DIR` to change)."""
    run_dev(session, "gates", "report", *(session.posargs or ["--out", "site"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark: one table, bench-results/results.json and PNG plots (`-- --quick`)."""
    install_project(session, "bench")
    session.run("python", "benchmarks/run_all.py", *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """Apply migrations and start the API with uvicorn (SQLite unless DATABASE_URL is set)."""
    install_project(session)
    session.run("alembic", "upgrade", "head")
    session.run("uvicorn", "crm_core.main:app", *(session.posargs or ["--port", "8000"]))
