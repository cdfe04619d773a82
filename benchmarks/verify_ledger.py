"""`gates verify` against ledger size: 100, 1,000 and 10,000 entries with their records.

Builds, in a temporary folder, a git repository whose vault holds N closure records (markdown,
JSON twin and in-toto statement per entry, small but real) chained in a ledger exactly as
`gates certify` writes them, then times the real `gates verify` command (median of three).
Target: 10,000 entries in under 5 s, cost growing linearly.

    python benchmarks/verify_ledger.py [--sizes 100 1000 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gates.record import ledger  # noqa: E402

SPEC_ID = "OS-BENCH-VERIFICACAO-20260101-001"


def build(root: Path, size: int) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'bench'\nversion = '0'\n")
    folder = root / "vault" / "bench" / "fechamentos" / SPEC_ID
    folder.mkdir(parents=True)
    lines = []
    previous = ledger.GENESIS
    for seq in range(1, size + 1):
        commit = hashlib.sha1(str(seq).encode()).hexdigest()
        files = {}
        for key, suffix, body in (
            ("record", ".md", f"# Fechamento {seq}\n\n" + "linha do registro\n" * 40),
            ("twin", ".json", json.dumps({"decision": "CONCLUÍDA", "seq": seq}) + "\n"),
            ("statement", ".intoto.json", json.dumps({"_type": "statement", "seq": seq}) + "\n"),
        ):
            path = folder / f"{commit[:12]}{suffix}"
            path.write_text(body, encoding="utf-8")
            relative = path.relative_to(root).as_posix()
            files[key] = {"path": relative, "sha256": hashlib.sha256(body.encode()).hexdigest()}
        entry = {
            "time": "2026-01-01T00:00:00+00:00",
            "os": SPEC_ID,
            "decision": "CONCLUÍDA",
            "commit": commit,
            **files,
            "spec": {"path": f"vault/bench/os/{SPEC_ID}.md", "sha256": "0" * 64},
            "features": {},
            "steps": {},
            "config": "0" * 64,
            "seq": seq,
            "prev": previous,
            "key_id": None,
            "public_key": None,
        }
        entry["hash"] = ledger.entry_hash(entry)
        entry["signature"] = None
        previous = entry["hash"]
        lines.append(ledger.canonical(entry))
    (root / "vault" / "ledger.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed_verify(root: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "gates", "verify", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"gates verify failed:\n{result.stdout}{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = parser.parse_args()
    print(f"{'entries':>8} {'median s':>9} {'ms/entry':>9} {'growth':>8}")
    previous: tuple[int, float] | None = None
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="gates-verify-bench-") as scratch:
            root = Path(scratch)
            build(root, size)
            median = statistics.median(timed_verify(root) for _ in range(3))
        growth = f"{median / previous[1]:.1f}x" if previous else "-"
        print(f"{size:>8} {median:>9.2f} {median / size * 1000:>9.3f} {growth:>8}")
        previous = (size, median)


if __name__ == "__main__":
    main()
