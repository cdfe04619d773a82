"""Time `gates report` on generated vaults of 100, 1,000 and 10,000 certified OSes.

Usage: python benchmarks/report_vault.py [--sizes 100 1000 10000] [--repeat 1]

Each vault is written to a temporary folder (removed afterwards): specs the size of the genesis
OS 004, one closure per OS (record, JSON twin with six criteria and six gates with their logs,
in-toto statement) and a hash-chained ledger that verifies, with a mix of CONCLUÍDA, REPROVADA,
REGREDIDA and not yet certified OSes. The real command `gates report --root DIR --out SITE` runs
in a subprocess, `--repeat` times per size; the median is reported with the cost per OS, how
time grows against size and the marginal cost of each added OS (flat when growth is linear).
The same-run baseline is copying the finished site (the same files and bytes) to a new folder:
the floor any renderer writing that site pays for the file system alone.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = "bench"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
GATES = ["lint", "types", "tests", "migrations", "acceptance", "deliverables"]
LOG = "".join(f"line {n}: checked module crm_core/module_{n}.py ... ok\n" for n in range(40))

SPEC = """\
---
id: {spec_id}
number: {number}
title: Especificação gerada {number}
project: bench
status: declarada concluída
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
**SSOT:** Vault

> Os boxes marcados abaixo são a **Declaração do executor**, não prova.

---

## 1️⃣ Contexto

Esta OS {number} materializa uma capacidade do **CRM Headless**, desbloqueando:

- ingestão universal de intenções (Assistente 24x7),
- persistência estruturável para Rodobens e Jurídico,
- fundação técnica para Conductor, Chronos e ALVARO.

Não há objetivo de produto final nem UI — apenas **capacidade operacional real**.

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

- [x] **AC-01** Model `Contact` criado conforme OS (tabela `crm_contacts`)
- [x] **AC-02** Model `Deal` criado conforme OS (FK funcional para `crm_contacts`)
- [x] **AC-03** Endpoint `/ingest/message` ativo (rota registrada no app)
- [x] **AC-04** Migração Alembic versionada no repo (contacts + deals)
- [ ] **AC-05** JSONB suportado no Postgres (schema via `with_variant`)
- [x] **AC-06** Gates PASS (gates: lint, types, tests, migrations, acceptance, deliverables)

---

## 5️⃣ Observações de Escopo

- Nesta fase:
  - ingest **não persiste eventos**
  - ingest **não executa LLM**
"""

DECISIONS = ["CONCLUÍDA", "CONCLUÍDA", "CONCLUÍDA", "REPROVADA", "REGREDIDA", None]


def canonical(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def twin(spec_id: str, number: int, decision: str, when: datetime) -> dict[str, Any]:
    failed = decision != "CONCLUÍDA"
    folder = f"vault/{PROJECT}/fechamentos/{spec_id}/{COMMIT[:12]}"
    return {
        "schema": "aurora-gates/closure/v1",
        "os": {"id": spec_id, "number": number, "timezone": "America/Sao_Paulo"},
        "decision": decision,
        "concluded": not failed,
        "commit": COMMIT,
        "branch": "main",
        "worktree": {"clean": True, "changes": []},
        "certified_at": when.isoformat(timespec="seconds"),
        "record": {"markdown": f"{folder}.md", "json": f"{folder}.json"},
        "reasons": ["gate tests FAIL: 1 of 412 tests failed"] if failed else [],
        "errors": [],
        "warnings": [],
        "regression": {"flipped": ["AC-03"], "since": COMMIT} if decision == "REGREDIDA" else None,
        "criteria": [
            {
                "id": f"AC-0{n}",
                "text": f"Critério gerado {n} com `código` e texto",
                "claimed": n != 5,
                "verdict": "FAIL" if failed and n == 3 else "PASS",
                "claim_contradicted": failed and n == 3,
                "proofs": [
                    {
                        "kind": "cenário",
                        "ref": f"features/os_{number:05d}.feature:{10 * n}",
                        "name": f"Cenário {n}",
                        "status": "failed" if failed and n == 3 else "passed",
                        "message": "",
                    }
                ],
            }
            for n in range(1, 7)
        ],
        "gates": [
            {
                "name": gate,
                "status": "FAIL" if failed and gate == "tests" else "PASS",
                "duration_s": 1.5,
                "commands": [f"python -m {gate}"],
                "detail": "",
                "facts": {},
                "log": LOG,
            }
            for gate in GATES
        ],
        "scenarios": [
            {
                "feature": f"features/os_{number:05d}.feature",
                "line": 10 * n,
                "name": f"Cenário {n}",
                "tags": [f"@AC-0{n}", f"@OS-{number:03d}"],
                "outcome": "passed",
                "runs": 1,
                "message": "",
            }
            for n in range(1, 7)
        ],
        "deliverables": [
            {"path": f"crm_core/module_{n}.py", "in_commit": True, "in_tree": True}
            for n in range(6)
        ],
        "inputs": {},
        "tool_versions": {"python": "3.11", "pytest": "9"},
    }


def write_vault(root: Path, count: int) -> None:
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\n", encoding="utf-8")
    specs = root / "vault" / PROJECT / "os"
    specs.mkdir(parents=True)
    start = datetime(2026, 1, 3, 12, 0, tzinfo=UTC)
    previous = "0" * 64
    lines = []
    for number in range(1, count + 1):
        spec_id = f"OS-BENCH-VAULT-20260103-{number:05d}"
        spec = SPEC.format(spec_id=spec_id, number=number).encode("utf-8")
        (specs / f"{spec_id}.md").write_bytes(spec)
        decision = DECISIONS[number % len(DECISIONS)]
        if decision is None:
            continue
        when = start + timedelta(seconds=number)
        document = twin(spec_id, number, decision, when)
        files = {
            "record": f"# Fechamento {spec_id}\n\n{decision}\n".encode(),
            "twin": (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode(),
            "statement": canonical({"subject": spec_id}).encode(),
        }
        folder = root / "vault" / PROJECT / "fechamentos" / spec_id
        folder.mkdir(parents=True)
        suffixes = {"record": ".md", "twin": ".json", "statement": ".intoto.json"}
        entry: dict[str, Any] = {
            "seq": len(lines) + 1,
            "time": when.isoformat(),
            "os": spec_id,
            "decision": decision,
            "commit": COMMIT,
            "spec": {"path": f"vault/{PROJECT}/os/{spec_id}.md", "sha256": sha256(spec)},
            "features": {},
            "steps": {},
            "config": sha256(b""),
            "prev": previous,
            "key_id": None,
            "public_key": None,
        }
        for key, data in files.items():
            path = folder / f"{COMMIT[:12]}{suffixes[key]}"
            path.write_bytes(data)
            entry[key] = {"path": path.relative_to(root).as_posix(), "sha256": sha256(data)}
        entry["hash"] = sha256(canonical(entry).encode("utf-8"))
        entry["signature"] = None
        previous = entry["hash"]
        lines.append(canonical(entry) + "\n")
    (root / "vault" / "ledger.jsonl").write_text("".join(lines), encoding="utf-8")


def gates_command() -> list[str]:
    script = Path(sys.executable).parent / "gates"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gates"]


def time_report(root: Path, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(
            [*gates_command(), "report", "--root", str(root), "--out", str(root / "site")],
            capture_output=True,
            text=True,
            check=False,
        )
        timings.append(time.perf_counter() - start)
        if result.returncode != 0 or "ledger verified" not in result.stdout:
            raise SystemExit(f"gates report failed on {root}:\n{result.stdout}{result.stderr}")
    return statistics.median(timings)


def time_copy(site: Path) -> float:
    """Seconds to copy the site to a new folder: the file system's share of the work."""
    start = time.perf_counter()
    shutil.copytree(site, site.with_name("site-copy"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated vaults and sites")
    args = parser.parse_args()

    print(f"command: {' '.join(gates_command())} report --root DIR --out DIR/site")
    print(f"(median of {args.repeat}; 5 of every 6 OSes have a closure in the ledger)")
    print(
        f"{'OSes':>10} {'seconds':>9} {'ms/OS':>8} {'size x':>7} {'time x':>7} "
        f"{'marginal ms/OS':>15} {'site MB':>8} {'copy s':>7} {'x copy':>7}"
    )
    previous: tuple[int, float] | None = None
    folders: list[Path] = []  # removed at the end: deleting a large site slows the next run
    try:
        for size in args.sizes:
            folder = Path(tempfile.mkdtemp(prefix=f"gates-report-bench-{size}-"))
            folders.append(folder)
            write_vault(folder, size)
            seconds = time_report(folder, args.repeat)
            megabytes = sum(p.stat().st_size for p in (folder / "site").rglob("*")) / 1e6
            copy = time_copy(folder / "site")
            if previous:
                marginal = (seconds - previous[1]) / (size - previous[0]) * 1000
                growth = (
                    f"{size / previous[0]:>7.1f} {seconds / previous[1]:>7.2f} {marginal:>15.3f}"
                )
            else:
                growth = f"{'':>7} {'':>7} {'':>15}"
            print(
                f"{size:>10,} {seconds:>9.3f} {seconds / size * 1000:>8.3f} {growth} "
                f"{megabytes:>8.1f} {copy:>7.2f} {seconds / copy:>7.1f}",
                flush=True,
            )
            previous = (size, seconds)
    finally:
        for folder in folders:
            if args.keep:
                print(f"kept {folder}")
            else:
                shutil.rmtree(folder)


if __name__ == "__main__":
    main()
