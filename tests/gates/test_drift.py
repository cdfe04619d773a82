"""Drift since certification: an auditor never reads CONCLUÍDA for code that was not certified
without seeing that it changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.certify.verdict import Decision
from gates.cli import main
from gates.record.publish import certify
from gates.report.site import write_report
from tests.gates.certify_project import SPEC_ID, Project, make_project


@pytest.fixture
def certified(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "demo")
    (result,) = certify(project.root)
    assert result.decision is Decision.CONCLUDED
    project.commit("records")
    return project


def status(project: Project, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["status", "--root", str(project.root), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert isinstance(row, dict)
    return row


def test_a_changed_deliverable_is_shown_beside_the_verdict(
    certified: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    certified.write("src/app.py", "print('changed after the certification')\n")
    certified.commit("the deliverable changes")
    certified.write("tests/bdd/helper.py", "# a step helper\n")
    certified.commit("a step module changes")
    row = status(certified, capsys)
    assert row["decision"] == "CONCLUÍDA"
    drift = row["drift"]
    assert isinstance(drift, dict)
    assert drift["files"] == ["src/app.py", "tests/bdd/helper.py"]
    assert drift["commits"] == 2
    assert main(["status", "--root", str(certified.root)]) == 0
    text = capsys.readouterr().out
    assert "mudou desde a certificação" in text
    assert "src/app.py" in text
    out = tmp_path / "site"
    write_report(certified.root, out)
    page = (out / "os" / f"{SPEC_ID}.html").read_text(encoding="utf-8")
    assert "O código mudou desde a certificação" in page
    assert "<code>src/app.py</code>" in page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'data-drift="2"' in index


def test_records_the_plan_block_and_other_files_are_not_drift(
    certified: Project, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    certified.write("docs/notes.md", "unrelated to the OS\n")
    certified.commit("an unrelated file")
    row = status(certified, capsys)
    drift = row["drift"]
    assert isinstance(drift, dict)
    assert drift["files"] == []
    assert main(["status", "--root", str(certified.root)]) == 0
    assert "mudou desde a certificação" not in capsys.readouterr().out
    out = tmp_path / "site"
    write_report(certified.root, out)
    assert "data-drift" not in (out / "index.html").read_text(encoding="utf-8")


def test_a_deliverable_plan_changed_only_in_its_block_is_not_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "demo")
    spec = project.root / "vault/demo/os" / f"{SPEC_ID}.md"
    spec.write_text(spec.read_text().replace("- `src/app.py`", "- `src/app.py`\n- `PLAN.md`"))
    project.commit("PLAN.md is a deliverable")
    certify(project.root)  # writes PLAN.md's status block after the commit it certifies
    project.commit("records and the plan block")
    drift = status(project, capsys)["drift"]
    assert isinstance(drift, dict)
    assert drift["files"] == []
    project.write("PLAN.md", (project.root / "PLAN.md").read_text() + "\nA new line.\n")
    project.commit("the plan itself changes")
    drift = status(project, capsys)["drift"]
    assert isinstance(drift, dict)
    assert drift["files"] == ["PLAN.md"]
