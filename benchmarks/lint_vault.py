"""Time `gates lint` on generated vaults of 100, 1,000 and 10,000 OS specs.

Usage: python benchmarks/lint_vault.py [--sizes 100 1000 10000] [--repeat 3]

Each vault is written to a temporary folder (removed afterwards) with valid specs the size of the
genesis OS 004; the real command `gates lint --root DIR` runs in a subprocess, `--repeat` times
per size, and the median is reported with the cost per document, how time grows against size,
and the marginal cost of each added document (flat when growth is linear: the fixed start-up
cost of the command is what makes small vaults look dearer per document). Not part of the test
run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = "bench"

SPEC = """\
---
id: {spec_id}
number: {number}
title: Especificação gerada {number}
project: bench
status: em execução
executor: CODEX / Copilot (executor mecânico)
repository: aurora-crm
branch: main
scope: crm_core
date: 2026-01-03
timezone: America/Sao_Paulo
endpoint: POST /ingest/message
gates: [lint, types, tests, migrations, acceptance, deliverables]
features: [features/os_{number:05d}.feature]
---

# 🧬 ORDEM DE SERVIÇO — ESPECIFICAÇÃO
## Especificação gerada (OS {number})

**Natureza:** Especificação executável (Governança da Verdade)

---

## 1️⃣ Contexto

Esta OS materializa uma capacidade do **CRM Headless**, desbloqueando:

- ingestão universal de intenções (Assistente 24x7),
- persistência estruturável para Rodobens e Jurídico,
- fundação técnica para Conductor, Chronos e ALVARO.

---

## 2️⃣ Execução

- **Executor:** CODEX / Copilot (executor mecânico)
- **Branch:** `main`
- **Escopo:** `crm_core`

---

## 3️⃣ Entregáveis

- `crm_core/models/contact.py`
- `crm_core/models/deal.py`
- `crm_core/api/v1/ingest.py`
- `crm_core/main.py` (roteamento)
- Migração Alembic:
  - `alembic/versions/20260103_0002_contacts_deals.py`
  - cria `crm_contacts` + `crm_deals`
  - FK funcional (`crm_deals.contact_id -> crm_contacts.id`)
- `PLAN.md` atualizado

---

## 4️⃣ Critérios de Aceite (OS {number})

- [x] **AC-01** Model `Contact` criado conforme OS
- [x] **AC-02** Model `Deal` criado conforme OS
- [ ] **AC-03** Endpoint `/ingest/message` ativo (rota registrada no app)
- [ ] **AC-04** Migração Alembic versionada no repo (contacts + deals)
- [ ] **AC-05** JSONB suportado no Postgres (schema via `with_variant`)
- [x] **AC-06** Gates PASS (gates: lint, types, tests, migrations, acceptance, deliverables)

---

## 5️⃣ Observações de Escopo

- Nesta fase o ingest **não persiste eventos** nem **executa LLM**.
"""


def write_vault(root: Path, count: int) -> None:
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n", encoding="utf-8")
    folder = root / "vault" / PROJECT / "os"
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        spec_id = f"OS-BENCH-VAULT-20260103-{number:05d}"
        text = SPEC.format(spec_id=spec_id, number=number)
        (folder / f"{spec_id}.md").write_text(text, encoding="utf-8")


def gates_command() -> list[str]:
    script = Path(sys.executable).parent / "gates"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gates"]


def time_lint(root: Path, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(
            [*gates_command(), "lint", "--root", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        timings.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"gates lint failed on {root}:\n{result.stdout}{result.stderr}")
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"command: {' '.join(gates_command())} lint --root DIR (median of {args.repeat})")
    print(
        f"{'documents':>10} {'seconds':>9} {'ms/doc':>8} {'size x':>7} {'time x':>7} "
        f"{'marginal ms/doc':>16}"
    )
    previous: tuple[int, float] | None = None
    for size in args.sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"gates-bench-{size}-"))
        try:
            write_vault(folder, size)
            seconds = time_lint(folder, args.repeat)
        finally:
            shutil.rmtree(folder)
        growth = ""
        if previous:
            marginal = (seconds - previous[1]) / (size - previous[0]) * 1000
            growth = f"{size / previous[0]:>7.1f} {seconds / previous[1]:>7.2f} {marginal:>16.3f}"
        print(f"{size:>10,} {seconds:>9.3f} {seconds / size * 1000:>8.3f} {growth}")
        previous = (size, seconds)


if __name__ == "__main__":
    main()
