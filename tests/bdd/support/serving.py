"""`crm-core serve` for real, on loopback, for the tests and scenarios that load it or hurt it:
the server, a keep-alive JSON client, clients that call it in a loop, a reader that follows
cursors, the two bounded load runs of OS 005's data promises (AC-16, AC-18), and the event
feed's consumer under writers (OS 007 AC-05)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from crm_core.database import create_db_engine
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(command: list[str], url: str) -> str:
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def prepare(url: str, scope: str = "ingest") -> str:
    """Migrate the database (`alembic upgrade head`) and create a key of `scope`; the key."""
    run([str(BIN / "alembic"), "upgrade", "head"], url)
    created = run([str(BIN / "crm-core"), "keys", "create", "--scope", scope], url)
    match = re.search(r"^key:\s+(\S+)$", created, re.M)
    assert match, created
    return match[1]


class Server:
    """`crm-core serve --workers 2` in its own process group, so it can be killed whole."""

    def __init__(self, url: str, port: int) -> None:
        self.url, self.port = url, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.url, "CRM_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(
            [str(BIN / "crm-core"), "serve", "--port", str(self.port), "--workers", "2"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    time.sleep(1.0)  # both workers import the app
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("crm-core serve did not start within 60 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


TIMEOUT = 30.0


class Client:
    """One keep-alive HTTP connection with a read/write key; JSON in, (status, JSON) out."""

    def __init__(self, port: int, key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body) if body is not None else None
        self.connection.request(method, path, payload, self.headers)
        response = self.connection.getresponse()
        text = response.read().decode()
        return response.status, json.loads(text) if text else None


@dataclass
class Workload:
    """Threads that each call `step(client, n)` until stopped; every status is counted."""

    port: int
    key: str
    statuses: list[tuple[str, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def add(self, name: str, step: Callable[[Client, int], tuple[int, Any]]) -> None:
        def loop() -> None:
            client = Client(self.port, self.key)
            n = 0
            while not self._stop.is_set():
                n += 1
                status, body = step(client, n)
                detail = "" if status < 500 else json.dumps(body)[:300]
                self.statuses.append((name, status, detail))

        thread = threading.Thread(target=loop, daemon=True)
        self._threads.append(thread)

    def run(self, seconds: float) -> None:
        for thread in self._threads:
            thread.start()
        time.sleep(seconds)
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT + 5)

    def server_errors(self) -> list[tuple[str, int, str]]:
        return [entry for entry in self.statuses if entry[1] >= 500]


@contextmanager
def served(url: str) -> Iterator[tuple[int, str]]:
    key = prepare(url, "readwrite")
    server = Server(url, free_port())
    server.start()
    try:
        yield server.port, key
    finally:
        server.kill(signal.SIGTERM)


def whatsapp(sender: str, message_id: str, content: str = "oi") -> dict[str, Any]:
    return {
        "source": "whatsapp",
        "sender_id": sender,
        "content": content,
        "metadata": {"message_id": message_id},
    }


class CursorReader:
    """Follows `next_cursor` to the end of a list, then keeps polling from `end_cursor`."""

    def __init__(self, client: Client, path: str) -> None:
        self.client, self.path = client, path
        self.seen: list[str] = []
        self.cursor: str | None = None

    def poll(self) -> None:
        while True:
            query = f"?limit=50&cursor={self.cursor}" if self.cursor else "?limit=50"
            status, page = self.client.call("GET", self.path + query)
            assert status == 200, page
            self.seen += [item["id"] for item in page["data"]]
            self.cursor = page["next_cursor"] or page["end_cursor"] or self.cursor
            if page["next_cursor"] is None:
                return


def check_cursors_under_writers(url: str, seconds: float = 4.0) -> dict[str, int]:
    """Against `crm-core serve` on `url`: clients create contacts, deals and messages of one
    contact for `seconds`, while a reader follows `next_cursor` then `end_cursor` on /contacts
    and /deals, and walks the contact's messages newest first. AssertionError unless the
    reader saw every contact and deal exactly once, in list order, and every walk held every
    message older than its first. Returns how many writes each kind of client made."""
    with served(url) as (port, key):
        setup = Client(port, key)
        status, receipt = setup.call("POST", "/ingest/message", whatsapp("5511900000000", "w.0"))
        assert status == 202, receipt
        hot = receipt["contact_id"]
        load = Workload(port, key)
        for writer in range(4):  # a new contact with each message, and messages of one contact

            def new_contacts(client: Client, n: int, writer: int = writer) -> tuple[int, Any]:
                sender = f"55119{writer + 1:02d}{n:06d}"
                return client.call("POST", "/ingest/message", whatsapp(sender, f"w.{writer}.{n}"))

            def hot_messages(client: Client, n: int, writer: int = writer) -> tuple[int, Any]:
                body = whatsapp("5511900000000", f"h.{writer}.{n}", f"{writer}.{n}")
                return client.call("POST", "/ingest/message", body)

            load.add(f"contacts {writer}", new_contacts)
            load.add(f"messages {writer}", hot_messages)
        for writer in range(2):

            def new_deals(client: Client, n: int) -> tuple[int, Any]:
                body = {"contact_id": hot, "title": f"negócio {n}", "pipeline": "rodobens"}
                return client.call("POST", "/deals", body)

            load.add(f"deals {writer}", new_deals)
        readers = {path: CursorReader(Client(port, key), path) for path in ("/contacts", "/deals")}
        walks: list[list[str]] = []
        walker = Client(port, key)

        def read(_: Client, n: int) -> tuple[int, Any]:
            for reader in readers.values():
                reader.poll()
            walks.append(walk_messages(walker, hot))
            return 200, None

        load.add("reader", read)
        load.run(seconds)
        assert not load.server_errors(), load.server_errors()[:5]
        written = {
            name: sum(1 for n, s, _ in load.statuses if n.startswith(name))
            for name in ("contacts", "deals", "messages")
        }
        assert min(written.values()) > 10, written
        for path, reader in readers.items():
            reader.poll()  # after the writers stopped: everything committed is visible
            everything = all_ids(setup, path)
            assert len(reader.seen) == len(set(reader.seen)), f"{path}: a row seen twice"
            missed = set(everything) - set(reader.seen)
            assert not missed, f"{path}: {len(missed)} of {len(everything)} rows never seen"
            assert reader.seen == everything, f"{path}: seen out of order"
        final = walk_messages(walker, hot)
        assert len(walks) > 3, len(walks)
        for walk in walks:
            top = final.index(walk[0])
            missed_older = [row for row in final[top:] if row not in walk]
            assert not missed_older, f"a newest-first walk missed {len(missed_older)} messages"
            assert walk == final[top:]
        return written


def all_ids(client: Client, path: str) -> list[str]:
    """Every id of a list, following `next_cursor` 200 at a time."""
    ids: list[str] = []
    cursor = ""
    while True:
        status, page = client.call("GET", f"{path}?limit=200{cursor}")
        assert status == 200, page
        ids += [item["id"] for item in page["data"]]
        if page["next_cursor"] is None:
            return ids
        cursor = f"&cursor={page['next_cursor']}"


def walk_messages(client: Client, contact_id: str) -> list[str]:
    """A contact's message ids, newest first, page after page."""
    return all_ids(client, f"/contacts/{contact_id}/messages")


def check_clients_without_server_errors(url: str, clients: int = 32, seconds: float = 4.0) -> int:
    """Against `crm-core serve` on `url`: `clients` clients at once for `seconds`, a quarter
    each posting messages, creating deals, moving deals and listing contacts. AssertionError
    if any answer is a 5xx (a 503 "database is locked" included); the number of answers."""
    with served(url) as (port, key):
        setup = Client(port, key)
        _, receipt = setup.call("POST", "/ingest/message", whatsapp("5511900000000", "w.0"))
        contact = receipt["contact_id"]
        deals = [
            setup.call(
                "POST", "/deals", {"contact_id": contact, "title": "x", "pipeline": "rodobens"}
            )[1]["id"]
            for _ in range(8)
        ]
        load = Workload(port, key)
        stages = ["qualificacao", "perdido", "novo"]
        for index in range(clients):
            kind = index % 4

            def step(
                client: Client, n: int, index: int = index, kind: int = kind
            ) -> tuple[int, Any]:
                if kind == 0:
                    body = whatsapp(f"55119{index:02d}{n:06d}", f"c.{index}.{n}")
                    return client.call("POST", "/ingest/message", body)
                if kind == 1:
                    body = {"contact_id": contact, "title": f"{index}.{n}", "pipeline": "juridico"}
                    return client.call("POST", "/deals", body)
                if kind == 2:
                    deal = deals[(index + n) % len(deals)]
                    return client.call("POST", f"/deals/{deal}/stage", {"stage": stages[n % 3]})
                return client.call("GET", "/contacts?limit=20")

            load.add(f"client {index}", step)
        load.run(seconds)
    errors = load.server_errors()
    assert not errors, f"{len(errors)} answers were 5xx, e.g. {errors[:3]}"
    assert len(load.statuses) > 200, len(load.statuses)
    return len(load.statuses)


class LiveFeed:
    """`crm-core serve` on a database for a scenario's steps, stopped when the scenario ends;
    `url` and `key` (read/write) are what a consumer of the feed is given."""

    def __init__(self, port: int, key: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.key = key
        self.client = Client(port, key)

    @classmethod
    def start(cls, database_url: str, request: Any) -> LiveFeed:
        """Serve `database_url` until `request` (a pytest FixtureRequest) finalizes."""
        stack = ExitStack()
        port, key = stack.enter_context(served(database_url))
        request.addfinalizer(stack.close)
        return cls(port, key)

    def all_events(self) -> tuple[list[dict[str, Any]], str | None]:
        """Every event of the feed from its start, and the last end_cursor."""
        return read_events(self.client, None)


def read_events(
    client: Client, after: str | None, wait: float = 0
) -> tuple[list[dict[str, Any]], str | None]:
    """The events after `after`, following next_cursor (200 a page); with `wait`, the first
    request waits that long for one. (events, the last end_cursor)."""
    events: list[dict[str, Any]] = []
    cursor = after
    while True:
        query = f"?limit=200&wait={wait:g}" + (f"&after={cursor}" if cursor else "")
        status, page = client.call("GET", "/events" + query)
        assert status == 200, page
        events += page["data"]
        cursor = page["end_cursor"] or cursor
        wait = 0
        if page["next_cursor"] is None:
            return events, cursor


def count_events(url: str) -> int:
    """How many events the database at `url` holds."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM crm_events")).scalar_one())
    finally:
        engine.dispose()


def check_feed_under_writers(url: str, clients: int = 16, seconds: float = 4.0) -> int:
    """Against `crm-core serve` on `url`: `clients` clients write for `seconds` (new contacts
    with their first message, messages of one contact, deals created and moved), while a
    consumer follows `GET /events` with a long-poll wait. AssertionError unless, once the
    writers stopped, the consumer saw every event of the feed exactly once and in the feed's
    order, the event of every accepted message once, each contact created before its first
    message and each deal created before its moves. The number of writes."""
    with served(url) as (port, key):
        setup = Client(port, key)
        status, receipt = setup.call("POST", "/ingest/message", whatsapp("5511900000000", "f.0"))
        assert status == 202, receipt
        hot = receipt["contact_id"]
        deals = [
            setup.call("POST", "/deals", {"contact_id": hot, "title": "x", "pipeline": "rodobens"})[
                1
            ]["id"]
            for _ in range(4)
        ]
        accepted: list[str] = [receipt["id"]]
        load = Workload(port, key)
        stages = ["qualificacao", "perdido", "novo"]
        for index in range(clients):
            kind = index % 4

            def step(
                client: Client, n: int, index: int = index, kind: int = kind
            ) -> tuple[int, Any]:
                if kind in (0, 1):
                    sender = f"55119{index:02d}{n:06d}" if kind == 0 else "5511900000000"
                    status, body = client.call(
                        "POST", "/ingest/message", whatsapp(sender, f"f.{index}.{n}")
                    )
                    if status == 202:
                        accepted.append(body["id"])
                    return status, body
                if kind == 2:
                    body = {"contact_id": hot, "title": f"{index}.{n}", "pipeline": "juridico"}
                    return client.call("POST", "/deals", body)
                deal = deals[(index + n) % len(deals)]
                return client.call("POST", f"/deals/{deal}/stage", {"stage": stages[n % 3]})

            load.add(f"client {index}", step)
        seen: list[dict[str, Any]] = []
        position: list[str | None] = [None]
        consumer = Client(port, key)

        def consume(_: Client, n: int) -> tuple[int, Any]:
            events, position[0] = read_events(consumer, position[0], wait=1)
            seen.extend(events)
            return 200, None

        load.add("consumer", consume)
        load.run(seconds)
        assert not load.server_errors(), load.server_errors()[:5]
        stored = count_events(url)
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < stored and time.monotonic() < deadline:  # committed after its last read
            events, position[0] = read_events(consumer, position[0], wait=1)
            seen.extend(events)
        everything, _ = read_events(setup, None)
    ids = [event["id"] for event in seen]
    assert len(ids) == len(set(ids)), "the consumer saw an event twice"
    assert ids == [event["id"] for event in everything], (
        "the consumer's events differ from the feed"
    )
    received = Counter(
        event["subject"] for event in everything if event["type"].endswith(".message.received")
    )
    assert all(received[message_id] == 1 for message_id in accepted), (
        "an accepted message lacks its event"
    )
    assert len(received) == len(accepted), (len(received), len(accepted))
    first_seen: dict[str, int] = {}
    for place, event in enumerate(everything):
        kind = event["type"].rsplit(".", 2)[-2:]
        if kind == ["contact", "created"] or kind == ["deal", "created"]:
            first_seen[event["subject"]] = place
        elif kind == ["message", "received"]:
            assert first_seen.get(event["data"]["contact_id"], place) < place, event
        elif kind == ["deal", "stage_changed"]:
            assert first_seen.get(event["subject"], place) < place, event
    writes = len(load.statuses) - sum(1 for name, _, _ in load.statuses if name == "consumer")
    assert writes > clients * 5, writes
    return writes
