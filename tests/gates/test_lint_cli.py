"""`gates lint` through `main(argv)` and as a real command (`python -m gates`, `gates`)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gates.cli import main
from tests.gates.specs import SPEC_ID, VALID_SPEC, make_root, replaced, write_spec

REPO = Path(__file__).resolve().parents[2]


def run_gates(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gates", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=60,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def test_lint_passes_on_a_valid_vault(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(root)

    code = main(["lint", "--root", str(root)])

    assert code == 0
    assert capsys.readouterr().out == "gates lint: 1 document checked, no errors\n"


def test_lint_fails_naming_file_and_line(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(root, replaced(VALID_SPEC, "- [ ] AC-02", "- [ ] AC-01"))

    code = main(["lint", "--root", str(root)])

    assert code == 1
    assert capsys.readouterr().out.splitlines() == [
        f"vault/demo/os/{SPEC_ID}.md:36: duplicate criterion ID AC-01 (first at line 35) — fix: "
        "give each criterion its own ID",
        "gates lint: 1 error in 1 of 1 document",
    ]


def test_lint_json_report(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(root)
    write_spec(root, replaced(VALID_SPEC, "project: demo", "project: zeta"), project="zeta")

    code = main(["lint", "--root", str(root), "--format", "json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (report["ok"], report["checked"], report["root"]) == (False, 2, str(root.resolve()))
    assert report["documents"] == [
        {
            "id": SPEC_ID,
            "short_id": "OS-004",
            "path": f"vault/demo/os/{SPEC_ID}.md",
            "criteria": ["AC-01", "AC-02", "AC-03"],
        }
    ]
    [error] = report["errors"]
    assert (error["path"], error["line"]) == (f"vault/zeta/os/{SPEC_ID}.md", 2)
    assert error["message"].startswith(f"duplicate OS id {SPEC_ID}")
    assert error["fix"]


def test_lint_given_paths_checks_only_those(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_spec(root, "broken")
    draft = tmp_path / "rascunho.md"
    draft.write_text(VALID_SPEC, encoding="utf-8")

    code = main(["lint", "--root", str(root), str(draft)])

    assert code == 0
    assert capsys.readouterr().out == "gates lint: 1 document checked, no errors\n"


def test_lint_given_a_folder_checks_its_os_specs(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_spec(root)
    (root / "vault" / "README.md").write_text("not a spec\n", encoding="utf-8")

    code = main(["lint", "--root", str(root), str(root / "vault")])

    assert code == 0
    assert "1 document checked" in capsys.readouterr().out


def test_lint_missing_path_is_a_usage_error(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lint", "--root", str(root), str(root / "nope.md")])

    assert code == 2
    assert capsys.readouterr().err == f"gates: error: {root / 'nope.md'}: no such file or folder\n"


def test_lint_folder_without_specs_is_a_usage_error(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lint", "--root", str(root), str(root)])

    assert code == 2
    assert "no OS spec in this folder" in capsys.readouterr().err


def test_lint_bad_root_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lint", "--root", str(tmp_path / "nope")])

    assert code == 2
    assert "no such folder" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["lint", "--format", "xml"]) == 2
    assert main(["--help"]) == 0
    assert "lint" in capsys.readouterr().out


def test_lint_finds_the_root_from_a_subfolder(root: Path) -> None:
    write_spec(root)
    nested = root / "vault" / "demo"

    result = run_gates("lint", cwd=nested)

    assert (result.returncode, result.stdout) == (0, "gates lint: 1 document checked, no errors\n")


def test_lint_without_a_root_is_a_usage_error(tmp_path: Path) -> None:
    result = run_gates("lint", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("gates: error: no repository root at or above")
    assert "Traceback" not in result.stderr


def test_no_traceback_for_any_broken_document(root: Path) -> None:
    broken: list[str | bytes] = [
        b"\xff\xfe\x00garbage",
        "",
        "---\n",
        "---\n: : :\n---\n",
        "---\n[a, b\n---\n",
        "---\nid: !!python/object/apply:os.system [ls]\n---\n",
        "---\na: &a [*a]\n---\n",
        "---\n" + "a:\n  " * 200 + "b\n---\n",
        "---\nnumber: " + "9" * 5000 + "\n---\n",
        "---\ndate: 2026-13-45\ntimezone: \x00\n---\n## Critérios de Aceite\n- [x]\n",
    ]
    for index, content in enumerate(broken):
        write_spec(root, content, spec_id=f"OS-X-{index:03d}")

    result = run_gates("lint", "--root", str(root), cwd=root)

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"in {len(broken)} of {len(broken)} documents" in result.stdout


def test_lint_passes_on_this_repository() -> None:
    result = run_gates("lint", cwd=REPO)

    assert result.returncode == 0, result.stdout + result.stderr


def test_console_script_runs(root: Path) -> None:
    script = Path(sys.executable).parent / "gates"
    if not script.exists():
        pytest.skip("the gates console script is not installed next to this interpreter")
    write_spec(root)

    result = subprocess.run(
        [str(script), "lint", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert (result.returncode, result.stdout) == (0, "gates lint: 1 document checked, no errors\n")


def test_gates_never_imports_crm_core() -> None:
    code = (
        "import sys\n"
        "sys.modules['crm_core'] = None\n"
        "import gates, gates.cli\n"
        "loaded = sorted(name for name in sys.modules if name.startswith('crm_core'))\n"
        "assert loaded == ['crm_core'], loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )

    assert result.returncode == 0, result.stderr


def test_no_gates_module_mentions_crm_core_in_an_import() -> None:
    offenders = []
    for path in sorted((REPO / "gates").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "crm_core"]

    assert offenders == []
