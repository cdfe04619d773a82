"""Measure the relay (crm_core.services.relay) against a bare JetStream publish loop, on this
machine, over loopback. Not part of the tests.

Usage: python benchmarks/relay_bench.py [--admin-url URL] [--events 20000] [--json]

Needs a PostgreSQL server (the admin URL defaults to AURORA_TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/postgres) and nats-server (/usr/sbin/nats-server or on
PATH). Everything is thrown away afterwards: a database (created, migrated with
`alembic upgrade head`, dropped) and a nats-server on a free port with its own store folder.

  1. N events are written through the outbox (`outbox.append`, 1,000 a transaction), shaped
     as `message.received` events.
  (a) the relay publishes all of them to a fresh stream, from connecting to the last recorded
      position: events/s;
  (b) the baseline: a bare nats-py loop, `await js.publish(...)` one message at a time, of the
      same payloads and headers to another fresh stream (same configuration, made after the
      relay's stream is deleted, as two streams may not share subjects): events/s.

The target is (a) / (b) >= 50%. Each phase is bounded (45 s); the whole run takes well under a
minute for the default 20,000 events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StorageType
from sqlalchemy import select

from crm_core.database import Database, create_db_engine
from crm_core.models import OutboxEvent
from crm_core.models.base import utc_text, utcnow
from crm_core.services import outbox
from crm_core.services.relay import (
    STREAM_SUBJECTS,
    Relay,
    RelayOptions,
    headers_of,
    payload_of,
    subject_of,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from ingest_bench import default_admin_url, throwaway_database  # noqa: E402

PHASE_TIMEOUT_S = 45.0
WRITE_BATCH = 1000
SOURCE = "/aurora-crm/bench"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def throwaway_nats() -> Iterator[str]:
    """A nats-server with JetStream on a free port and a temporary store; yields its URL."""
    binary = "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        binary = shutil.which("nats-server") or ""
    if not binary:
        raise SystemExit("relay_bench: nats-server is not installed (apt-get install nats-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as folder:
        process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("relay_bench: nats-server did not start")
                time.sleep(0.05)
            yield f"nats://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


def write_events(database: Database, count: int) -> None:
    """`count` message.received-shaped events through the outbox, WRITE_BATCH a transaction."""
    now = utcnow()
    contact_id = uuid.uuid4()
    written = 0
    while written < count:
        size = min(WRITE_BATCH, count - written)
        events = [
            outbox.NewEvent(
                type=outbox.MESSAGE_RECEIVED,
                subject=str(message_id),
                contact_id=contact_id,
                data={
                    "id": str(message_id),
                    "contact_id": str(contact_id),
                    "source": "whatsapp",
                    "sender_id": "5511999999999",
                    "content": "Olá, quero simular um consórcio de uma moto",
                    "metadata": {"message_id": f"wamid.bench.{written + index}"},
                    "channel_message_id": f"wamid.bench.{written + index}",
                    "received_at": utc_text(now),
                },
            )
            for index, message_id in enumerate(uuid.uuid4() for _ in range(size))
        ]
        with database.engine.begin() as connection:
            outbox.append(connection, events)
        written += size


async def _fresh_stream(js: Any, name: str) -> None:
    await js.add_stream(
        name=name, subjects=[STREAM_SUBJECTS], storage=StorageType.FILE, duplicate_window=120
    )


async def relay_rate(database: Database, nats_url: str, count: int) -> float:
    """(a): events/s of the relay publishing `count` events to a fresh stream."""
    options = RelayOptions(nats_url=nats_url, stream="BENCH_RELAY", source=SOURCE)
    relay = Relay(database, options)
    started = time.perf_counter()
    while relay.published < count:  # a run may stop early at PostgreSQL's visible horizon
        await relay.run(until_idle=True)
        if time.perf_counter() - started > PHASE_TIMEOUT_S:
            raise SystemExit(f"relay_bench: the relay published {relay.published} of {count}")
    return count / (time.perf_counter() - started)


async def bare_rate(database: Database, nats_url: str) -> tuple[float, int]:
    """(b): events/s of `await js.publish(...)` one by one, same payloads, to a fresh stream
    (the payloads are built before the clock starts)."""
    with database.read_sessionmaker() as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.txid, OutboxEvent.seq))
        messages = [
            (subject_of(row.type), payload_of(row, SOURCE), headers_of(row, index))
            for index, row in enumerate(rows)
        ]
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await _fresh_stream(js, "BENCH_BARE")
        started = time.perf_counter()
        for subject, payload, headers in messages:
            await js.publish(subject, payload, headers=headers)
        elapsed = time.perf_counter() - started
        stored = int((await js.stream_info("BENCH_BARE")).state.messages)
    finally:
        await nc.close()
    return len(messages) / elapsed, stored


def measure(admin_url: str | None = None, events: int = 20_000) -> dict[str, Any]:
    """Write `events` events in a throwaway database and publish them with the relay (a) and
    with a bare publish loop (b), each to a fresh stream of a throwaway nats-server. Returns
    the figures: relay_events_per_s, bare_events_per_s, ratio_relay_to_bare (the target:
    >= 0.5), events, and the messages each stream holds at the end."""
    admin = admin_url or default_admin_url()
    with throwaway_database(admin) as url, throwaway_nats() as nats_url:
        database = Database(create_db_engine(url))
        try:
            write_events(database, events)

            async def both() -> tuple[float, float, int, int]:
                relay = await asyncio.wait_for(
                    relay_rate(database, nats_url, events), PHASE_TIMEOUT_S + 5
                )
                # Two streams may not share subjects: the relay's goes before the bare one.
                nc = await nats.connect(nats_url)
                js = nc.jetstream()
                relay_stored = int((await js.stream_info("BENCH_RELAY")).state.messages)
                await js.delete_stream("BENCH_RELAY")
                await nc.close()
                bare, bare_stored = await asyncio.wait_for(
                    bare_rate(database, nats_url), PHASE_TIMEOUT_S
                )
                return relay, bare, relay_stored, bare_stored

            relay, bare, relay_stored, bare_stored = asyncio.run(both())
        finally:
            database.dispose()
    return {
        "events": events,
        "relay_events_per_s": round(relay, 1),
        "bare_events_per_s": round(bare, 1),
        "ratio_relay_to_bare": round(relay / bare, 3),
        "relay_stream_messages": relay_stored,
        "bare_stream_messages": bare_stored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default=None,
        help="PostgreSQL admin URL (default: AURORA_TEST_POSTGRES_URL, else the local server)",
    )
    parser.add_argument("--events", type=int, default=20_000, help="events to publish")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.admin_url, args.events)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"events:               {figures['events']:,}")
    print(f"(a) relay:            {figures['relay_events_per_s']:>10,.0f} events/s")
    print(f"(b) bare publish loop:{figures['bare_events_per_s']:>10,.0f} events/s")
    print(f"(a) / (b):            {figures['ratio_relay_to_bare']:.0%} (target >= 50%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
