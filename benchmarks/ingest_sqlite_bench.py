"""Measure the ingest on the embedded SQLite default, over loopback. Not part of the tests.

Usage: python benchmarks/ingest_sqlite_bench.py [--duration 10] [--workers 1] [--json]

The same server (`crm-core serve`, with one worker as it runs on SQLite by default), wrk scripts
and senders as `benchmarks/ingest_bench.py`, on a SQLite file in a temporary folder (migrated
with `alembic upgrade head`, the senders' contacts created first). Measured in one run:

  (b) persisted single-message ingest, 16 and 64 connections: requests/s, p50, p99
  (c) the raw rate of the same row, INSERT and COMMIT one at a time through sqlite3
  (d) batch ingest (1,000 messages a request, 16 connections): messages/s
  (e) the same rows inserted by sqlite3's executemany in one transaction: rows/s

SQLite has one writer at a time, whatever the number of processes: these figures say what the
embedded default can take, not what PostgreSQL can. No target is set for them.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_bench as pg

# The row the ingest writes, numbered as it numbers it (one more than the largest seq).
ROW = (
    "INSERT INTO crm_messages (id, contact_id, source, sender_id, content, metadata, "
    "channel_message_id, received_at, seq) VALUES (?, ?, 'whatsapp', '5511999999999', ?, ?, ?, "
    "?, (SELECT coalesce(max(seq), 0) + 1 FROM crm_messages))"
)


def seed_contacts(url: str) -> str:
    """Create the senders' contacts through the models; the id of one of them."""
    from sqlalchemy import create_engine, insert, select

    from crm_core.models import Contact
    from crm_core.models.base import utcnow
    from crm_core.services.senders import canonical_sender_id

    senders = sorted(
        {
            canonical_sender_id("whatsapp", f"{prefix}{tid:02d}{n:06d}")
            for prefix in ("55119", "55118")
            for tid in range(1, pg.WRK_THREADS + 1)
            for n in range(pg.SENDERS)
        }
    )
    engine = create_engine(url)
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            insert(Contact),
            [
                {
                    "id": uuid.uuid4(),
                    "source": "whatsapp",
                    "sender_id": s,
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for s in senders
            ],
        )
        contact_id = connection.execute(select(Contact.id).limit(1)).scalar_one()
    engine.dispose()
    return contact_id.hex  # as SQLAlchemy stores a UUID in SQLite


def raw_inserts(path: Path, contact_id: str, duration: float) -> float:
    """One row at a time, each committed (SQLite has one writer): rows/s."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=5000")
    count, started = 0, time.monotonic()
    while time.monotonic() - started < duration:
        count += 1
        connection.execute("BEGIN")
        connection.execute(ROW, _row(contact_id, f"raw.{count}"))
        connection.execute("COMMIT")
    connection.close()
    return count / (time.monotonic() - started)


def many_rows(path: Path, contact_id: str, rows: int) -> float:
    """`rows` rows in one transaction with executemany: rows/s."""
    connection = sqlite3.connect(path)
    started = time.monotonic()
    with connection:
        connection.executemany(ROW, (_row(contact_id, f"many.{n}") for n in range(rows)))
    elapsed = time.monotonic() - started
    connection.close()
    return rows / elapsed


def _row(contact_id: str, channel_id: str) -> tuple[str, str, str, str, str, str]:
    metadata = json.dumps({"message_id": channel_id})
    now = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
    return (uuid.uuid4().hex, contact_id, pg.CONTENT, metadata, channel_id, now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--rows", type=int, default=100_000, help="rows for (e)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("ingest_sqlite_bench: needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="ingest-sqlite-bench-"))
    try:
        database = folder / "crm.db"
        url = f"sqlite:///{database}"
        env = {"DATABASE_URL": url}
        pg._run([str(pg.BIN / "alembic"), "upgrade", "head"], env)
        contact_id = seed_contacts(url)
        created = pg._run([str(pg.BIN / "crm-core"), "keys", "create", "--scope", "ingest"], env)
        key = re.search(r"^key:\s+(\S+)$", created, re.M)[1]  # type: ignore[index]
        wrk_env = {"BENCH_KEY": key, "BENCH_RUN": secrets.token_hex(4)}
        single, batch = folder / "single.lua", folder / "batch.lua"
        single.write_text(pg.SINGLE_LUA)
        batch.write_text(pg.BATCH_LUA)

        def http(script: Path, connections: int) -> pg.HttpFigures:
            wrk_env["BENCH_RUN"] = secrets.token_hex(4)
            return pg.measure_http(
                url, args.workers, script, connections, args.duration, wrk_env, {}, args.warmup
            )

        persisted = {c: http(single, c) for c in (16, 64)}
        batched = http(batch, pg.BATCH_CONNECTIONS)
        raw = raw_inserts(database, contact_id, args.duration)
        many = many_rows(database, contact_id, args.rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    batch_messages = batched.requests_per_s * 1000
    figures = {
        "workers": args.workers,
        "duration_s": args.duration,
        "b_persisted_16": asdict(persisted[16]),
        "b_persisted_64": asdict(persisted[64]),
        "c_raw_insert_rows_per_s": round(raw, 1),
        "d_batch_messages_per_s": round(batch_messages, 1),
        "d_batch_requests": asdict(batched),
        "e_executemany_rows_per_s": round(many, 1),
        "ratio_persisted64_to_raw_insert": round(persisted[64].requests_per_s / raw, 3),
        "ratio_batch_to_executemany": round(batch_messages / many, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"SQLite, crm-core serve --workers {args.workers}, {args.duration:.0f} s a measurement")
    for c, f in persisted.items():
        print(
            f"(b) persisted, {c:>2} conns: {f.requests_per_s:>9.0f} req/s  p50 {f.p50_ms:.1f} ms  "
            f"p99 {f.p99_ms:.1f} ms  errors {f.errors}"
        )
    print(f"(c) raw INSERT+COMMIT:    {raw:>9.0f} rows/s")
    print(f"(d) batch ingest:         {batch_messages:>9.0f} messages/s")
    print(f"(e) executemany:          {many:>9.0f} rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
