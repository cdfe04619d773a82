"""Migrations on SQLite and PostgreSQL: pytest-alembic's built-in tests, the CLI, the catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.config import Config as AlembicConfig
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, inspect, text

from crm_core.database import create_db_engine
from tests.conftest import REPO_ROOT, backend_of

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]

VERSIONS = REPO_ROOT / "alembic" / "versions"


@pytest.fixture
def alembic_config() -> AlembicConfig:
    config = AlembicConfig(str(REPO_ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture
def alembic_engine(engine: Engine) -> Engine:
    """pytest-alembic's built-in tests run once per database (see the `engine` fixture)."""
    return engine


def test_revisions_are_named_by_date_and_slug() -> None:
    names = sorted(path.name for path in VERSIONS.glob("*.py"))
    assert names[:2] == ["20260103_0001_baseline.py", "20260103_0002_contacts_deals.py"]


def _alembic(*args: str, database_url: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _tables(database_url: str) -> set[str]:
    engine = create_db_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_cli_upgrade_downgrade_upgrade(database_url: str, tmp_path: Path) -> None:
    for step in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
        result = _alembic(*step, database_url=database_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert {"crm_contacts", "crm_deals", "alembic_version"} <= _tables(database_url)
    check = _alembic("check", database_url=database_url, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout


def test_cli_downgrade_base_leaves_no_tables(database_url: str, tmp_path: Path) -> None:
    assert _alembic("upgrade", "head", database_url=database_url, cwd=tmp_path).returncode == 0
    assert _alembic("downgrade", "base", database_url=database_url, cwd=tmp_path).returncode == 0
    assert _tables(database_url) <= {"alembic_version"}


def test_cli_default_is_a_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    result = _alembic("upgrade", "head", database_url=None, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"crm_contacts", "crm_deals"} <= _tables(f"sqlite:///{tmp_path / 'aurora_crm.db'}")


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["postgresql", "postgresql+psycopg"])
def test_cli_accepts_the_postgresql_url_forms_people_type(
    postgres_url: str, form: str, tmp_path: Path
) -> None:
    typed = form + postgres_url[postgres_url.index("://") :]
    result = _alembic("upgrade", "head", database_url=typed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/crm", "'mysql', which is not supported"),
        ("postgresql://postgres@127.0.0.1:1/none", "cannot connect to"),
    ],
)
def test_cli_errors_are_one_line(url: str, message: str, tmp_path: Path) -> None:
    result = _alembic("upgrade", "head", database_url=url, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_offline_postgresql_ddl_uses_jsonb(tmp_path: Path) -> None:
    result = _alembic(
        "upgrade", "head", "--sql", database_url="postgresql://nobody@nowhere/none", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("attributes JSONB NOT NULL") == 2
    assert "REFERENCES crm_contacts (id) ON DELETE RESTRICT" in result.stdout


@pytest.fixture
def migrated_postgres(postgres_url: str) -> Iterator[Engine]:
    result = _alembic("upgrade", "head", database_url=postgres_url, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    engine = create_db_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_postgres_catalog_shows_jsonb_and_the_foreign_key(migrated_postgres: Engine) -> None:
    assert backend_of(str(migrated_postgres.url)) == "postgresql"
    with migrated_postgres.connect() as connection:
        types: dict[str, str] = dict(
            connection.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type "
                    "FROM information_schema.columns WHERE column_name = 'attributes'"
                )
            ).all()
        )
        foreign_keys = connection.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid = 'crm_deals'::regclass"
            )
        ).all()
    assert types == {"crm_contacts.attributes": "jsonb", "crm_deals.attributes": "jsonb"}
    assert foreign_keys == [
        (
            "fk_crm_deals_contact_id_crm_contacts",
            "FOREIGN KEY (contact_id) REFERENCES crm_contacts(id) ON DELETE RESTRICT",
        )
    ]
