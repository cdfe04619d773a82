"""Group commit: concurrent single-message requests share one transaction.

Each `POST /ingest/message` hands its validated message to the process's `GroupCommitter`
and waits. One flush at a time takes every message waiting (up to a batch) and stores them in
one transaction; each request is answered only after that transaction committed, so an
acknowledged message is never lost. While a flush runs, the next requests gather for the next
one: under load the batches grow by themselves, and a lone request is flushed at once.

On PostgreSQL the flush runs on the event loop itself, through one psycopg AsyncConnection
per worker (one flush at a time needs no more): no thread hop and no GIL contention between a
storing thread and the requests. SQLite, whose driver has no async form, flushes in a thread.
A batch of `POST /ingest/messages` is stored through the same connection, in a transaction of
its own, taking its turn between flushes (`store_all`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from crm_core.database import Database, outbox_enabled
from crm_core.exceptions import DatabaseUnavailableError
from crm_core.models.base import utcnow
from crm_core.schemas.ingest import MAX_BATCH_MESSAGES, IngestMessage
from crm_core.services.ingest import (
    Steps,
    StoredMessage,
    batch_steps,
    known_steps,
    leftovers,
    merge,
    pg_statement,
    store_messages,
    store_steps,
)
from crm_core.services.tombstones import KEY_BYTES, KEY_NAME

logger = logging.getLogger("crm_core.ingest")

Pending = tuple[IngestMessage, "asyncio.Future[StoredMessage]"]
R = TypeVar("R")


class GroupCommitter:
    """Gathers the messages of concurrent requests and commits them together."""

    def __init__(
        self, database: Database, max_batch: int = MAX_BATCH_MESSAGES, connect_timeout: int = 5
    ) -> None:
        self.database = database
        self.max_batch = max_batch
        self.connect_timeout = connect_timeout
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        url = database.engine.url
        self._pg_dsn = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql"
            else None
        )
        self._pg: tuple[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]] | None = None
        self._turn: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._key: bytes | None = None  # the tombstone key, once read
        self.events = outbox_enabled(database.engine)  # write the outbox (crm_core.services.outbox)

    @property
    def on_postgresql(self) -> bool:
        return self._pg_dsn is not None

    async def submit(self, message: IngestMessage) -> StoredMessage:
        """Store the message with whatever else is waiting; return once it is committed."""
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def store_all(self, messages: Sequence[IngestMessage]) -> list[StoredMessage]:
        """Store a batch in one transaction of its own: all of it, or nothing (PostgreSQL).

        It runs as a task of its own, shielded, like a flush: a request cancelled midway
        never leaves the shared connection in the middle of a statement; the batch is
        stored all the same, and a retry finds its messages stored.
        """
        now = utcnow()

        async def store() -> list[StoredMessage]:
            key = await self._tombstone_key()
            return await self._run(
                lambda: batch_steps(messages, now, key, self.events), transaction=True
            )

        task = asyncio.ensure_future(store())
        task.add_done_callback(_consume_outcome)
        return await asyncio.shield(task)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            messages = [message for message, _ in batch]
            try:
                if self._pg_dsn is not None:
                    stored = await self._store_async(messages)
                else:
                    stored = await run_in_threadpool(self._store, messages)
            except BaseException as exc:  # every waiting request must learn what happened
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, stored, strict=True):
                if future.done():  # (a client that went away cancelled its future)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _store_async(
        self, messages: Sequence[IngestMessage]
    ) -> list[StoredMessage | Exception]:
        """Usually one statement, its own transaction: every message whose sender is known and
        that is new. The others (new senders, messages already stored) then take the full
        path, in one transaction."""
        now = utcnow()
        key = await self._tombstone_key()
        try:
            first = await self._run(
                lambda: known_steps(messages, now, key, self.events), transaction=False
            )
        except psycopg.Error:
            if len(messages) == 1:
                raise
            return await self._store_each(messages)
        rest = leftovers(first)
        if not rest:
            return [result for result in first if result is not None]
        others = [messages[index] for index in rest]
        outcome: Sequence[StoredMessage | Exception]
        try:
            outcome = await self._run(_steps_of(others, now, key, self.events), transaction=True)
        except DatabaseUnavailableError as exc:  # the first ones are committed: only the others
            outcome = [exc] * len(others)
        except psycopg.Error as exc:
            outcome = [exc] if len(others) == 1 else await self._store_each(others)
        return merge(first, rest, outcome)

    async def _store_each(
        self, messages: Sequence[IngestMessage]
    ) -> list[StoredMessage | Exception]:
        """One message the database refused must not fail its neighbours: store each alone."""
        logger.warning("a grouped commit of %d messages failed; storing each alone", len(messages))
        results: list[StoredMessage | Exception] = []
        now = utcnow()
        key = await self._tombstone_key()
        for message in messages:
            try:
                steps = _steps_of([message], now, key, self.events)
                results.append((await self._run(steps, transaction=True))[0])
            except Exception as exc:
                results.append(exc)
        return results

    async def _tombstone_key(self) -> bytes:
        """The tombstone key (crm_core.services.tombstones), read once, made if missing."""
        if self._key is None:
            find = ("SELECT value FROM crm_secrets WHERE name = %(name)s", {"name": KEY_NAME})
            make = (
                "INSERT INTO crm_secrets (name, value, created_at) "
                "VALUES (%(name)s, %(value)s, %(now)s) ON CONFLICT (name) DO NOTHING",
                {"name": KEY_NAME, "value": os.urandom(KEY_BYTES), "now": utcnow()},
            )

            def steps() -> Generator[tuple[str, dict[str, Any]], Any, bytes]:
                rows = yield find
                if not rows:  # autocommitted: once made, it is the key
                    yield make
                    rows = yield find
                return bytes(rows[0][0])

            self._key = await self._run(steps, transaction=False)
        return self._key

    async def _run(
        self, make_steps: Callable[[], Generator[Any, Any, R]], *, transaction: bool
    ) -> R:
        """Run the steps on the worker's async connection (autocommit), in a transaction of
        their own when asked; retried once on a deadlock or serialization failure."""
        for attempt in (1, 2):
            async with self._turn_on(asyncio.get_running_loop()):
                connection = await self._connection()
                try:
                    if not transaction:
                        return await run_async(connection, make_steps())
                    async with connection.transaction():
                        return await run_async(connection, make_steps())
                except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                    if attempt == 2:
                        raise
                except psycopg.OperationalError as exc:
                    self._pg = None
                    await connection.close()
                    reason = (str(exc).strip().splitlines() or ["no answer"])[0]
                    raise DatabaseUnavailableError(reason) from exc
        raise AssertionError("unreachable")

    def _turn_on(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        """The lock that gives the connection to one statement at a time (one per loop, as
        the connection is)."""
        if self._turn is None or self._turn[0] is not loop:
            self._turn = (loop, asyncio.Lock())
        return self._turn[1]

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._pg is not None and self._pg[0] is loop and not self._pg[1].closed:
            return self._pg[1]
        assert self._pg_dsn is not None
        try:
            connection = await psycopg.AsyncConnection.connect(
                self._pg_dsn, connect_timeout=self.connect_timeout, autocommit=True
            )
        except psycopg.OperationalError as exc:
            reason = (str(exc).strip().splitlines() or ["no answer"])[0]
            raise DatabaseUnavailableError(reason) from exc
        self._pg = (loop, connection)
        return connection

    async def aclose(self) -> None:
        """Close the async connection (at the application's shutdown)."""
        if self._pg is not None and self._pg[0] is asyncio.get_running_loop():
            await self._pg[1].close()
        self._pg = None

    def _store(self, messages: Sequence[IngestMessage]) -> list[StoredMessage | Exception]:
        try:
            return list(store_batch(self.database, messages))
        except DBAPIError:
            if len(messages) == 1:
                raise
        # One message the database refused must not fail its neighbours: store each alone.
        logger.warning("a grouped commit of %d messages failed; storing each alone", len(messages))
        results: list[StoredMessage | Exception] = []
        for message in messages:
            try:
                results.append(store_batch(self.database, [message])[0])
            except Exception as exc:
                results.append(exc)
        return results


def _consume_outcome(task: asyncio.Task[Any]) -> None:
    """Mark a shielded task's outcome as seen: its request may have gone away."""
    if not task.cancelled():
        task.exception()


def _steps_of(
    messages: Sequence[IngestMessage], now: datetime, key: bytes, events: bool
) -> Callable[[], Steps[list[StoredMessage]]]:
    """A fresh `store_steps` generator at each attempt."""
    return lambda: store_steps(messages, now, key, events)


async def run_async(connection: psycopg.AsyncConnection[Any], steps: Generator[Any, Any, R]) -> R:
    """Run steps on an async connection: the storing's requests (crm_core.services.ingest),
    each as its PostgreSQL statement, or plain (statement, parameters) pairs."""
    async with connection.cursor() as cursor:
        try:
            request = next(steps)
            while True:
                statement = request if isinstance(request, tuple) else pg_statement(request)
                await cursor.execute(*statement)
                rows = await cursor.fetchall() if cursor.description else []
                request = steps.send(rows)
        except StopIteration as done:
            result: R = done.value
            return result


_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def store_batch(database: Database, messages: Sequence[IngestMessage]) -> list[StoredMessage]:
    """Store messages in one transaction of their own (retried once on a deadlock)."""
    for attempt in (1, 2):
        try:
            with database.engine.begin() as connection:
                return store_messages(connection, messages)
        except (OperationalError, InterfaceError) as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate in _RETRYABLE_SQLSTATES and attempt == 1:
                continue
            if sqlstate in _RETRYABLE_SQLSTATES:
                raise
            reason = (str(exc.orig or exc).strip().splitlines() or ["no answer"])[0]
            raise DatabaseUnavailableError(reason) from exc
    raise AssertionError("unreachable")
