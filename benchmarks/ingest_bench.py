"""Measure the ingest against PostgreSQL, on this machine, over loopback. Not part of the tests.

Usage: python benchmarks/ingest_bench.py [--admin-url URL] [--duration 10] [--workers 2] [--json]

Needs `wrk` (Debian: apt-get install wrk) and a PostgreSQL server; the admin URL defaults to
AURORA_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres. Everything runs in
a throwaway database (created, migrated with `alembic upgrade head`, dropped afterwards), and
each measurement is bounded in time (`--duration` seconds, or a fixed number of rows).

The server runs as the README tells users to run it in production: `crm-core serve --workers N`
(one SO_REUSEPORT socket per worker), logging at WARNING. Measured in one run:

  (a) validation-only ceiling: the same app with CRM_INGEST_VALIDATION_ONLY=true, 64 connections
  (b) persisted single-message ingest, 16 and 64 connections: requests/s, p50, p99
  (c) raw single-row INSERT of the same row through psycopg, no HTTP, 16 clients: rows/s
  (d) batch ingest (POST /ingest/messages, 1,000 messages a request, 16 connections):
      messages/s
  (e) COPY of the same rows through psycopg: rows/s

Messages come from a pool of 10,000 senders per wrk thread (SENDERS) whose contacts are created
before the measurements, so each message, like each COPY row, is one new row of crm_messages.

and the ratios the OS targets: (b, 64 connections) / (a) >= 40% with p99 < 50 ms, and
(d) / (e) >= 40%. The CPU seconds each worker used are printed too, to show that the
connections were spread over the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONTENT = "Olá, quero simular um consórcio de uma moto"

SINGLE_LUA = """
local counter = 0
local threads = {}
setup = function(thread)
  thread:set("tid", #threads + 1) -- a global of that thread's own Lua state, read below
  table.insert(threads, thread)
end
init = function(args)
  run = os.getenv("BENCH_RUN")
  key = os.getenv("BENCH_KEY")
end
request = function()
  counter = counter + 1
  local sender = string.format("55119%02d%06d", tid, counter % SENDERS)
  local body = '{"source":"whatsapp","sender_id":"' .. sender .. '","content":"CONTENT",'
    .. '"metadata":{"message_id":"wamid.' .. run .. '.' .. tid .. '.' .. counter .. '"}}'
  return wrk.format("POST", "/ingest/message",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
""".replace("CONTENT", CONTENT)

BATCH_LUA = """
local counter = 0
local threads = {}
setup = function(thread)
  thread:set("tid", #threads + 1) -- a global of that thread's own Lua state, read below
  table.insert(threads, thread)
end
init = function(args)
  run = os.getenv("BENCH_RUN")
  key = os.getenv("BENCH_KEY")
end
request = function()
  local items = {}
  for i = 1, 1000 do
    counter = counter + 1
    local sender = string.format("55118%02d%06d", tid, counter % SENDERS)
    items[i] = '{"source":"whatsapp","sender_id":"' .. sender .. '","content":"CONTENT",'
      .. '"metadata":{"message_id":"wamid.b' .. run .. '.' .. tid .. '.' .. counter .. '"}}'
  end
  local body = '{"messages":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/ingest/messages",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
""".replace("CONTENT", CONTENT)

# Messages come from a pool of senders per wrk thread, whose contacts are created before the
# measurements, as in a CRM that has been running: each message is one new row of
# crm_messages, like the COPY's rows (a sender's first message also creates its contact).
SENDERS = 10_000
WRK_THREADS = 2
# Each worker's socket gets the connections the kernel hashes to it (SO_REUSEPORT): with 4
# batch connections, all of them landed on one worker in about one run of eight, leaving the
# other idle. With 16, both workers have work to overlap with the database in all but a
# negligible share of runs (p50 latency then includes the wait for the worker's turn).
BATCH_CONNECTIONS = 16
SINGLE_LUA = SINGLE_LUA.replace("SENDERS", str(SENDERS))
BATCH_LUA = BATCH_LUA.replace("SENDERS", str(SENDERS))


@dataclass
class HttpFigures:
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    worker_cpu_s: list[float]


def wrk(
    script: Path, port: int, connections: int, duration: float, env: dict[str, str]
) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, non-2xx or socket errors) of one bounded wrk run."""
    threads = min(WRK_THREADS, connections)
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:.0f}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    latency = {m[1]: _ms(m[2]) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout) (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write) (\d+)", out))
    return rate, latency["50"], latency["99"], errors


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


class Server:
    """`crm-core serve` in the background, on a free port."""

    def __init__(self, url: str, workers: int, extra_env: dict[str, str]) -> None:
        self.port = _free_port()
        env = {**os.environ, "DATABASE_URL": url, "CRM_LOG_LEVEL": "WARNING", **extra_env}
        self.process = subprocess.Popen(
            [str(BIN / "crm-core"), "serve", "--port", str(self.port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                time.sleep(1.5)  # every worker imports the app before it answers
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("crm-core serve did not start within 60 s")

    def worker_cpu(self) -> list[float]:
        """CPU seconds (user + system) used so far by each worker."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = []
        for pid in children.read_text().split():
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue  # multiprocessing's helper, not a worker
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds.append((int(fields[11]) + int(fields[12])) / ticks)
        return seconds

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_http(
    url: str,
    workers: int,
    script: Path,
    connections: int,
    duration: float,
    env: dict[str, str],
    extra_env: dict[str, str],
    warmup: float = 2.0,
) -> HttpFigures:
    server = Server(url, workers, extra_env)
    try:
        return measure_server(server, script, connections, duration, env, warmup)
    finally:
        server.stop()


def measure_server(
    server: Server,
    script: Path,
    connections: int,
    duration: float,
    env: dict[str, str],
    warmup: float = 2.0,
) -> HttpFigures:
    """measure_http against a server already running (any object with `port` and
    `worker_cpu()`), which the caller stops."""
    # A short warm-up (connections, prepared statements), then the measured run; each its own
    # run id, so that no measured message repeats a warm-up one.
    wrk(script, server.port, connections, warmup, {**env, "BENCH_RUN": env["BENCH_RUN"] + "w"})
    before = server.worker_cpu()
    rate, p50, p99, errors = wrk(script, server.port, connections, duration, env)
    after = server.worker_cpu()
    cpu = [round(a - b, 2) for a, b in zip(after, before, strict=False)]
    return HttpFigures(connections, round(rate, 1), p50, p99, errors, cpu)


INSERT = (
    "INSERT INTO crm_messages (id, contact_id, source, sender_id, content, metadata, "
    "channel_message_id, received_at) VALUES (%s, %s, 'whatsapp', %s, %s, %s, %s, now())"
)


async def raw_inserts(dsn: str, contact_id: uuid.UUID, clients: int, duration: float) -> float:
    """Single-row INSERT + commit per row, `clients` connections, for `duration` seconds."""
    stop_at = time.monotonic() + duration
    counts = [0] * clients

    async def client(index: int) -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            while time.monotonic() < stop_at:
                counts[index] += 1
                await connection.execute(
                    INSERT,
                    (
                        uuid.uuid4(),
                        contact_id,
                        "5511999999999",
                        CONTENT,
                        '{"message_id": "raw"}',
                        f"raw.{index}.{counts[index]}",
                    ),
                )

    started = time.monotonic()
    await asyncio.gather(*(client(index) for index in range(clients)))
    return sum(counts) / (time.monotonic() - started)


def copy_rows(dsn: str, contact_id: uuid.UUID, rows: int) -> float:
    """COPY `rows` rows of the same shape in one transaction; rows/s."""
    run = secrets.token_hex(4)
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        started = time.monotonic()
        with cursor.copy(
            "COPY crm_messages (id, contact_id, source, sender_id, content, metadata, "
            "channel_message_id, received_at) FROM STDIN"
        ) as copy:
            for index in range(rows):
                copy.write_row(
                    (
                        uuid.uuid4(),
                        contact_id,
                        "whatsapp",
                        "5511999999999",
                        CONTENT,
                        f'{{"message_id": "copy.{run}.{index}"}}',
                        f"copy.{run}.{index}",
                        "now",
                    )
                )
        connection.commit()
        return rows / (time.monotonic() - started)


@cache
def seeded_senders() -> list[str]:
    """The canonical sender ids of every sender the wrk scripts use (computed once: parsing
    40,000 numbers takes seconds, and a run may seed several databases)."""
    from crm_core.services.senders import canonical_sender_id

    return sorted(
        {
            canonical_sender_id("whatsapp", f"{prefix}{tid:02d}{n:06d}")
            for prefix in ("55119", "55118")
            for tid in range(1, WRK_THREADS + 1)
            for n in range(SENDERS)
        }
    )


def seed_contacts(dsn: str) -> int:
    """Create the contacts of every sender the wrk scripts use; how many were created."""
    senders = seeded_senders()
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "INSERT INTO crm_contacts (id, source, sender_id, attributes) "
            "SELECT gen_random_uuid(), 'whatsapp', s, '{}'::jsonb FROM unnest(%s::varchar[]) AS s "
            "ON CONFLICT DO NOTHING",
            [senders],
        )
        connection.execute("ANALYZE crm_contacts")
    return len(senders)


def default_admin_url() -> str:
    """The PostgreSQL server to create throwaway databases on: AURORA_TEST_POSTGRES_URL, else
    the local server."""
    return (
        os.environ.get("AURORA_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@contextmanager
def throwaway_database(admin_url: str, *, migrate: bool = True) -> Iterator[str]:
    """A new database on the admin URL's server (migrated with `alembic upgrade head` unless
    `migrate` is false), dropped afterwards whatever happens: its URL (postgresql://)."""
    admin = make_url(admin_url).set(drivername="postgresql")
    name = f"aurora_bench_{secrets.token_hex(4)}"
    admin_dsn = admin.render_as_string(hide_password=False)
    url = admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        if migrate:
            _run([str(BIN / "alembic"), "upgrade", "head"], {"DATABASE_URL": url})
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_key(url: str, scope: str) -> str:
    """A new API key of `scope` in the database at `url` (`crm-core keys create`)."""
    created = _run(
        [str(BIN / "crm-core"), "keys", "create", "--scope", scope], {"DATABASE_URL": url}
    )
    return re.search(r"^key:\s+(\S+)$", created, re.M)[1]  # type: ignore[index]


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        command,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=default_admin_url())
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("ingest_bench: needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    figures: dict[str, object] = {"workers": args.workers, "duration_s": args.duration}
    with throwaway_database(args.admin_url) as url:
        seed_contacts(url)
        key = create_key(url, "ingest")
        wrk_env = {"BENCH_KEY": key, "BENCH_RUN": secrets.token_hex(4)}
        with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch:
            single = Path(scratch) / "single.lua"
            single.write_text(SINGLE_LUA)
            batch = Path(scratch) / "batch.lua"
            batch.write_text(BATCH_LUA)

            def http(script: Path, connections: int, extra: dict[str, str]) -> HttpFigures:
                wrk_env["BENCH_RUN"] = secrets.token_hex(4)
                return measure_http(
                    url,
                    args.workers,
                    script,
                    connections,
                    args.duration,
                    wrk_env,
                    extra,
                    args.warmup,
                )

            validation = http(single, 64, {"CRM_INGEST_VALIDATION_ONLY": "true"})
            persisted = {c: http(single, c, {}) for c in (16, 64)}
            batched = http(batch, BATCH_CONNECTIONS, {})
        with psycopg.connect(url) as connection:
            contact_id = connection.execute("SELECT id FROM crm_contacts LIMIT 1").fetchone()[0]  # type: ignore[index]
        raw = asyncio.run(raw_inserts(url, contact_id, 16, args.duration))
        copied = copy_rows(url, contact_id, args.copy_rows)
        with psycopg.connect(url) as connection:
            stored = connection.execute("SELECT count(*) FROM crm_messages").fetchone()[0]  # type: ignore[index]

    batch_messages = batched.requests_per_s * 1000
    ratio_single = persisted[64].requests_per_s / validation.requests_per_s
    ratio_batch = batch_messages / copied
    figures.update(
        {
            "a_validation_only": asdict(validation),
            "b_persisted_16": asdict(persisted[16]),
            "b_persisted_64": asdict(persisted[64]),
            "c_raw_insert_rows_per_s_16_clients": round(raw, 1),
            "d_batch_messages_per_s": round(batch_messages, 1),
            "d_batch_requests": asdict(batched),
            "e_copy_rows_per_s": round(copied, 1),
            "ratio_persisted64_to_validation": round(ratio_single, 3),
            "ratio_batch_to_copy": round(ratio_batch, 3),
            "rows_stored": stored,
            "targets": {
                "persisted_ratio_at_least_0.40": ratio_single >= 0.40,
                "persisted_p99_under_50ms_at_64": persisted[64].p99_ms < 50,
                "batch_ratio_at_least_0.40": ratio_batch >= 0.40,
            },
        }
    )
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"crm-core serve --workers {args.workers}, {args.duration:.0f} s per measurement")
    print(
        f"(a) validation only, 64 conns: {validation.requests_per_s:>9.0f} req/s  "
        f"p50 {validation.p50_ms:.1f} ms  p99 {validation.p99_ms:.1f} ms  "
        f"worker CPU s {validation.worker_cpu_s}"
    )
    for c, f in persisted.items():
        print(
            f"(b) persisted, {c:>2} conns:       {f.requests_per_s:>9.0f} req/s  "
            f"p50 {f.p50_ms:.1f} ms  p99 {f.p99_ms:.1f} ms  errors {f.errors}  "
            f"worker CPU s {f.worker_cpu_s}"
        )
    print(f"(c) raw INSERT, 16 clients:     {raw:>9.0f} rows/s")
    print(
        f"(d) batch ingest, {BATCH_CONNECTIONS} conns:     {batch_messages:>9.0f} messages/s  "
        f"(p50 {batched.p50_ms:.0f} ms per 1,000)"
    )
    print(f"(e) COPY:                       {copied:>9.0f} rows/s")
    print(
        f"(b64)/(a) = {ratio_single:.0%} (target >= 40%, p99 < 50 ms: "
        f"{persisted[64].p99_ms:.1f} ms);  (d)/(e) = {ratio_batch:.0%} (target >= 40%)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
