"""A corpus of hostile vault documents, through the real `gates lint` and `gates certify`.

Each run is a subprocess with a memory ceiling and a time limit: broken YAML, a YAML bomb, a
50 MB file, binary bytes, symlinks out of the repository and deliverables that climb out of it
must each get a clear file:line error, never a traceback, and nothing outside the repository
may be read.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gates.certify_project import SPEC_ID, Project, make_project, spec

MEMORY_CEILING = 1 << 30  # bytes of address space a gates process may use
TIME_LIMIT = 120  # seconds
SECRET = "segredo-fora-do-repositorio-7f3a"

BILLION_LAUGHS = (
    "---\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
    "---\n"
)


def hostile_id(number: int) -> str:
    return f"OS-DEMO-HOSTIL-20260105-{number:03d}"


def write_hostile_vault(project: Project, outside: Path) -> dict[str, str]:
    """The hostile documents, by path, with what each one's error must say."""
    folder = project.root / "vault/demo/os"
    expected: dict[str, str] = {}

    def put(number: int, data: bytes, says: str) -> None:
        path = folder / f"{hostile_id(number)}.md"
        path.write_bytes(data)
        expected[path.relative_to(project.root).as_posix()] = says

    put(101, b"---\nid: [\ntitle: x\n---\n# corpo\n", "YAML")
    put(102, BILLION_LAUGHS.encode(), "alias")
    put(103, b"---\n" + b"a" * (50 << 20) + b"\n---\n", "too large")
    put(104, bytes(range(256)) * 64, "UTF-8")
    put(105, b"\x00" * 4096, "front matter")
    secret_file = outside / "segredo.md"
    secret_file.write_text(f"---\nid: {SECRET}\n---\n{SECRET}\n", encoding="utf-8")
    link = folder / f"{hostile_id(106)}.md"
    link.symlink_to(secret_file)
    expected[link.relative_to(project.root).as_posix()] = "outside the repository"
    deliverables = ((107, "../../../etc/passwd", "escapes"), (108, "/etc/passwd", "absolute"))
    for number, deliverable, says in deliverables:
        text = spec().replace(SPEC_ID, hostile_id(number)).replace("number: 1", f"number: {number}")
        text = text.replace("- `src/app.py`", f"- `{deliverable}`")
        assert deliverable in text
        put(number, text.encode(), says)
    return expected


def limit_resources() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))


def gates(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gates", *args, "--root", str(project.root)],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT,
        preexec_fn=limit_resources,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Project, dict[str, str]]:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = make_project(tmp_path / "repo")
    expected = write_hostile_vault(project, outside)
    project.commit("hostile documents")
    return project, expected


def test_lint_names_every_hostile_document_and_never_crashes(
    hostile: tuple[Project, dict[str, str]],
) -> None:
    project, expected = hostile
    result = gates(project, "lint")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert SECRET not in output
    for path, says in expected.items():
        lines = [line for line in output.splitlines() if line.startswith(f"{path}:")]
        assert lines, f"{path} is not named:\n{output}"
        assert any(says.lower() in line.lower() for line in lines), (path, lines)
    assert f"vault/demo/os/{SPEC_ID}.md:" not in output  # the valid spec has no error


def test_certify_refuses_a_vault_with_hostile_documents_in_one_line(
    hostile: tuple[Project, dict[str, str]],
) -> None:
    """Certifying the vault decides nothing while a spec is invalid: it names the first error
    (file:line) and how many there are, and sends the user to `gates lint` for the rest."""
    project, expected = hostile
    for args in (("certify", "--check"), ("certify",)):
        result = gates(project, *args)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output  # invalid input, as for lint
        assert "Traceback" not in output
        assert SECRET not in output
        assert output.startswith("gates: error: vault/demo/os/OS-DEMO-HOSTIL-"), output
        assert f"in {len(expected)} spec(s); run `gates lint`" in output
    assert not list((project.root / "vault").rglob("*.json"))  # nothing was written


def test_an_os_named_on_the_command_line_is_certified_beside_hostile_documents(
    hostile: tuple[Project, dict[str, str]],
) -> None:
    project, _ = hostile
    result = gates(project, "certify", "--check", SPEC_ID)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert SECRET not in output
    assert "gates certify: 1 of 1 OS CONCLUÍDA" in output
