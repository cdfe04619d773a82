"""Every benchmark of this folder in one run: one table, a JSON file and PNG plots.

Usage: python benchmarks/run_all.py [--quick] [--out bench-results] [--skip NAME ...]

Each figure is printed beside a baseline measured in the same run and their ratio; the gates'
figures are measured at growing vault sizes (100 -> 1,000 -> 10,000; 100 -> 1,000 with
--quick) to show how their cost grows. The results go to OUT/results.json and the plots to
OUT/*.png (matplotlib); OUT is ignored by git. Bounded: the whole run takes under 10 minutes
on a 2-core machine, --quick under 2. `nox -s bench` runs this.

The ingest and events figures need wrk, and PostgreSQL for the server ones
(AURORA_TEST_POSTGRES_URL, else the local server); the SQLite ones run on a file in a temporary
folder. The relay's figures need PostgreSQL and nats-server (a throwaway one is started).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import events_bench  # noqa: E402
import lint_vault  # noqa: E402
import relay_bench  # noqa: E402
import report_vault  # noqa: E402
import verify_ledger  # noqa: E402

Row = dict[str, Any]


def seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def read_all(folder: Path) -> None:
    """The baseline of a vault scan: read every file's bytes."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.read_bytes()


def hash_all(folder: Path) -> None:
    """The baseline of a ledger check: the sha256 of every file under the vault."""
    for path in folder.rglob("*"):
        if path.is_file():
            hashlib.sha256(path.read_bytes()).hexdigest()


def scaled(name: str, sizes: list[int], run: Callable[[Path, int], tuple[float, float]]) -> Row:
    points = []
    for size in sizes:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{size}-"))
        try:
            figure, baseline = run(folder, size)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        points.append({"size": size, "seconds": figure, "baseline_seconds": baseline})
        print(f"  {name} {size:>6,}: {figure:7.2f} s (baseline {baseline:6.2f} s)", flush=True)
    return {"name": name, "points": points}


def lint(folder: Path, size: int) -> tuple[float, float]:
    lint_vault.write_vault(folder, size)
    return lint_vault.time_lint(folder, 1), seconds(lambda: read_all(folder / "vault"))


def verify(folder: Path, size: int) -> tuple[float, float]:
    verify_ledger.build(folder, size)
    return verify_ledger.timed_verify(folder), seconds(lambda: hash_all(folder / "vault"))


def report(folder: Path, size: int) -> tuple[float, float]:
    report_vault.write_vault(folder, size)
    figure = report_vault.time_report(folder, 1)
    return figure, report_vault.time_copy(folder / "site")


SUITE_TEST = """\
import hashlib

import pytest


@pytest.mark.parametrize("n", range({tests}))
def test_work(n):
    data = str(n).encode()
    for _ in range({rounds}):
        data = hashlib.sha256(data).digest()
    assert len(data) == 32
"""


def certify_figures(quick: bool) -> Row:
    """On a small real project whose suite holds its scenarios (the gates read `acceptance`
    from the suite's own run), all in one run: (1) its README-style pytest command, bare;
    (2) `gates certify --check --fresh`, which runs every gate once in a clean checkout;
    (3) `gates certify --check` again on the same tree, which reuses the evidence (2) kept;
    (4) one OS's mutation testing, bounded by its front matter (kept out of the ratio)."""
    from tests.gates.certify_project import PYPROJECT, SPEC, make_project, spec

    folder = Path(tempfile.mkdtemp(prefix="bench-certify-"))
    try:
        project = make_project(folder / "demo")
        head, _, _ = PYPROJECT.partition("[tool.gates.commands]")
        project.write(
            "pyproject.toml",
            head
            + "[tool.gates.commands]\n"
            + "lint = [['python', '-c', 'print(1)']]\ntypes = [['python', '-c', 'print(1)']]\n"
            + "tests = [['python', '-m', 'pytest', '-q', '-p', 'no:cacheprovider']]\n"
            + "[tool.gates.from_tests]\nacceptance = ['tests/bdd']\n",
        )
        # a suite long enough (about 12 s here) that the ratio says what certify adds to a real
        # suite's run; gates' fixed cost (start-up, git, the clean checkout, the record) is
        # reported beside it in seconds
        tests, rounds = (200, 4_000) if quick else (1_000, 30_000)
        project.write("tests/test_work.py", SUITE_TEST.format(tests=tests, rounds=rounds))
        project.write(SPEC, spec().replace("gates: [", "mutation: {mutants: 0}\ngates: [", 1))
        project.commit("a suite that works")
        pytest_command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        gates = [sys.executable, "-m", "gates", "certify", "--check", "--root", str(project.root)]

        def timed(command: list[str]) -> float:
            started = time.perf_counter()
            subprocess.run(command, cwd=project.root, capture_output=True, check=False)
            return time.perf_counter() - started

        timed(pytest_command)  # warm-up: bytecode and the OS's file cache
        bare = timed(pytest_command)
        fresh = timed([*gates, "--fresh"])
        reused = timed(gates)
        # mutation testing of one OS: the mutation gate's own cost, outside the ratio
        project.write("src/app.py", "def fee(a):\n    return a * 2 if a > 100 else a + 1\n")
        project.write(SPEC, spec().replace("gates: [", "mutation: {mutants: 8}\ngates: [", 1))
        project.commit("a deliverable with code to mutate")
        timed(gates)  # the gates' evidence for this tree, so that what follows is mutation
        mutation = timed([*gates, "--fresh"]) - timed(gates)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"  pytest {bare:.2f} s, certify --fresh {fresh:.2f} s, certify reused {reused:.2f} s,"
        f" mutation (8 mutants) {mutation:.2f} s",
        flush=True,
    )
    return {
        "name": "certify",
        "seconds": fresh,
        "baseline_seconds": bare,
        "reused_seconds": reused,
        "mutation_seconds": mutation,
    }


def ingest(quick: bool) -> Row:
    duration = "2" if quick else "8"
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "ingest_bench.py"),
            "--duration",
            duration,
            "--json",
            "--copy-rows",
            "50000" if quick else "200000",
            "--warmup",
            "1" if quick else "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"ingest_bench failed:\n{result.stdout}{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout)
    print(
        f"  ingest: {figures['ratio_persisted64_to_validation']:.0%} and "
        f"{figures['ratio_batch_to_copy']:.0%} of their baselines",
        flush=True,
    )
    return {"name": "ingest", **figures}


def ingest_sqlite(quick: bool) -> Row:
    command = [sys.executable, str(HERE / "ingest_sqlite_bench.py"), "--json"]
    command += (
        ["--duration", "2", "--warmup", "1", "--rows", "20000"] if quick else ["--duration", "6"]
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"ingest_sqlite_bench failed:\n{result.stdout}{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout)
    print(
        f"  SQLite ingest: {figures['ratio_persisted64_to_raw_insert']:.1f}× and "
        f"{figures['ratio_batch_to_executemany']:.0%} of their baselines",
        flush=True,
    )
    return {"name": "ingest-sqlite", **figures}


def events(quick: bool) -> Row:
    """benchmarks/events_bench.py: the outbox's cost, the naive peer and the feed's reads."""
    try:
        figures = events_bench.run(quick=quick)
    except events_bench.BenchmarkError as error:
        raise SystemExit(f"events_bench failed: {error}") from None
    ingest, read = figures["ingest"], figures["read"]
    print(
        f"  events: outbox on/off {ingest['ratio_on_to_off']:.0%}, ours/peer "
        f"{ingest['ratio_ours_to_peer']:.2f}×, GET /events {read['ratio_http_to_select']:.0%} "
        "of a bare SELECT",
        flush=True,
    )
    return {"name": "events", **figures}


def relay(quick: bool) -> Row:
    """benchmarks/relay_bench.py: the relay against a bare nats-py JetStream publish loop."""
    figures = relay_bench.measure(events=5_000 if quick else 20_000)
    print(
        f"  relay: {figures['relay_events_per_s']:,.0f} events/s, "
        f"{figures['ratio_relay_to_bare']:.0%} of a bare publish loop",
        flush=True,
    )
    return {"name": "relay", **figures}


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if "ingest" in results:
        f = results["ingest"]
        p64, a = f["b_persisted_64"], f["a_validation_only"]
        rows.append(
            (
                f"persisted ingest, 64 conns: {p64['requests_per_s']:,.0f} req/s, "
                f"p99 {p64['p99_ms']:.0f} ms",
                f"validation only: {a['requests_per_s']:,.0f} req/s",
                f"{f['ratio_persisted64_to_validation']:.0%}",
                "≥ 40%, p99 < 50 ms",
            )
        )
        rows.append(
            (
                f"batch ingest: {f['d_batch_messages_per_s']:,.0f} msg/s",
                f"COPY: {f['e_copy_rows_per_s']:,.0f} rows/s",
                f"{f['ratio_batch_to_copy']:.0%}",
                "≥ 40%",
            )
        )
    if "events" in results:
        f, r = results["events"]["ingest"], results["events"]["read"]
        on, off, peer = f["outbox_on"], f["outbox_off"], f["peer"]
        conns = f["connections"]
        rows.append(
            (
                f"persisted ingest, outbox on, {conns} conns: {on['requests_per_s']:,.0f} req/s, "
                f"p99 {on['p99_ms']:.0f} ms",
                f"outbox off (CRM_OUTBOX=false): {off['requests_per_s']:,.0f} req/s, "
                f"p99 {off['p99_ms']:.0f} ms",
                f"{f['ratio_on_to_off']:.0%}",
                "≥ 90%",
            )
        )
        rows.append(
            (
                f"persisted ingest, outbox on, {conns} conns: {on['requests_per_s']:,.0f} req/s, "
                f"p99 {on['p99_ms']:.0f} ms",
                f"naive FastAPI + psycopg peer: {peer['requests_per_s']:,.0f} req/s, "
                f"p99 {peer['p99_ms']:.0f} ms",
                f"{f['ratio_ours_to_peer']:.2f}×",
                "≥ 2×, lower p99",
            )
        )
        rows.append(
            (
                f"GET /events, pages of {r['page_size']:,}: {r['http_events_per_s']:,.0f} events/s",
                f"bare SELECT of the rows: {r['select_rows_per_s']:,.0f} rows/s",
                f"{r['ratio_http_to_select']:.0%}",
                "none (reported)",
            )
        )
    if "relay" in results:
        f = results["relay"]
        rows.append(
            (
                f"relay to JetStream ({f['events']:,} events): "
                f"{f['relay_events_per_s']:,.0f} events/s",
                f"bare nats-py publish loop: {f['bare_events_per_s']:,.0f} events/s",
                f"{f['ratio_relay_to_bare']:.0%}",
                "≥ 50%",
            )
        )
    if "ingest-sqlite" in results:
        f = results["ingest-sqlite"]
        p64 = f["b_persisted_64"]
        rows.append(
            (
                f"SQLite persisted ingest, 64 conns: {p64['requests_per_s']:,.0f} req/s, "
                f"p99 {p64['p99_ms']:.0f} ms",
                f"INSERT + COMMIT a row at a time: {f['c_raw_insert_rows_per_s']:,.0f} rows/s",
                f"{f['ratio_persisted64_to_raw_insert']:.1f}×",
                "none (one writer)",
            )
        )
        rows.append(
            (
                f"SQLite batch ingest: {f['d_batch_messages_per_s']:,.0f} msg/s",
                f"executemany in one transaction: {f['e_executemany_rows_per_s']:,.0f} rows/s",
                f"{f['ratio_batch_to_executemany']:.0%}",
                "none",
            )
        )
    if "certify" in results:
        c = results["certify"]
        rows.append(
            (
                f"gates certify --fresh (demo suite): {c['seconds']:.2f} s "
                f"(fixed cost {c['seconds'] - c['baseline_seconds']:.2f} s)",
                f"its pytest command bare: {c['baseline_seconds']:.2f} s",
                f"{c['seconds'] / c['baseline_seconds']:.2f}×",
                "≤ 1.1×",
            )
        )
        rows.append(
            (
                f"gates certify, evidence reused: {c['reused_seconds']:.2f} s",
                f"its pytest command bare: {c['baseline_seconds']:.2f} s",
                f"{c['reused_seconds'] / c['baseline_seconds']:.2f}×",
                "< 2 s",
            )
        )
        rows.append(
            (
                f"mutation testing, 8 mutants: {c['mutation_seconds']:.2f} s",
                "(the OS's own bound)",
                "—",
                "≤ 180 s",
            )
        )
    for name, what, floor in (
        ("lint", "gates lint", "reading the files"),
        ("verify", "gates verify", "hashing the files"),
        ("report", "gates report", "copying the site"),
    ):
        if name not in results:
            continue
        points = results[name]["points"]
        last = points[-1]
        growth = " → ".join(f"{p['seconds']:.2f}" for p in points)
        sizes = " → ".join(f"{p['size']:,}" for p in points)
        rows.append(
            (
                f"{what}, {sizes} OSes: {growth} s",
                f"{floor}: {last['baseline_seconds']:.2f} s",
                f"{last['seconds'] / last['baseline_seconds']:.1f}×",
                "linear growth" + (", 10,000 < 30 s" if name == "report" else ""),
            )
        )
    return rows


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    floors = {
        "lint": "reading the files",
        "verify": "hashing the files",
        "report": "copying the site",
    }
    for name in ("lint", "verify", "report"):
        if name not in results:
            continue
        points = results[name]["points"]
        figure, axes = plt.subplots(figsize=(6, 4))
        sizes = [p["size"] for p in points]
        axes.plot(sizes, [p["seconds"] for p in points], "o-", label=f"gates {name}")
        axes.plot(
            sizes, [p["baseline_seconds"] for p in points], "s--", label=f"baseline: {floors[name]}"
        )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("OSes in the vault")
        axes.set_ylabel("seconds")
        axes.set_title(f"gates {name} against vault size")
        axes.legend()
        axes.grid(True, which="both", alpha=0.3)
        path = out / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    if "ingest" in results:
        f = results["ingest"]
        bars = {
            "validation only": f["a_validation_only"]["requests_per_s"],
            "persisted 16": f["b_persisted_16"]["requests_per_s"],
            "persisted 64": f["b_persisted_64"]["requests_per_s"],
            "raw INSERT 16": f["c_raw_insert_rows_per_s_16_clients"],
            "batch msg/s": f["d_batch_messages_per_s"],
            "COPY rows/s": f["e_copy_rows_per_s"],
        }
        written.append(bar_chart(plt, out / "ingest.png", "ingest against its baselines", bars))
    if "events" in results:
        f, r = results["events"]["ingest"], results["events"]["read"]
        bars = {
            "outbox on req/s": f["outbox_on"]["requests_per_s"],
            "outbox off req/s": f["outbox_off"]["requests_per_s"],
            "naive peer req/s": f["peer"]["requests_per_s"],
            "GET /events ev/s": r["http_events_per_s"],
            "bare SELECT rows/s": r["select_rows_per_s"],
        }
        title = "outbox and event feed against their baselines"
        written.append(bar_chart(plt, out / "events.png", title, bars))
    if "ingest-sqlite" in results:
        f = results["ingest-sqlite"]
        bars = {
            "persisted 16": f["b_persisted_16"]["requests_per_s"],
            "persisted 64": f["b_persisted_64"]["requests_per_s"],
            "INSERT+COMMIT": f["c_raw_insert_rows_per_s"],
            "batch msg/s": f["d_batch_messages_per_s"],
            "executemany": f["e_executemany_rows_per_s"],
        }
        title = "ingest on SQLite against its baselines"
        written.append(bar_chart(plt, out / "ingest-sqlite.png", title, bars))
    return written


def bar_chart(plt: Any, path: Path, title: str, bars: dict[str, float]) -> Path:
    """Horizontal bars of figures measured in one run, saved as a PNG."""
    figure, axes = plt.subplots(figsize=(7, 1.5 + 0.4 * len(bars)))
    axes.barh(list(bars), list(bars.values()))
    axes.set_xlabel("per second (same run)")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, shorter runs (< 2 min)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=[
            "ingest",
            "events",
            "relay",
            "ingest-sqlite",
            "certify",
            "lint",
            "verify",
            "report",
        ],
    )
    args = parser.parse_args()
    os.environ.setdefault("NO_COLOR", "1")
    sizes = [100, 1_000] if args.quick else [100, 1_000, 10_000]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}"
        ),
        "mode": "quick" if args.quick else "full",
    }
    steps: list[tuple[str, Callable[[], Row]]] = [
        ("ingest", lambda: ingest(args.quick)),
        ("events", lambda: events(args.quick)),
        ("relay", lambda: relay(args.quick)),
        ("ingest-sqlite", lambda: ingest_sqlite(args.quick)),
        ("certify", lambda: certify_figures(args.quick)),
        ("lint", lambda: scaled("lint", sizes, lint)),
        ("verify", lambda: scaled("verify", sizes, verify)),
        ("report", lambda: scaled("report", sizes, report)),
    ]
    skipped: dict[str, str] = dict.fromkeys(args.skip, "skipped on request")
    for name in ("ingest", "events", "ingest-sqlite"):
        if name not in skipped and shutil.which("wrk") is None:
            skipped[name] = "needs wrk (Debian: apt-get install wrk)"
    nats_server = os.access("/usr/sbin/nats-server", os.X_OK) or shutil.which("nats-server")
    if "relay" not in skipped and not nats_server:
        skipped["relay"] = "needs nats-server (Debian: apt-get install nats-server)"
    for name, step in steps:
        if name in skipped:
            print(f"{name}: {skipped[name]}", flush=True)
            continue
        print(f"{name} …", flush=True)
        results[name] = step()
    results["skipped"] = skipped
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    pictures = plots(results, args.out)
    rows = table(results)
    print()
    when, machine = results["date"], results["machine"]
    print(f"{when} — {machine} — {results['mode']} run, {results['total_seconds']} s")
    print()
    print("| figure | same-run baseline | ratio | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for name, reason in skipped.items():
        print(f"({name}: {reason})")
    print()
    print(f"wrote {args.out / 'results.json'} and {', '.join(p.name for p in pictures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
