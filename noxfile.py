"""Developer and CI sessions. `nox --list` shows them; `nox` runs the whole test suite."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_project(session: nox.Session, *groups: str) -> None:
    """Install the project (editable) and the named dependency groups."""
    session.install("-e", ".")
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff (lint and format check)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy in strict mode over the packages, tests and migrations."""
    install_project(session, "typecheck")
    session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the pytest suite (PostgreSQL tests need AURORA_TEST_POSTGRES_URL)."""
    install_project(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def gates(session: nox.Session) -> None:
    """Certify the vault's OSes and write their closure records (`-- --check` writes nothing)."""
    install_project(session, "lint", "typecheck")
    session.run("gates", "certify", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Render the auditors' static site of the vault into site/ (`-- --out DIR` to change)."""
    install_project(session)
    session.run("gates", "report", *(session.posargs or ["--out", "site"]))


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
