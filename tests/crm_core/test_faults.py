"""Faults under load: the server killed, and PostgreSQL restarted, while messages pour in.

The promise tested: a message that got a 2xx is in the database exactly once, whatever
happened after; nothing is half-written; during an outage the answer is a 503 problem with
Retry-After within a bounded time, never a hang or a 500; the service recovers by itself.
Each test runs `crm-core serve` for real, on loopback, for a few seconds.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.bdd.support.serving import Server, free_port, prepare
from tests.conftest import REQUIRE_POSTGRES_ENV

REQUEST_TIMEOUT = 15.0  # seconds a client waits; every answer must come well before
OUTAGE_ANSWER_LIMIT = 12.0
BATCH_SIZE = 10  # the messages a batch of the load carries


@dataclass
class Load:
    """Clients posting messages with unique channel ids; every answer is recorded."""

    port: int
    key: str
    clients: int = 8
    answers: list[tuple[str, int, float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)

    def _client(self, index: int) -> None:
        # Client 0 sends its messages ten at a time (POST /ingest/messages), the others one by
        # one; every message's answer is recorded, a batch item's as its own status would be.
        size = BATCH_SIZE if index == 0 else 1
        n = 0
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            messages: list[dict[str, Any]] = []
            for _ in range(size):
                n += 1
                messages.append(
                    {
                        "source": "whatsapp",
                        "sender_id": f"55119{index:02d}{n % 50:06d}",
                        "content": f"mensagem {n}",
                        "metadata": {"message_id": f"wamid.fault.{index}.{n}"},
                    }
                )
            ids = [message["metadata"]["message_id"] for message in messages]
            path, body = (
                ("/ingest/messages", json.dumps({"messages": messages}))
                if size > 1
                else ("/ingest/message", json.dumps(messages[0]))
            )
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT
                    )
                connection.request(
                    "POST",
                    path,
                    body,
                    {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
                )
                response = connection.getresponse()
                payload = response.read().decode()
                statuses, detail = [response.status] * size, payload
                if response.status == 503:
                    detail = (
                        f"{response.getheader('Retry-After')}|{response.getheader('Content-Type')}"
                    )
                elif size > 1 and response.status == 200:
                    item_status = {"accepted": 202, "duplicate": 200, "rejected": 422}
                    results = json.loads(payload)["results"]
                    statuses = [item_status[result["status"]] for result in results]
            except (OSError, http.client.HTTPException) as exc:
                statuses, detail = [0] * size, type(exc).__name__  # no answer
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            self.answers.extend(
                (message_id, status, elapsed, detail)
                for message_id, status in zip(ids, statuses, strict=True)
            )

    def acknowledged(self) -> set[str]:
        return {message_id for message_id, status, _, _ in self.answers if 200 <= status < 300}


def dsn(url: str) -> str:
    """A SQLAlchemy URL as psycopg takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def stored_ids(url: str) -> list[str]:
    with psycopg.connect(dsn(url)) as connection:
        rows = connection.execute("SELECT channel_message_id FROM crm_messages").fetchall()
    return [row[0] for row in rows]


def assert_nothing_lost_nor_half_written(url: str, load: Load) -> None:
    stored = stored_ids(url)
    assert len(stored) == len(set(stored)), "a message is stored twice"
    missing = load.acknowledged() - set(stored)
    assert not missing, (
        f"{len(missing)} acknowledged messages are not stored: {sorted(missing)[:5]}"
    )
    with psycopg.connect(dsn(url)) as connection:
        orphans = connection.execute(
            "SELECT count(*) FROM crm_contacts c WHERE NOT EXISTS "
            "(SELECT 1 FROM crm_messages m WHERE m.contact_id = c.id)"
        ).fetchone()
    assert orphans == (0,), "contacts were created without their message"
    assert not [a for a in load.answers if a[1] >= 500 and a[1] != 503], "a 5xx other than 503"


@contextlib.contextmanager
def under_load(url: str) -> Iterator[tuple[Server, Load]]:
    """A migrated database with an ingest key, `crm-core serve` on it, and clients posting to it
    for 2 s already; both stopped on the way out."""
    key = prepare(url)
    server = Server(url, free_port())
    server.start()
    load = Load(server.port, key)
    try:
        load.start()
        time.sleep(2.0)
        yield server, load
    finally:
        load.stop()
        server.kill(signal.SIGTERM)


@pytest.mark.postgres
def test_a_server_killed_under_load_loses_no_acknowledged_message(postgres_url: str) -> None:
    with under_load(postgres_url) as (server, load):
        server.kill(signal.SIGKILL)  # every worker, mid-flight
        time.sleep(0.5)
        server.start()
        time.sleep(2.0)
    assert len(load.acknowledged()) > 50, "the load did not run"
    before_kill = [a for a in load.answers if a[1] == 0]
    assert before_kill, "no request was cut by the kill"
    assert_nothing_lost_nor_half_written(postgres_url, load)


# PostgreSQL restarted: a throwaway cluster of the test's own, on its own port.


def postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class Cluster:
    bin: Path
    data: Path
    port: int

    def command(self, *args: str) -> list[str]:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return [*as_postgres, *args]

    def ctl(self, *args: str) -> None:
        subprocess.run(
            self.command(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args),
            check=True,
            capture_output=True,
            timeout=90,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self.ctl("-o", options, "-l", str(self.data / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    binaries = postgres_bin()
    required = os.environ.get(REQUIRE_POSTGRES_ENV, "") not in ("", "0", "false")
    if binaries is None:
        reason = "PostgreSQL's initdb and pg_ctl are not installed, so the restart test is skipped"
        if required:
            pytest.fail(f"{reason}, but {REQUIRE_POSTGRES_ENV} demands it", pytrace=False)
        pytest.skip(reason)
    # Not under pytest's own temporary folder, which only its owner may enter: as root, the
    # cluster runs as the postgres user.
    data = Path(tempfile.mkdtemp(prefix="aurora-fault-cluster-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    node = Cluster(binaries, data, free_port())
    subprocess.run(
        node.command(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    node.start()
    try:
        yield node
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            node.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_restarted_under_load_gives_503_then_recovers(cluster: Cluster) -> None:
    admin = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    name = f"aurora_fault_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:{cluster.port}/{name}"
    with under_load(url) as (_, load):
        outage_started = len(load.answers)
        cluster.stop("fast")
        time.sleep(3.0)
        outage = load.answers[outage_started:]
        cluster.start()
        time.sleep(4.0)
        after = load.answers[len(load.answers) - 20 :]
    unavailable = [a for a in outage if a[1] == 503]
    assert unavailable, f"no 503 while the database was down: {sorted({a[1] for a in outage})}"
    for _, _, seconds, detail in unavailable:
        retry_after, content_type = detail.split("|")
        assert retry_after.isdigit()
        assert content_type == "application/problem+json"
        assert seconds < OUTAGE_ANSWER_LIMIT
    assert all(a[1] in (202, 200, 503) for a in outage), sorted({a[1] for a in outage})
    assert all(200 <= a[1] < 300 for a in after), [a[1] for a in after]  # recovered by itself
    assert_nothing_lost_nor_half_written(url, load)
