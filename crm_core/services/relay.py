"""The relay: publishes the outbox (crm_core.services.outbox) to a NATS JetStream stream, in
commit order, each event once.

How it holds. The JetStream rules it relies on are those of the NATS docs, "JetStream >
Headers" (https://docs.nats.io/nats-concepts/jetstream/headers: `Nats-Msg-Id`,
`Nats-Expected-Last-Sequence`, `Nats-Expected-Last-Msg-Id`) and "Model Deep Dive > Message
Deduplication" (https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive),
and where the docs are silent (the order of the checks, a restart) what nats-server 2.9.10 was
measured to do:

* Order and no gap. Events are read after the recorded position in the commit-safe order of
  crm_core.services.pages ((`txid`, `seq`), and on PostgreSQL only below the visible horizon),
  so the relay never passes an event that commits later. Each message carries
  `Nats-Expected-Last-Sequence` = the stream sequence its predecessor was (or will be) stored
  at: JetStream stores it only if the stream's last sequence is exactly that, so with
  pipelined publishes a lost, reordered or stale message breaks the chain and every message
  after it is refused; nothing is stored out of place. The relay then records nothing,
  reconciles with the stream and resumes from the recorded position.
  `Nats-Expected-Last-Msg-Id` is *not* used: the server keeps the last message id only in
  memory and rebuilds it on restart from the messages inside the duplicate window, so after a
  restart with the last message older than the window it rejects every publish that expects
  an id (measured: nats-server 2.9.10 answers "wrong last msg ID" with an empty id). The
  stream sequence survives restarts.
* Duplicates. `Nats-Msg-Id` is the event id: JetStream drops a message whose id it saw within
  the stream's duplicate window, and answers with an ack that says `duplicate` - before it
  checks the expected-sequence header (measured on 2.9.10). A duplicate ack means the stream
  already holds that event, so the batch is treated as failed (its followers are refused by
  the sequence check anyway) and the reconciliation below moves the position past it.
* Exactly once across crashes. The position (`RelayPosition`: txid, seq and id of the last
  event acknowledged) is written in the transaction that read the batch, only after every
  ack. A relay killed after the acks but before its commit would re-publish that batch; so
  on start, and after every failure, it reads the stream's last message: when its
  `Nats-Msg-Id` is an outbox event after the recorded position, the position moves to it.
  This holds beyond the duplicate window.
* Erasure. On PostgreSQL the batch's rows are read `FOR SHARE NOWAIT`: an erasure's UPDATE of
  their data (crm_core.services.outbox.redact) waits until the batch is published and
  recorded, and a batch read while an erasure holds some of its rows is given up and read
  again after the erasure's commit, with the redacted data (NOWAIT, so that the relay never
  waits while holding locks the erasure may need next: no deadlock). On SQLite
  the batch's transaction begins IMMEDIATE, holding the one write lock. So no event published
  after an erasure carries the person's data.

Run one relay per stream. A second one is safe (the batches of one stream are serialised by a
transaction-level advisory lock on PostgreSQL, by the write lock on SQLite, and the sequence
check refuses a stale publisher) but only takes turns with the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType
from pydantic import ValidationError
from sqlalchemy import select, text, tuple_
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from crm_core.config import Settings, get_settings
from crm_core.database import Database, create_db_engine
from crm_core.exceptions import CrmError
from crm_core.log import configure_logging
from crm_core.models import OutboxEvent, RelayPosition
from crm_core.models.base import utcnow
from crm_core.schemas.pagination import encode_cursor
from crm_core.services.outbox import DATA_CONTENT_TYPE, PREFIX, SPECVERSION
from crm_core.services.pages import page

logger = logging.getLogger("crm_core.relay")

SUBJECT_PREFIX = "crm.events."
STREAM_SUBJECTS = SUBJECT_PREFIX + ">"
CONTENT_TYPE = JSONFormat.CONTENT_TYPE  # application/cloudevents+json
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
_FORMAT = JSONFormat()
MAX_BATCH = 4000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE of a NOWAIT lock that was taken

NATS_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    TimeoutError,
    ConnectionError,
    OSError,
)
"""What a NATS call may raise when the server is away or refuses (nats-py 2.x)."""


class RelayNotConfigured(Exception):
    """CRM_NATS_URL is not set: there is no NATS server to publish to."""


class BatchLocked(Exception):
    """PostgreSQL: an erasure is redacting events of the next batch (its UPDATE holds them);
    the batch is read again once it has committed."""


class RelayFailure(Exception):
    """A batch was not published as a whole (an ack missing, refused or a duplicate): nothing
    of it is recorded."""


RETRIED: tuple[type[BaseException], ...] = (*NATS_ERRORS, RelayFailure, SQLAlchemyError)
"""The failures the relay logs and retries (with backoff, from the recorded position)."""


@dataclass(frozen=True, slots=True)
class RelayOptions:
    """How the relay runs. Times are in seconds.

    `batch_size`: events read, published and recorded per transaction (1 to 4,000, the
    nats-py client's default limit of acks pending at once).
    `poll_interval`: the wait between two reads when there was nothing to publish.
    `ack_timeout`: how long a batch's acks are awaited before the batch counts as failed.
    `backoff_initial` / `backoff_max`: the first and the longest wait before a retry after a
    NATS or database failure (doubling in between).
    `duplicate_window`: the duplicate window of a stream the relay creates (JetStream drops a
    message whose `Nats-Msg-Id` it stored within this window); an existing stream keeps its own.
    """

    nats_url: str
    stream: str
    source: str
    batch_size: int = 500
    poll_interval: float = 0.2
    ack_timeout: float = 5.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    duplicate_window: float = 120.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be from 1 to {MAX_BATCH}, not {self.batch_size}")
        if min(self.poll_interval, self.ack_timeout, self.backoff_initial) <= 0:
            raise ValueError("poll_interval, ack_timeout and backoff_initial must be positive")
        if self.backoff_max < self.backoff_initial or self.duplicate_window <= 0:
            raise ValueError("backoff_max must be >= backoff_initial, duplicate_window positive")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RelayOptions:
        """The options of `settings` (CRM_NATS_URL, CRM_NATS_STREAM, CRM_EVENT_SOURCE).
        Raises RelayNotConfigured when CRM_NATS_URL is not set."""
        if not settings.nats_url:
            raise RelayNotConfigured("CRM_NATS_URL is not set")
        return cls(
            nats_url=settings.nats_url,
            stream=settings.nats_stream,
            source=settings.event_source,
            **overrides,
        )


def subject_of(event_type: str) -> str:
    """The NATS subject of an event type: `crm.events.` + the type without `br.aurora.crm.`
    (`br.aurora.crm.message.received` -> `crm.events.message.received`)."""
    return SUBJECT_PREFIX + event_type.removeprefix(PREFIX)


def payload_of(row: OutboxEvent, source: str) -> bytes:
    """The event as CloudEvents 1.0 structured JSON (the SDK's CloudEvent and JSONFormat), the
    same attributes as crm_core.services.outbox.cloud_event."""
    event = CloudEvent(
        attributes={
            "specversion": SPECVERSION,
            "id": str(row.id),
            "source": source,
            "type": row.type,
            "subject": row.subject,
            "time": row.time,
            "datacontenttype": DATA_CONTENT_TYPE,
        },
        data=row.data,
    )
    return _FORMAT.write(event)


def headers_of(row: OutboxEvent, expected_last_sequence: int) -> dict[str, str]:
    """The message headers: the content type, the event id as `Nats-Msg-Id` and the stream
    sequence the message must follow (`Nats-Expected-Last-Sequence`)."""
    return {
        "Content-Type": CONTENT_TYPE,
        MSG_ID: str(row.id),
        EXPECTED_LAST_SEQUENCE: str(expected_last_sequence),
    }


def _lock_key(stream: str) -> int:
    """A PostgreSQL advisory lock key (a signed bigint) of the relay of one stream."""
    return zlib.crc32(f"crm_relay:{stream}".encode()) - 2**31


def _reason(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text_[0]}" if text_ and text_[0] else type(exc).__name__


class Relay:
    """Publishes the outbox of `database` to the JetStream stream `options.stream`.

    `run(stop)` runs until `stop` is set (or, with `until_idle`, until nothing is left to
    publish) and retries every NATS or database failure with a bounded backoff; `published`
    counts the events published and recorded.
    """

    def __init__(self, database: Database, options: RelayOptions) -> None:
        self.database = database
        self.options = options
        self.published = 0
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._last_sequence: int | None = None  # the stream's, as of the last ack (None: ask)
        self._postgres = database.engine.dialect.name == "postgresql"
        self._disconnected = False
        self._closing = False
        self._connecting = False
        self._unreachable = False
        self._stream_reported = False

    # NATS.

    async def _connect(self, stop: asyncio.Event) -> bool:
        """Connect, retrying until `stop`; False when stopped first. nats-py retries by itself
        every second (`max_reconnect_attempts=-1`: its first connect never gives up either) and
        the first failure is logged once, "NATS unreachable, retrying"; once connected it
        reconnects by itself too, buffering what is published meanwhile."""
        delay = self.options.backoff_initial
        while not stop.is_set():
            client = NatsClient()
            self._nc, self._connecting, self._unreachable = client, True, False
            connecting = asyncio.ensure_future(
                client.connect(
                    self.options.nats_url,
                    name="crm-core relay",
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
            )
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            self._connecting = False
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError, *NATS_ERRORS):
                    await connecting
                await self._close()
                return False
            failure = connecting.exception()
            if failure is not None:  # not a server away (retried inside), e.g. a bad URL
                await self._on_error(failure)
                await self._close()
                await _sleep(stop, delay)
                delay = min(delay * 2, self.options.backoff_max)
                continue
            self._js = client.jetstream(timeout=self.options.ack_timeout)
            self._last_sequence = None  # a new connection reconciles first
            logger.info("connected to NATS", extra={"nats_url": self.options.nats_url})
            return True
        return False

    async def _on_disconnected(self) -> None:
        if not self._disconnected and not self._closing:
            self._disconnected = True
            logger.warning("disconnected from NATS, reconnecting")

    async def _on_reconnected(self) -> None:
        self._disconnected = False
        logger.info("reconnected to NATS")

    async def _on_error(self, exc: BaseException) -> None:
        if self._connecting and not self._unreachable:
            self._unreachable = True
            logger.warning(
                "NATS unreachable, retrying",
                extra={"nats_url": self.options.nats_url, "reason": _reason(exc)},
            )
        else:
            logger.debug("NATS client error", extra={"reason": _reason(exc)})

    async def _close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            self._closing = True
            with contextlib.suppress(*NATS_ERRORS):
                await self._nc.close()
        self._nc = self._js = None
        self._closing = False

    async def ensure_stream(self) -> None:
        """Create the stream (subjects `crm.events.>`, file storage, the duplicate window of
        the options) when it does not exist; leave an existing one as it is. Raises a NATS
        error when the server does not answer."""
        assert self._js is not None
        name = self.options.stream
        try:
            await self._js.stream_info(name)
            self._found_stream()
            return
        except nats.js.errors.NotFoundError:
            pass
        try:
            await self._js.add_stream(
                name=name,
                subjects=[STREAM_SUBJECTS],
                storage=StorageType.FILE,
                duplicate_window=self.options.duplicate_window,
            )
        except nats.js.errors.BadRequestError:  # created meanwhile by someone else
            await self._js.stream_info(name)
            self._found_stream()
            return
        self._stream_reported = True
        logger.info("stream created", extra={"stream": name, "subjects": STREAM_SUBJECTS})

    def _found_stream(self) -> None:
        if not self._stream_reported:  # once: it is checked again after every failure
            self._stream_reported = True
            logger.info("stream found", extra={"stream": self.options.stream})

    async def reconcile(self) -> None:
        """Align with the stream: learn its last sequence, and when its last message is an
        outbox event after the recorded position, move the position to it (a relay killed
        between the acks and its commit). Raises a NATS or database error."""
        assert self._js is not None
        state = (await self._js.stream_info(self.options.stream)).state
        last_sequence = int(state.last_seq or 0)
        last_id: uuid.UUID | None = None
        if last_sequence > 0:
            try:
                message = await self._js.get_msg(self.options.stream, seq=last_sequence)
            except nats.js.errors.NotFoundError:
                message = None  # deleted, or expired by the stream's limits
            raw_id = (message.headers or {}).get(MSG_ID) if message is not None else None
            with contextlib.suppress(ValueError, TypeError):
                last_id = uuid.UUID(str(raw_id)) if raw_id else None
        if last_id is not None:
            with self.database.sessionmaker() as session:
                self._lock(session)
                moved = self._advance_to(session, last_id)
                session.commit()
            if moved:
                logger.info(
                    "position moved to the stream's last event",
                    extra={"stream": self.options.stream, "event_id": str(last_id)},
                )
        self._last_sequence = last_sequence

    # The database.

    def _lock(self, session: Session) -> None:
        """Serialise the batches of one stream (PostgreSQL; SQLite's write lock does it)."""
        if self._postgres:
            session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(self.options.stream)}
            )

    def _position(self, session: Session) -> RelayPosition | None:
        return session.get(RelayPosition, self.options.stream, populate_existing=True)

    def _advance_to(self, session: Session, event_id: uuid.UUID) -> bool:
        """Move the position to `event_id` when that event exists and is after it."""
        row = session.execute(
            select(OutboxEvent.txid, OutboxEvent.seq).where(OutboxEvent.id == event_id)
        ).first()
        if row is None:
            return False
        position = self._position(session)
        if position is not None and (row.txid, row.seq) <= (position.txid, position.seq):
            return False
        self._record(session, position, row.txid, row.seq, event_id)
        return True

    def _record(
        self,
        session: Session,
        position: RelayPosition | None,
        txid: int,
        seq: int,
        event_id: uuid.UUID,
    ) -> None:
        if position is None:
            session.add(
                RelayPosition(stream=self.options.stream, txid=txid, seq=seq, event_id=event_id)
            )
        else:
            position.txid, position.seq, position.event_id = txid, seq, event_id
            position.updated_at = utcnow()
        session.flush()

    def read_batch(self, session: Session) -> tuple[RelayPosition | None, Sequence[OutboxEvent]]:
        """The recorded position (None before the first batch) and up to `batch_size` events
        after it, in the session's transaction: in commit-safe order (pages.page), locked FOR
        SHARE on PostgreSQL (an erasure's UPDATE of their data waits for the transaction's
        end); on SQLite the transaction holds the write lock from its start. Raises BatchLocked
        when an erasure running on PostgreSQL holds some of them."""
        self._lock(session)
        position = self._position(session)
        cursor = None if position is None else encode_cursor(position.txid, position.seq)
        query = select(OutboxEvent)
        if self._postgres:
            # NOWAIT: a relay that waited for an erasure while holding the rows it had
            # already locked could deadlock with it (the erasure's UPDATE locks them in
            # another order); it lets go and reads the batch again instead.
            query = query.with_for_update(read=True, nowait=True)
        try:
            batch = page(session, query, OutboxEvent, cursor=cursor, limit=self.options.batch_size)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise BatchLocked from exc
            raise
        return position, batch.rows

    def _anything_new(self) -> bool:
        """Whether an event is after the position (a read-only peek, which takes no lock)."""
        with self.database.read_sessionmaker() as session:
            position = self._position(session)
            query = select(OutboxEvent.id)
            if position is not None:
                query = query.where(
                    tuple_(OutboxEvent.txid, OutboxEvent.seq) > tuple_(position.txid, position.seq)
                )
            return session.execute(query.limit(1)).first() is not None

    # Publishing.

    async def _publish(self, rows: Sequence[OutboxEvent]) -> int:
        """Publish `rows` pipelined and await every ack; the stream's new last sequence.
        Raises RelayFailure (or a NATS error) unless each was stored, in order, as new."""
        assert self._js is not None
        assert self._last_sequence is not None
        js = self._js
        base = self._last_sequence
        source = self.options.source
        futures: list[asyncio.Future[Any]] = []
        try:
            for index, row in enumerate(rows):
                # Without `wait_stall` nothing here yields to the event loop (a batch is far
                # below the client's 4,000 pending acks): the batch goes out in one write.
                futures.append(
                    await js.publish_async(
                        subject_of(row.type),
                        payload_of(row, source),
                        headers=headers_of(row, base + index),
                    )
                )
            acks = await asyncio.wait_for(
                asyncio.gather(*futures), timeout=self.options.ack_timeout
            )
        finally:
            for future in futures:
                future.cancel()  # frees the client's slots of acks that never came
        for index, ack in enumerate(acks):
            if ack.duplicate or ack.seq != base + index + 1 or ack.stream != self.options.stream:
                raise RelayFailure(
                    f"event {rows[index].id} was acknowledged as seq {ack.seq} of {ack.stream}"
                    f"{' (duplicate)' if ack.duplicate else ''}, expected {base + index + 1}"
                )
        return base + len(rows)

    async def step(self) -> int:
        """Publish one batch and record it: the number of events published (0: none left).
        On failure nothing is recorded and the error propagates."""
        assert self._js is not None
        if self._last_sequence is None:
            await self.reconcile()
        with self.database.sessionmaker() as session:
            try:
                position, rows = self.read_batch(session)
                if not rows:
                    session.rollback()
                    return 0
                last_sequence = await self._publish(rows)
                last = rows[-1]
                self._record(session, position, last.txid, last.seq, last.id)
                session.commit()
            except BatchLocked:
                session.rollback()  # nothing was published
                raise
            except BaseException:
                session.rollback()
                self._last_sequence = None  # reconcile before the next batch
                raise
        self._last_sequence = last_sequence
        self.published += len(rows)
        return len(rows)

    async def run(self, stop: asyncio.Event | None = None, *, until_idle: bool = False) -> None:
        """Connect, make sure the stream exists, reconcile, then publish batch after batch
        until `stop` is set, polling every `poll_interval` seconds when there is nothing to
        publish (or, with `until_idle`, return then). A batch in flight when `stop` is set is
        finished (at most `ack_timeout`) or abandoned unrecorded. NATS and database failures
        are logged once per change of state and retried with a bounded backoff, resuming from
        the recorded position."""
        stop = stop or asyncio.Event()
        try:
            if not await self._connect(stop):
                return
            await self._loop(stop, until_idle)
        finally:
            await self._close()

    async def _loop(self, stop: asyncio.Event, until_idle: bool) -> None:
        delay = self.options.backoff_initial
        ready = False
        failing = False
        while not stop.is_set():
            if self._nc is None or self._nc.is_closed:
                await self._close()
                if not await self._connect(stop):
                    return
                ready = False
            try:
                if not ready:
                    await self.ensure_stream()
                    ready = True
                count = await self.step()
            except BatchLocked:
                logger.debug("an erasure holds the next events, waiting for it")
                await _sleep(stop, self.options.poll_interval)
                continue
            except RETRIED as exc:
                ready = False  # the server may have come back without the stream
                if not failing:
                    logger.warning(
                        "publishing failed, retrying from the recorded position",
                        extra={"stream": self.options.stream, "reason": _reason(exc)},
                    )
                    failing = True
                await _sleep(stop, delay)
                delay = min(delay * 2, self.options.backoff_max)
                continue
            if failing:
                logger.info("publishing again", extra={"stream": self.options.stream})
                failing = False
            delay = self.options.backoff_initial
            if count:
                continue
            if until_idle:
                return
            while not stop.is_set():
                await _sleep(stop, self.options.poll_interval)
                try:
                    if self._anything_new():
                        break
                except SQLAlchemyError:
                    break  # step() reports it


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less when `stop` is set; the NATS client runs meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def command() -> int:
    """`crm-core relay`: run the relay until SIGTERM or SIGINT; the exit code.

    Exit 2, with one line on standard error, when the configuration is wrong (CRM_NATS_URL not
    set, a bad setting); exit 1 when the database cannot be read at start (not migrated,
    unreachable). An unreachable NATS server is not an error: the relay is a daemon, it logs
    "NATS unreachable, retrying" once and keeps trying (backoff up to 5 s).
    """
    try:
        settings = get_settings()
        options = RelayOptions.from_settings(settings)
        database = Database(create_db_engine(settings.database_url))
    except RelayNotConfigured:
        print(
            "crm-core relay: CRM_NATS_URL is not set: set it to the NATS server to publish "
            "to, e.g. CRM_NATS_URL=nats://127.0.0.1:4222",
            file=sys.stderr,
        )
        return 2
    except (CrmError, ValidationError) as exc:
        reason = " ".join(str(exc).split())
        print(f"crm-core relay: configuration error: {reason}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        with database.read_sessionmaker() as session:
            session.execute(select(RelayPosition.stream).limit(1)).all()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"crm-core relay: database error: {reason} (did you run `alembic upgrade head`?)",
            file=sys.stderr,
        )
        database.dispose()
        return 1
    try:
        asyncio.run(_serve(Relay(database, options)))
    finally:
        database.dispose()
    return 0


async def _serve(relay: Relay) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info(
        "relay started",
        extra={"stream": relay.options.stream, "nats_url": relay.options.nats_url},
    )
    await relay.run(stop)
    logger.info("relay stopped", extra={"published": relay.published})
