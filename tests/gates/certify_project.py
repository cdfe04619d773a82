"""A small repository, made for a test, that `gates certify` can certify for real.

It has its own git history, gate commands that are quick Python one-liners, one OS spec, a
feature file and pytest-bdd steps whose outcome the test controls through `src/flag.txt`.
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

SPEC_ID = "OS-DEMO-CERTIFICACAO-20260105-001"
SPEC = f"vault/demo/os/{SPEC_ID}.md"

PYPROJECT = """\
[project]
name = "demo"
version = "0"

[tool.pytest.ini_options]
bdd_features_base_dir = "features/"
pytest_alembic_tests_path = "tests/none.py"

[tool.gates]
steps = ["tests/bdd"]
tools = ["pytest", "pytest-bdd"]

[tool.gates.commands]
lint = [["python", "-c", "print('lint ok')"]]
types = [["python", "-c", "print('types ok')"]]
tests = [["python", "-c", "import sys; sys.exit(open('src/tests.txt').read().strip() != 'ok')"]]
"""

FEATURE = """\
# language: pt
@OS-001
Funcionalidade: Demonstração

  @AC-01
  Cenário: A bandeira está verde
    Dado a bandeira do projeto
    Então ela diz "ok"
"""

STEPS = """\
from pathlib import Path

from pytest_bdd import given, parsers, scenarios, then

scenarios("demo.feature")


@given("a bandeira do projeto", target_fixture="flag")
def flag() -> str:
    return Path("src/flag.txt").read_text(encoding="utf-8").strip()


@then(parsers.parse('ela diz "{expected}"'))
def says(flag: str, expected: str) -> None:
    assert flag == expected
"""

PLAN = """\
# Plan

<!-- gates:status:begin (written by `gates certify`; do not edit) -->
<!-- gates:status:end -->
"""


def spec(criteria: str = "", *, gates: str = "lint, types, tests, acceptance, deliverables") -> str:
    extra = textwrap.indent(textwrap.dedent(criteria).strip(), "") if criteria else ""
    return f"""\
---
id: {SPEC_ID}
number: 1
title: Certificação de demonstração
project: demo
status: declarada concluída
executor: Equipe de teste
repository: demo
branch: main
scope: src
date: 2026-01-05
timezone: America/Sao_Paulo
gates: [{gates}]
features: [features/demo.feature]
---

# OS de demonstração

## 1️⃣ Contexto

Um projeto pequeno para exercitar o certificador.

## 3️⃣ Entregáveis

- `src/app.py`

## 4️⃣ Critérios de Aceite

- [x] **AC-01** A bandeira está verde
- [x] **AC-02** Gates PASS (gates: lint, types, tests)
{extra}

## 5️⃣ Observações de Escopo

- Nada além da bandeira.
"""


@dataclass
class Project:
    root: Path

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True
        ).stdout

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()


def make_project(root: Path) -> Project:
    root.mkdir(parents=True)
    project = Project(root)
    project.git("init", "-q", "-b", "main")
    project.git("config", "user.email", "demo@example.invalid")
    project.git("config", "user.name", "Demo")
    project.write("pyproject.toml", PYPROJECT)
    project.write("PLAN.md", PLAN)
    project.write(SPEC, spec())
    project.write("features/demo.feature", FEATURE)
    project.write("tests/bdd/test_demo.py", STEPS)
    project.write("src/app.py", "print('demo')\n")
    project.write("src/flag.txt", "ok\n")
    project.write("src/tests.txt", "ok\n")
    project.write(".gitignore", "__pycache__/\n")
    project.commit("initial")
    return project
