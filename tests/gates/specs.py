"""A valid OS spec with known line numbers, and helpers to write vaults under tmp_path."""

from __future__ import annotations

from pathlib import Path

SPEC_ID = "OS-TESTE-AURORA-20260103-004"
PROJECT = "demo"

VALID_SPEC = """\
---
id: OS-TESTE-AURORA-20260103-004
number: 4
title: Teste
project: demo
status: rascunho
executor: CODEX
repository: demo
branch: main
scope: app
date: 2026-01-03
timezone: America/Sao_Paulo
endpoint: POST /ingest/message
gates: [lint, tests]
features: [features/os_004.feature]
---

# OS de teste

## 1️⃣ Contexto

Contexto da OS.

## 2️⃣ Execução

- **Executor:** CODEX

## 3️⃣ Entregáveis

- `app/models.py`
- tabela `crm_contacts`

## 4️⃣ Critérios de Aceite (OS 004)

- [x] **AC-01** Primeiro critério
- [ ] AC-02 Segundo critério
- [x] **AC-03** Gates PASS (gates: lint, tests)

## 5️⃣ Observações de Escopo

- Nada além.
"""
"""Line 2 is `id`, 11 `date`, 30 the first deliverable, 33 the criteria heading, 35-37 criteria."""


def replaced(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced once; fails loudly when `old` is not there."""
    assert old in text, f"{old!r} not in the spec"
    return text.replace(old, new, 1)


def make_root(tmp_path: Path) -> Path:
    """An empty repository: pyproject.toml and vault/."""
    root = tmp_path / "repo"
    (root / "vault").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n", encoding="utf-8")
    return root


def write_spec(
    root: Path,
    content: str | bytes = VALID_SPEC,
    *,
    spec_id: str = SPEC_ID,
    project: str = PROJECT,
) -> Path:
    """Write a spec at vault/<project>/os/<spec_id>.md and return its path."""
    folder = root / "vault" / project / "os"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec_id}.md"
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(data)
    return path


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
