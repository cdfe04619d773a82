"""`crm-core`: a mistake on the command line is one line on standard error and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn.config

from crm_core import cli
from crm_core.server import LOG_LEVELS


def _run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `crm-core ARGUMENTS` in a child process, as a user would, on a fresh SQLite file."""
    return subprocess.run(
        [sys.executable, "-m", "crm_core.cli", *arguments],
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.db'}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("arguments", "mentions"),
    [
        (["serve", "--workers", "0"], "--workers"),
        (["serve", "--workers", "-3"], "--workers"),
        (["serve", "--workers", "many"], "--workers"),
        (["serve", "--port", "99999"], "--port"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--port", "http"], "--port"),
        (["serve", "--log-level", "bogus"], "--log-level"),
        (["serve", "--unknown"], "--unknown"),
        (["keys", "create", "--scope", "admin"], "--scope"),
        (["keys", "create"], "--scope"),
        (["keys", "create", "--scope", "ingest", "--name", "x" * 101], "--name"),
        (["keys", "revoke", "not-a-uuid"], "ID"),
        (["keys"], "keys"),
        (["vacuum"], "vacuum"),
        ([], "crm-core"),
    ],
)
def test_a_command_line_mistake_is_one_line_and_exit_code_2(
    tmp_path: Path, arguments: list[str], mentions: str
) -> None:
    result = _run(tmp_path, *arguments)
    assert result.returncode == 2, result.stderr
    assert mentions in _one_line(result.stderr)
    assert result.stdout == ""


def test_serve_help_shows_the_defaults_and_the_log_levels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 127.0.0.1" in text
    assert "default: 8000" in text
    assert "default: warning" in text
    assert "{critical,error,warning,info,debug,trace}" in text


def test_a_log_level_is_read_in_any_case() -> None:
    arguments = cli._parser().parse_args(["serve", "--log-level", "DEBUG"])
    assert arguments.log_level == "debug"


def test_the_edges_of_the_ranges_are_accepted() -> None:
    arguments = cli._parser().parse_args(["serve", "--port", "65535", "--workers", "1"])
    assert (arguments.port, arguments.workers) == (65535, 1)


def test_the_log_levels_are_uvicorns() -> None:
    assert set(LOG_LEVELS) == set(uvicorn.config.LOG_LEVELS)
