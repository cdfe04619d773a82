"""Measure what the outbox (OS 007) costs and what `GET /events` reads, against PostgreSQL, on
this machine, over loopback. Not part of the tests.

Usage: python benchmarks/events_bench.py [--admin-url URL] [--duration 8] [--rounds 2]
       [--events 20000] [--json]

Needs `wrk` and a PostgreSQL server (the admin URL defaults to AURORA_TEST_POSTGRES_URL, else
the local server). Each server measurement has its own throwaway database (created, migrated,
dropped afterwards; benchmarks/ingest_bench.py's `throwaway_database`), and is bounded by
`--duration` seconds after `--warmup` seconds of the same load. Measured in one run:

  (a) persisted single-message ingest (`POST /ingest/message`, benchmarks/ingest_bench.py's
      wrk script, 64 connections, `crm-core serve --workers 2`, the senders' contacts created
      first), with the outbox on (the default) and off (CRM_OUTBOX=false): requests/s, p50,
      p99, and on/off. Afterwards crm_events is counted: the "on" database must hold one
      `message.received` event per message stored, the "off" one none, or the run fails.
  (b) the naive peer (benchmarks/naive_peer.py: FastAPI, pydantic, one INSERT and one
      transaction a request through a psycopg pool), served the same way (2 processes, a
      SO_REUSEPORT socket each), driven by the same wrk script and connections: ours (outbox
      on) / peer.
  (c) reading the feed: `--events` messages are stored through the app's own write path
      (crm_core.services.ingest.store_messages, 1,000 a transaction), then every event is read
      over HTTP through `GET /events?limit=1000`, following `next_cursor`, one client, against
      `crm-core serve`; and the same rows by a bare `SELECT id, type, subject, time, data FROM
      crm_events ORDER BY txid, seq` through psycopg (fetchall) on one open connection. Events/s
      of both (the median of `--passes` timed passes of each, taken in turn, after one untimed
      pass) and their ratio.

With `--rounds 2` (the default), (a) and (b) are measured twice, in the order off, on, peer,
then peer, on, off, so that a slow spell of the machine weighs on each alike; the figures are
the medians of the rounds, and every run is kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from ingest_bench import (  # noqa: E402
    CONTENT,
    SINGLE_LUA,
    Server,
    _free_port,
    create_key,
    default_admin_url,
    measure_http,
    measure_server,
    seed_contacts,
    throwaway_database,
)

CONNECTIONS = 64
PAGE = 1000  # GET /events' largest page
BARE_SELECT = "SELECT id, type, subject, time, data FROM crm_events ORDER BY txid, seq"


class BenchmarkError(RuntimeError):
    """A run whose figures would not mean what they say (e.g. events missing)."""


class PeerServer:
    """benchmarks/naive_peer.py in `workers` processes, each with its own SO_REUSEPORT socket
    on one free port, as `crm-core serve` runs ours."""

    def __init__(self, url: str, workers: int) -> None:
        self.port = _free_port()
        env = {**os.environ, "PEER_DATABASE_URL": url}
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(HERE / "naive_peer.py"), str(self.port)],
                env=env,
                cwd=HERE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(workers)
        ]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in self.processes):
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                time.sleep(1.5)  # every worker imports the app before it answers
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        errors = b"".join(p.stderr.read() for p in self.processes if p.stderr)  # type: ignore[misc]
        raise BenchmarkError(f"the naive peer did not start: {errors.decode()[-800:]}")

    def worker_cpu(self) -> list[float]:
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = []
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds.append((int(fields[11]) + int(fields[12])) / ticks)
        return seconds

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as connection:
        return int(connection.execute(query).fetchone()[0])  # type: ignore[index]


def ingest_run(
    admin_url: str,
    script: Path,
    *,
    outbox: bool,
    duration: float,
    warmup: float,
    workers: int,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """(a): persisted single-message ingest in a fresh database, the outbox on or off; the
    figures and what the database holds afterwards. Raises BenchmarkError when the events are
    not what the setting promises."""
    with throwaway_database(admin_url) as url:
        seed_contacts(url)
        key = create_key(url, "ingest")
        extra = {} if outbox else {"CRM_OUTBOX": "false"}
        env = {"BENCH_KEY": key, "BENCH_RUN": secrets.token_hex(4)}
        figures = measure_http(url, workers, script, connections, duration, env, extra, warmup)
        messages = _count(url, "SELECT count(*) FROM crm_messages")
        events = _count(url, "SELECT count(*) FROM crm_events")
        received = _count(
            url, "SELECT count(*) FROM crm_events WHERE type = 'br.aurora.crm.message.received'"
        )
    label = "on" if outbox else "off"
    if messages == 0:
        raise BenchmarkError(f"outbox {label}: no message was stored")
    if outbox and received != messages:
        raise BenchmarkError(
            f"outbox on: {messages} messages stored but {received} message.received events "
            f"({events} events in all); expected one a message"
        )
    if not outbox and events != 0:
        raise BenchmarkError(f"outbox off (CRM_OUTBOX=false): {events} events were written")
    return {
        **asdict(figures),
        "outbox": outbox,
        "messages_stored": messages,
        "events_stored": events,
    }


def peer_run(
    admin_url: str,
    script: Path,
    *,
    duration: float,
    warmup: float,
    workers: int,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """(b): the naive peer in a fresh database (its own table, no migrations)."""
    import naive_peer

    with throwaway_database(admin_url, migrate=False) as url:
        with psycopg.connect(url) as connection:
            connection.execute(naive_peer.SCHEMA)
        env = {"BENCH_KEY": "unused", "BENCH_RUN": secrets.token_hex(4)}
        server = PeerServer(url, workers)
        try:
            figures = measure_server(server, script, connections, duration, env, warmup)
        finally:
            server.stop()
        stored = _count(url, "SELECT count(*) FROM messages")
    if stored == 0:
        raise BenchmarkError("the naive peer stored no message")
    return {**asdict(figures), "messages_stored": stored}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests_per_s", "p50_ms", "p99_ms")
    summary: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 2) for k in keys}
    summary["errors"] = sum(r["errors"] for r in runs)
    summary["runs"] = runs
    return summary


def measure_ingest(
    admin_url: str,
    *,
    duration: float,
    warmup: float,
    rounds: int,
    workers: int = 2,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """(a) and (b), `rounds` times (off, on, peer; then peer, on, off; ...): the medians and
    the ratios on/off and ours (on)/peer."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": [], "peer": []}
    with tempfile.TemporaryDirectory(prefix="events-bench-") as scratch:
        script = Path(scratch) / "single.lua"
        script.write_text(SINGLE_LUA)
        common = {"duration": duration, "warmup": warmup, "workers": workers}
        common["connections"] = connections
        for index in range(rounds):
            order = ["off", "on", "peer"]
            for name in order if index % 2 == 0 else reversed(order):
                if name == "peer":
                    figures = peer_run(admin_url, script, **common)
                else:
                    figures = ingest_run(admin_url, script, outbox=name == "on", **common)
                runs[name].append(figures)
                print(
                    f"  {name:<4} {figures['requests_per_s']:>7.0f} req/s  p50 "
                    f"{figures['p50_ms']:.1f} ms  p99 {figures['p99_ms']:.1f} ms  errors "
                    f"{figures['errors']}  worker CPU s {figures['worker_cpu_s']}",
                    file=sys.stderr,
                    flush=True,
                )
    on, off, peer = (_median(runs[name]) for name in ("on", "off", "peer"))
    on_off = on["requests_per_s"] / off["requests_per_s"]
    ours_peer = on["requests_per_s"] / peer["requests_per_s"]
    return {
        "connections": connections,
        "workers": workers,
        "duration_s": duration,
        "rounds": rounds,
        "outbox_on": on,
        "outbox_off": off,
        "peer": peer,
        "ratio_on_to_off": round(on_off, 3),
        "ratio_ours_to_peer": round(ours_peer, 3),
        "ratio_p99_ours_to_peer": round(on["p99_ms"] / peer["p99_ms"], 3),
        "targets": {
            "outbox_on_at_least_0.90_of_off": on_off >= 0.90,
            "ours_at_least_2x_peer": ours_peer >= 2.0,
            "ours_p99_below_peer": on["p99_ms"] < peer["p99_ms"],
        },
    }


def fill_events(url: str, messages: int, batch: int = 1000) -> None:
    """Store `messages` messages through crm_core.services.ingest.store_messages, `batch` a
    transaction, from 1,000 senders: one `message.received` event each, and one
    `contact.created` a sender."""
    from crm_core.database import create_db_engine
    from crm_core.schemas.ingest import IngestMessage
    from crm_core.services.ingest import store_messages

    engine = create_db_engine(url)
    try:
        for start in range(0, messages, batch):
            items = [
                IngestMessage(
                    source="whatsapp",
                    sender_id=f"5511977{n % 1000:06d}",
                    content=CONTENT,
                    metadata={"message_id": f"wamid.fill.{n}"},
                )
                for n in range(start, min(start + batch, messages))
            ]
            with engine.begin() as connection:
                store_messages(connection, items)
    finally:
        engine.dispose()


def read_feed(client: httpx.Client) -> tuple[int, int]:
    """Every event through GET /events pages of PAGE, from the first: (events, pages)."""
    events = pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": PAGE}
        if cursor is not None:
            params["after"] = cursor
        response = client.get("/events", params=params)
        response.raise_for_status()
        page = response.json()
        events += len(page["data"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return events, pages


def read_select(connection: psycopg.Connection[Any]) -> int:
    """The same rows by the bare SELECT on an open connection, all fetched: how many."""
    with connection.transaction():
        return len(connection.execute(BARE_SELECT).fetchall())


def _timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure_read(admin_url: str, *, messages: int, passes: int, workers: int = 2) -> dict[str, Any]:
    """(c): events/s through GET /events against the bare SELECT of the same rows."""
    with throwaway_database(admin_url) as url:
        fill_start = time.perf_counter()
        fill_events(url, messages)
        fill_seconds = time.perf_counter() - fill_start
        total = _count(url, "SELECT count(*) FROM crm_events")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE crm_events")  # as autovacuum would, in time
        key = create_key(url, "read")
        server = Server(url, workers, {})
        http: list[tuple[float, tuple[int, int]]] = []
        bare: list[tuple[float, int]] = []
        try:
            headers = {"Authorization": f"Bearer {key}"}
            base = f"http://127.0.0.1:{server.port}"
            with (
                httpx.Client(base_url=base, headers=headers, timeout=60) as client,
                psycopg.connect(url, autocommit=True) as connection,
            ):
                read_feed(client)  # untimed: the server's connections, the page cache
                read_select(connection)
                for _ in range(passes):  # in turn, so that a slow spell weighs on both
                    http.append(_timed(lambda: read_feed(client)))
                    bare.append(_timed(lambda: read_select(connection)))
        finally:
            server.stop()
    for _, (events, _pages) in http:
        if events != total:
            raise BenchmarkError(f"GET /events returned {events} events of {total}")
    for _, rows in bare:
        if rows != total:
            raise BenchmarkError(f"the bare SELECT returned {rows} rows of {total}")
    http_seconds = statistics.median(s for s, _ in http)
    bare_seconds = statistics.median(s for s, _ in bare)
    return {
        "events": total,
        "fill_seconds": round(fill_seconds, 2),
        "pages": http[0][1][1],
        "page_size": PAGE,
        "passes": passes,
        "http_seconds": [round(s, 3) for s, _ in http],
        "select_seconds": [round(s, 3) for s, _ in bare],
        "http_events_per_s": round(total / http_seconds, 1),
        "select_rows_per_s": round(total / bare_seconds, 1),
        "ratio_http_to_select": round(bare_seconds / http_seconds, 3),
    }


def run(
    admin_url: str | None = None,
    *,
    quick: bool = False,
    duration: float | None = None,
    warmup: float | None = None,
    rounds: int | None = None,
    events: int | None = None,
    passes: int | None = None,
) -> dict[str, Any]:
    """Every figure of this benchmark (what run_all.py calls); --quick: shorter and smaller."""
    if shutil.which("wrk") is None:
        raise BenchmarkError("needs wrk (Debian: apt-get install wrk)")
    admin_url = admin_url or default_admin_url()
    ingest = measure_ingest(
        admin_url,
        duration=duration or (2.0 if quick else 8.0),
        warmup=warmup or (0.5 if quick else 2.0),
        rounds=rounds or (1 if quick else 2),
    )
    read = measure_read(
        admin_url,
        messages=events or (2_000 if quick else 20_000),
        passes=passes or (1 if quick else 3),
    )
    return {"ingest": ingest, "read": read}


def report(figures: dict[str, Any]) -> str:
    i, r = figures["ingest"], figures["read"]
    on, off, peer = i["outbox_on"], i["outbox_off"], i["peer"]
    lines = [
        f"{i['connections']} connections, 2 processes each, {i['duration_s']:.0f} s a run, "
        f"median of {i['rounds']} round(s)",
    ]
    for label, f in (("outbox on", on), ("outbox off", off), ("naive peer", peer)):
        lines.append(
            f"  {label:<11} {f['requests_per_s']:>8.0f} req/s  p50 {f['p50_ms']:.1f} ms  "
            f"p99 {f['p99_ms']:.1f} ms  errors {f['errors']}"
        )
    lines.append(
        f"on/off = {i['ratio_on_to_off']:.0%} (target >= 90%); ours/peer = "
        f"{i['ratio_ours_to_peer']:.2f}x (target >= 2x), p99 {on['p99_ms']:.1f} vs "
        f"{peer['p99_ms']:.1f} ms (target: lower)"
    )
    lines.append(
        f"GET /events, {r['events']:,} events in {r['pages']} pages of {r['page_size']}: "
        f"{r['http_events_per_s']:,.0f} events/s; bare SELECT: {r['select_rows_per_s']:,.0f} "
        f"rows/s; ratio {r['ratio_http_to_select']:.0%}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=default_admin_url())
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of off, on and peer")
    parser.add_argument("--events", type=int, default=20_000, help="messages stored for (c)")
    parser.add_argument("--passes", type=int, default=3, help="timed reads of the feed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    try:
        figures = run(
            args.admin_url,
            duration=args.duration,
            warmup=args.warmup,
            rounds=args.rounds,
            events=args.events,
            passes=args.passes,
        )
    except BenchmarkError as error:
        print(f"events_bench: {error}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
