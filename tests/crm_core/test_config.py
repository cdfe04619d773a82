from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from crm_core.config import DEFAULT_DATABASE_URL, Settings, get_settings
from crm_core.database import create_db_engine, normalize_database_url
from crm_core.exceptions import ConfigurationError
from crm_core.main import create_app


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (
            "postgresql://postgres:postgres@localhost:5432/postgres",
            "postgresql+psycopg://postgres:***@localhost:5432/postgres",
        ),
        ("postgres://u@db:5432/crm", "postgresql+psycopg://u@db:5432/crm"),
        ("postgresql+psycopg://u@db/crm", "postgresql+psycopg://u@db/crm"),
        ("sqlite:///relative.db", "sqlite+pysqlite:///relative.db"),
        ("sqlite:////abs/path.db", "sqlite+pysqlite:////abs/path.db"),
        ("  sqlite://  ", "sqlite+pysqlite://"),
    ],
)
def test_urls_people_type_are_normalised_to_the_shipped_drivers(typed: str, expected: str) -> None:
    assert normalize_database_url(typed).render_as_string(hide_password=True) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "DATABASE_URL is empty"),
        ("not a url", "is not a database URL"),
        ("mysql://root@localhost/crm", "'mysql', which is not supported"),
        ("postgresql+psycopg2://u@h/d", "'postgresql+psycopg2', which is not supported"),
    ],
)
def test_unusable_urls_are_refused_in_one_line(typed: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        normalize_database_url(typed)
    assert "\n" not in str(caught.value)


def test_a_password_in_an_unparsable_url_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        normalize_database_url("postgresql://user:s3cret@host:notaport/db")
    assert "s3cret" not in str(caught.value)


def test_a_sqlite_file_in_a_missing_folder_is_refused(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_db_engine(f"sqlite:///{tmp_path}/missing/crm.db")


def test_settings_default_to_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    assert Settings().database_url == DEFAULT_DATABASE_URL == "sqlite:///./aurora_crm.db"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("CRM_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.database_url == "sqlite:///from-env.db"
    assert settings.log_level == "DEBUG"


def test_the_default_region_is_brazil_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_DEFAULT_REGION", raising=False)
    assert Settings().default_region == "BR"
    monkeypatch.setenv("CRM_DEFAULT_REGION", " pt ")
    assert Settings().default_region == "PT"


def test_an_unknown_default_region_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_DEFAULT_REGION", "XX")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match=r"default_region.*not a region"):
            create_app()
    finally:
        get_settings.cache_clear()


def test_a_bad_setting_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_LOG_LEVEL", "chatty")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="log_level"):
            create_app()
    finally:
        get_settings.cache_clear()


def _import_app(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-c", "import crm_core.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_starting_with_an_unusable_url_prints_one_line_and_no_traceback() -> None:
    result = _import_app("mysql://root@localhost/crm")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "crm_core: configuration error: DATABASE_URL uses 'mysql', which is not supported: "
        "use postgresql:// (psycopg 3) or sqlite:///"
    ]


def test_importing_the_app_needs_no_environment(tmp_path: object) -> None:
    result = _import_app(f"sqlite:///{tmp_path}/crm.db")
    assert result.returncode == 0, result.stderr
