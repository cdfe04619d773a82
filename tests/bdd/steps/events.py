"""Steps about OS 007: the outbox, the event feed (`GET /events`), `crm-core events`, on a live
database each. Event types are written without their `br.aurora.crm.` prefix."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI
from pytest_bdd import given, parsers, then, when
from sqlalchemy import Connection, Transaction, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from crm_core import cli
from crm_core.config import get_settings
from crm_core.models import ApiKey, Message, OutboxEvent, RelayPosition
from crm_core.schemas.ingest import IngestMessage
from crm_core.services import outbox
from crm_core.services.api_keys import create_key
from crm_core.services.ingest import store_messages
from tests.bdd.steps.ingest import _migrated_app, client_of, engine_of
from tests.bdd.support.databases import Backend, DatabaseUnderTest, LiveDatabase, live_url
from tests.bdd.support.names import names
from tests.bdd.support.relaying import (
    STREAM,
    NatsServer,
    RelayProcess,
    Writer,
    assert_exactly_once_in_order,
    caught_up,
    nats_binary,
    outbox_count,
    relay_until_idle,
    stream_count,
    stream_messages,
    wait_until,
)
from tests.bdd.support.serving import LiveFeed, check_feed_under_writers, whatsapp

WAIT = 30.0


def short(kind: str) -> str:
    """`message.received` for `br.aurora.crm.message.received`."""
    return kind.removeprefix(outbox.PREFIX)


def read_feed(
    app: FastAPI, credentials: dict[str, str], after: str | None = None, **query: Any
) -> tuple[list[dict[str, Any]], str | None]:
    """Every event after `after`, following `next_cursor`; (events, the last end_cursor)."""
    events: list[dict[str, Any]] = []
    cursor = after
    while True:
        params = {"limit": 1000, **query, **({"after": cursor} if cursor else {})}
        page = client_of(app).get("/events", params=params, headers=credentials)
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["data"]
        cursor = body["end_cursor"] or cursor
        if body["next_cursor"] is None:
            return events, cursor


def feed_of(app: FastAPI, credentials: dict[str, str]) -> list[dict[str, Any]]:
    """The whole feed, once every event stored is in it. On PostgreSQL the feed shows an event
    once no transaction older than its own runs anywhere on the server (crm_core.services.pages):
    another database's writer may hold that back for a moment, never for long."""
    with engine_of(app).connect() as connection:
        stored = connection.execute(select(func.count()).select_from(OutboxEvent)).scalar_one()
    deadline = time.monotonic() + WAIT
    while True:
        events = read_feed(app, credentials)[0]
        if len(events) >= stored or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@given(
    parsers.parse("o app do crm_core no banco {backend:w} migrado com o outbox desligado"),
    converters={"backend": Backend},
    target_fixture="app",
)
def app_without_outbox(
    backend: Backend,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> FastAPI:
    url = live_url(backend, sqlite_url, request)
    return _migrated_app(url, monkeypatch, request, {"CRM_OUTBOX": "false"})


@then(
    parsers.parse('o feed traz os eventos "{kinds}", nessa ordem'),
    converters={"kinds": names},
)
def feed_in_order(app: FastAPI, kinds: tuple[str, ...], api_credentials: dict[str, str]) -> None:
    got = [short(event["type"]) for event in feed_of(app, api_credentials)]
    assert got == list(kinds), got


@then(parsers.parse('o feed traz, por tipo, os eventos "{counts}"'), converters={"counts": names})
def feed_by_type(app: FastAPI, counts: tuple[str, ...], api_credentials: dict[str, str]) -> None:
    wanted = {kind: int(number) for kind, number in (entry.split("=") for entry in counts)}
    got = Counter(short(event["type"]) for event in feed_of(app, api_credentials))
    assert dict(got) == wanted, got


@then(
    "cada evento de status, reação, edição ou revogação nomeia a mensagem e o contato quando a "
    "mensagem é do crm_core"
)
def whatsapp_events_name_their_message(app: FastAPI, api_credentials: dict[str, str]) -> None:
    with engine_of(app).connect() as connection:
        ours = {
            wamid: (str(message_id), str(contact_id))
            for wamid, message_id, contact_id in connection.execute(
                select(Message.channel_message_id, Message.id, Message.contact_id)
            )
        }
    kinds = {"message.status", "message.reaction", "message.edited", "message.revoked"}
    checked = Counter[bool]()
    for event in feed_of(app, api_credentials):
        if short(event["type"]) not in kinds:
            continue
        data = event["data"]
        expected = ours.get(data["channel_message_id"], (None, None))
        assert (data["message_id"], data["contact_id"]) == expected, event
        assert data["channel_message_id"] != event["subject"] or event["type"].endswith("status")
        checked[expected[0] is not None] += 1
    assert checked[True], checked  # some of the crm_core's messages
    assert checked[False], checked  # and some another system sent


@then(
    parsers.parse(
        'cada evento do feed é um CloudEvent 1.0 que o SDK lê, de origem "{source}", com um '
        "tipo documentado, id único e hora em UTC"
    )
)
def every_event_is_a_cloudevent(app: FastAPI, source: str, api_credentials: dict[str, str]) -> None:
    events = feed_of(app, api_credentials)
    assert events
    ids = set()
    for document in events:
        event = JSONFormat().read(None, json.dumps(document))
        assert event.get_specversion() == "1.0", document
        assert event.get_source() == source, document
        assert event.get_type() in outbox.EVENT_TYPES, document
        assert event.get_subject(), document
        assert event.get_datacontenttype() == "application/json", document
        moment = event.get_time()
        assert moment is not None, document
        assert moment.utcoffset() == timedelta(0), document
        assert document["time"].endswith("Z"), document
        assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5), document
        assert event.get_data() == document["data"], document
        ids.add(event.get_id())
    assert len(ids) == len(events), "two events share an id"


def _events_of(app: FastAPI, credentials: dict[str, str], kind: str) -> list[dict[str, Any]]:
    found = [e for e in feed_of(app, credentials) if short(e["type"]) == kind]
    assert found, f"no {kind} event"
    return found


@then(
    parsers.parse('o evento "message.received" traz a mensagem exatamente como "{read}" a mostra')
)
def message_event_is_the_message(app: FastAPI, read: str, api_credentials: dict[str, str]) -> None:
    assert read == "GET /messages/{id}"
    for event in _events_of(app, api_credentials, "message.received"):
        shown = client_of(app).get(f"/messages/{event['subject']}", headers=api_credentials)
        assert shown.status_code == 200, shown.text
        message = {k: v for k, v in shown.json().items() if k not in ("statuses", "events")}
        assert event["data"] == message, (event["data"], message)


@then(
    parsers.parse(
        'o evento "contact.created" traz o id, a origem "{source}", o remetente "{sender}" e a '
        "criação do contato"
    )
)
def contact_event_is_the_contact(
    app: FastAPI, source: str, sender: str, api_credentials: dict[str, str]
) -> None:
    (event,) = _events_of(app, api_credentials, "contact.created")
    shown = client_of(app).get(f"/contacts/{event['subject']}", headers=api_credentials).json()
    expected = {"id": shown["id"], "source": source, "sender_id": sender}
    assert event["data"] == {**expected, "created_at": shown["created_at"]}, (event, shown)
    assert shown["source"] == source, shown
    assert shown["sender_id"] == sender, shown


@then(
    parsers.parse('o evento "deal.created" traz o negócio como "{read}" o mostra, sem o histórico')
)
def deal_event_is_the_deal(app: FastAPI, read: str, api_credentials: dict[str, str]) -> None:
    assert read == "GET /deals/{id}"
    (event,) = _events_of(app, api_credentials, "deal.created")
    shown = client_of(app).get(f"/deals/{event['subject']}", headers=api_credentials).json()
    assert event["data"] == {k: v for k, v in shown.items() if k != "history"}, (event, shown)


@then(
    parsers.parse(
        'percorrer o feed com limit {limit:d} e "{query}" traz {count:d} eventos "{kind}", '
        "sem repetir nenhum"
    )
)
def walk_feed(
    app: FastAPI, limit: int, query: str, count: int, kind: str, api_credentials: dict[str, str]
) -> None:
    name, _, value = query.partition("=")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {
            "limit": limit,
            name: value,
            **({"after": cursor} if cursor else {}),
        }
        page = client_of(app).get("/events", params=params, headers=api_credentials).json()
        assert all(short(event["type"]) == kind for event in page["data"]), page
        seen += [event["id"] for event in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == count == len(set(seen)), seen
    assert pages == -(-count // limit) + (count % limit == 0), pages


@then(
    parsers.parse(
        '"GET /events" com a chave do cenário responde 200, sem chave 401 e com uma chave '
        '"{scope}" 403'
    )
)
def feed_needs_a_reader(app: FastAPI, scope: str, api_credentials: dict[str, str]) -> None:
    with app.state.database.sessionmaker() as session:
        _, other = create_key(session, scope, "outra")
    assert client_of(app).get("/events", headers=api_credentials).status_code == 200
    assert client_of(app).get("/events").status_code == 401
    refused = client_of(app).get("/events", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"


@then(
    parsers.parse(
        'com a chave do cenário "GET /contacts" e "GET /deals" respondem 200, e "POST /deals" e '
        '"POST /ingest/message" respondem 403'
    )
)
def reader_cannot_write(app: FastAPI, api_credentials: dict[str, str]) -> None:
    client = client_of(app)
    for path in ("/contacts", "/deals", "/pipelines"):
        assert client.get(path, headers=api_credentials).status_code == 200, path
    deal = {
        "contact_id": "00000000-0000-4000-8000-000000000000",
        "title": "x",
        "pipeline": "rodobens",
    }
    assert client.post("/deals", json=deal, headers=api_credentials).status_code == 403
    message = whatsapp("5521987650001", "wamid.leitor")
    assert client.post("/ingest/message", json=message, headers=api_credentials).status_code == 403
    with engine_of(app).connect() as connection:
        assert connection.execute(select(Message.id)).first() is None


def _timed_read(
    app: FastAPI, credentials: dict[str, str], after: str | None, wait: float
) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    params = {"wait": wait, **({"after": after} if after else {})}
    response = client_of(app).get("/events", params=params, headers=credentials)
    assert response.status_code == 200, response.text
    return time.monotonic() - started, response.json()


@then(
    parsers.parse(
        "um pedido a partir do fim do feed com wait de {wait:d} segundos, enquanto a mensagem "
        '"{content}" de "{sender}" é gravada {delay:d} segundo depois, responde antes do prazo '
        "com o evento dela"
    )
)
def long_poll_answers_early(
    app: FastAPI, wait: int, content: str, sender: str, delay: int, api_credentials: dict[str, str]
) -> None:
    feed_of(app, api_credentials)  # settled: the end is after every event stored
    _, end = read_feed(app, api_credentials)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_timed_read, app, api_credentials, end, float(wait))
        time.sleep(delay)
        assert not waiting.done(), "the long poll answered before any event"
        stored = client_of(app).post(
            "/ingest/message",
            json=whatsapp(sender, "wamid.espera", content),
            headers=api_credentials,
        )
        assert stored.status_code == 202, stored.text
        elapsed, page = waiting.result(timeout=wait + WAIT)
    assert delay <= elapsed < wait - 1, elapsed
    assert [event["subject"] for event in page["data"]] == [stored.json()["id"]], page
    assert page["data"][0]["data"]["content"] == content


@then(
    parsers.parse(
        "um pedido a partir do fim do feed com wait de {wait:d} segundo, sem evento novo, responde "
        "vazio depois do prazo com o mesmo end_cursor"
    )
)
def long_poll_times_out(app: FastAPI, wait: int, api_credentials: dict[str, str]) -> None:
    feed_of(app, api_credentials)
    _, end = read_feed(app, api_credentials)
    elapsed, page = _timed_read(app, api_credentials, end, float(wait))
    assert page["data"] == [], page
    assert page["end_cursor"] == end, page
    assert wait <= elapsed < wait + 5, elapsed


@dataclass
class OpenEventWrite:
    """A message (and its contact) stored by a transaction left open, others stored through the
    API meanwhile, and what a reader following the feed saw."""

    connection: Connection
    transaction: Transaction
    others: list[Future[httpx.Response]]
    pool: ThreadPoolExecutor
    seen: list[str] = field(default_factory=list)
    end_cursor: str | None = None


@when(
    parsers.parse(
        "uma mensagem é gravada por uma transação que fica aberta enquanto outras {count:d} "
        "mensagens são gravadas pela API"
    ),
    target_fixture="open_event_write",
)
def event_written_late(
    app: FastAPI, count: int, api_credentials: dict[str, str], request: pytest.FixtureRequest
) -> OpenEventWrite:
    connection = engine_of(app).connect()
    transaction = connection.begin()
    late = IngestMessage.model_validate(whatsapp("5521987659999", "wamid.tardia", "tardia"))
    store_messages(connection, [late])
    pool = ThreadPoolExecutor(1)  # one after the other, as their senders send them
    others = [
        pool.submit(
            client_of(app).post,
            "/ingest/message",
            json=whatsapp(f"55219876510{n:02d}", f"wamid.outra.{n}"),
            headers=api_credentials,
        )
        for n in range(count)
    ]
    with contextlib.suppress(TimeoutError):  # PostgreSQL commits them now; SQLite waits
        others[-1].result(timeout=2.0)
    state = OpenEventWrite(connection, transaction, others, pool)

    def close() -> None:
        if transaction.is_active:
            transaction.rollback()
        connection.close()
        pool.shutdown(wait=True)

    request.addfinalizer(close)
    return state


@when("eu sigo o feed até o fim")
@when("eu sigo o feed de novo a partir do end_cursor")
def follow_feed(
    app: FastAPI, open_event_write: OpenEventWrite, api_credentials: dict[str, str]
) -> None:
    stored = 0
    if not open_event_write.transaction.is_active:  # committed: every event can be seen
        with engine_of(app).connect() as connection:
            count = select(func.count()).select_from(OutboxEvent)
            stored = connection.execute(count).scalar_one()
    deadline = time.monotonic() + WAIT
    while True:
        events, end = read_feed(app, api_credentials, open_event_write.end_cursor, limit=1)
        open_event_write.seen += [event["id"] for event in events]
        open_event_write.end_cursor = end
        if len(open_event_write.seen) >= stored or time.monotonic() > deadline:
            return
        time.sleep(0.05)


@when("a transação aberta da mensagem faz commit")
def open_event_transaction_commits(open_event_write: OpenEventWrite) -> None:
    open_event_write.transaction.commit()
    for other in open_event_write.others:
        response = other.result(timeout=WAIT)
        assert response.status_code == 202, response.text


@then("eu vi cada evento do banco exatamente uma vez, na ordem do feed")
def saw_each_event_once(
    app: FastAPI, open_event_write: OpenEventWrite, api_credentials: dict[str, str]
) -> None:
    everything = [event["id"] for event in feed_of(app, api_credentials)]
    with engine_of(app).connect() as connection:
        stored = connection.execute(select(OutboxEvent.id)).scalars().all()
    # two earlier messages and the open transaction's, each with its contact, and the others'
    expected = 2 * (2 + 1 + len(open_event_write.others))
    assert len(everything) == len(stored) == expected, (everything, stored)
    assert open_event_write.seen == everything, (open_event_write.seen, everything)


@then(
    parsers.parse(
        'com "crm-core serve" no mesmo banco e {clients:d} clientes que gravam por {seconds:d} '
        'segundos, um consumidor que segue "GET /events" com wait vê cada evento exatamente uma '
        "vez, na ordem de commit, o evento de cada mensagem aceita e cada contato criado antes da "
        "sua primeira mensagem"
    )
)
def consumer_under_writers(app: FastAPI, clients: int, seconds: int) -> None:
    written = check_feed_under_writers(app.state.settings.database_url, clients, float(seconds))
    assert written > clients, written


@then(parsers.parse('nenhum evento do feed guarda "{texts}"'), converters={"texts": names})
def no_event_holds(app: FastAPI, texts: tuple[str, ...], api_credentials: dict[str, str]) -> None:
    served = json.dumps(feed_of(app, api_credentials), ensure_ascii=False)
    with engine_of(app).connect() as connection:
        stored = json.dumps(
            list(connection.execute(select(OutboxEvent.data)).scalars()),
            ensure_ascii=False,
        )
    for needle in texts:
        assert needle not in served, f"an event served still holds {needle!r}"
        assert needle not in stored, f"an event stored still holds {needle!r}"


@then(
    'os eventos do contato eliminado trazem só o id do contato e "erased", e o evento '
    '"contact.erased" nomeia o contato'
)
def erased_events(
    app: FastAPI, api_credentials: dict[str, str], scenario_ids: dict[str, str]
) -> None:
    contact_id = scenario_ids["contact_id"]
    *before, erased = feed_of(app, api_credentials)
    assert all(event["data"] == {"contact_id": contact_id, "erased": True} for event in before)
    assert erased["subject"] == contact_id == erased["data"]["id"], erased
    assert erased["data"]["erased_at"].endswith("Z"), erased


@given(
    parsers.parse("que os {count:d} eventos do banco têm {days:d} dias e mais um evento é de hoje"),
    target_fixture="events_before",
)
def aged_events(
    app: FastAPI,
    count: int,
    days: int,
    api_credentials: dict[str, str],
    scenario_ids: dict[str, str],
) -> list[str]:
    with engine_of(app).begin() as connection:
        aged = connection.execute(
            update(OutboxEvent).values(time=datetime.now(UTC) - timedelta(days=days))
        )
        assert aged.rowcount == count, aged.rowcount
    first = feed_of(app, api_credentials)[1]["data"]  # the first message's sender writes again
    body = whatsapp(first["sender_id"], "wamid.hoje", "de hoje")
    assert (
        client_of(app).post("/ingest/message", json=body, headers=api_credentials).status_code
        == 202
    )
    return [event["id"] for event in feed_of(app, api_credentials)]


@when(
    parsers.parse('eu rodo "crm-core {command}" com CRM_NATS_URL configurado'),
    target_fixture="output",
)
def prune_with_relay(app: FastAPI, command: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CRM_NATS_URL", "nats://127.0.0.1:4222")
    return _run_cli(command)


@when(parsers.parse('eu rodo "crm-core {command}" sem CRM_NATS_URL'), target_fixture="output")
def prune_without_relay(app: FastAPI, command: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("CRM_NATS_URL", raising=False)
    return _run_cli(command)


def _run_cli(command: str) -> str:
    """Run `crm-core COMMAND` in this process (as its entry point does), on the scenario's
    database (DATABASE_URL); its standard output. It must exit 0."""
    get_settings.cache_clear()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(command.split())
    get_settings.cache_clear()
    assert code == 0, err.getvalue()
    return out.getvalue().strip()


@then(parsers.parse('a saída é "{expected}"'))
def output_is(output: str, expected: str) -> None:
    assert output == expected, output


@when(parsers.parse("o relay registrou a posição do {position:d}º evento do feed"))
def relay_position(app: FastAPI, position: int, events_before: list[str]) -> None:
    event_id = uuid.UUID(events_before[position - 1])
    with engine_of(app).begin() as connection:
        txid, seq = connection.execute(
            select(OutboxEvent.txid, OutboxEvent.seq).where(OutboxEvent.id == event_id)
        ).one()
        connection.execute(
            insert(RelayPosition).values(
                stream="CRM_EVENTS",
                txid=txid,
                seq=seq,
                event_id=event_id,
                updated_at=datetime.now(UTC),
            )
        )


@then(parsers.parse("o feed começa pelo {position:d}º dos eventos de antes"))
def feed_starts_at(
    app: FastAPI, position: int, events_before: list[str], api_credentials: dict[str, str]
) -> None:
    ids = [event["id"] for event in feed_of(app, api_credentials)]
    assert ids == events_before[position - 1 :], (ids, events_before)


@then(
    parsers.parse(
        'com "crm-core serve" no mesmo banco e {count:d} mensagens gravadas, "crm-core events tail '
        '--once" imprime os {events:d} eventos do feed, um JSON por linha, na ordem, e diz de que '
        "cursor retomar"
    ),
    target_fixture="live_feed",
)
def tail_prints_the_feed(
    app: FastAPI, count: int, events: int, request: pytest.FixtureRequest
) -> LiveFeed:
    feed = LiveFeed.start(app.state.settings.database_url, request)
    for n in range(count):
        status, _ = feed.client.call(
            "POST", "/ingest/message", whatsapp(f"552198765{n:04d}", f"w.{n}")
        )
        assert status == 202
    everything, end = feed.all_events()
    assert len(everything) == events, everything
    code, out, err = _tail(feed, "--once")
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == everything, out
    assert err.strip().endswith(f"resume with --after {end}"), err
    return feed


@then(
    parsers.parse(
        'com "--types {kind}" imprime só os {count:d} contatos, e com uma chave errada escreve uma '
        "linha de erro e sai com o código 1"
    )
)
def tail_filters_and_refuses(live_feed: LiveFeed, kind: str, count: int) -> None:
    code, out, _ = _tail(live_feed, "--once", "--types", kind)
    printed = [json.loads(line) for line in out.splitlines()]
    assert code == 0, out
    assert len(printed) == count, out
    assert {event["type"] for event in printed} == {kind}, printed
    code, out, err = _tail(live_feed, "--once", "--key", "crm_000000000000_errada")
    assert code == 1, err
    assert out == "", out
    assert len(err.strip().splitlines()) == 1, err
    assert "401" in err, err
    assert "Traceback" not in err, err


def _tail(feed: LiveFeed, *arguments: str) -> tuple[int, str, str]:
    """`crm-core events tail` in this process, against the live server: (exit code, standard
    output, standard error)."""
    out, err = io.StringIO(), io.StringIO()
    command = ["events", "tail", "--url", feed.url, "--key", feed.key, *arguments]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(command)
    return code, out.getvalue(), err.getvalue()


@then(
    parsers.parse(
        'o banco aceita uma chave de API de escopo "{scope}" e recusa uma de escopo "{other}"'
    )
)
def database_scopes(database: DatabaseUnderTest, scope: str, other: str) -> None:
    assert isinstance(database, LiveDatabase)
    assert _key_accepted(database, scope)
    assert not _key_accepted(database, other)


@then(parsers.parse('o banco recusa uma chave de API de escopo "{scope}"'))
def database_refuses_scope(database: DatabaseUnderTest, scope: str) -> None:
    assert isinstance(database, LiveDatabase)
    assert not _key_accepted(database, scope)


def _key_accepted(database: LiveDatabase, scope: str) -> bool:
    """Whether the database takes a key row of `scope` (its CHECK constraint); rolled back."""
    row = {
        "id": uuid.uuid4(),
        "name": "cenário",
        "scope": scope,
        "prefix": "0123456789ab",
        "secret_hash": "0" * 64,
        "created_at": datetime.now(UTC),
    }
    with database.engine.connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(insert(ApiKey).values(**row))
            return True
        except IntegrityError:
            return False
        finally:
            transaction.rollback()


@given("um nats-server descartável com JetStream", target_fixture="nats")
def throwaway_nats(tmp_path: Path, request: pytest.FixtureRequest) -> NatsServer:
    """A nats-server of the scenario's own (skipped without the binary, failed when
    AURORA_REQUIRE_NATS demands one)."""
    server = NatsServer(nats_binary(), tmp_path)
    server.start()
    request.addfinalizer(server.stop)
    return server


@when("o relay publica até não haver evento novo")
def relay_publishes(app: FastAPI, nats: NatsServer, relay_runs: list[int]) -> None:
    source = app.state.settings.event_source
    relay_runs.append(relay_until_idle(app.state.database, nats, source=source))


@then(
    "o stream tem os eventos do feed, na mesma ordem, cada um no assunto do seu tipo, com o "
    "Nats-Msg-Id igual ao id do evento e o CloudEvent igual ao do feed"
)
def stream_is_the_feed(app: FastAPI, nats: NatsServer, api_credentials: dict[str, str]) -> None:
    events = feed_of(app, api_credentials)
    published = stream_messages(nats)
    assert len(published) == len(events), (len(published), len(events))
    for message, event in zip(published, events, strict=True):
        headers = message.headers or {}
        assert headers["Nats-Msg-Id"] == event["id"], (headers, event)
        assert headers["Content-Type"] == "application/cloudevents+json", headers
        assert message.subject == "crm.events." + short(event["type"]), message.subject
        assert json.loads(message.data or b"") == event, (message.data, event)


@then("a posição do relay é o último evento do feed")
def relay_position_is_last(app: FastAPI, api_credentials: dict[str, str]) -> None:
    with app.state.database.sessionmaker() as session:
        position = session.get(RelayPosition, STREAM)
    assert position is not None
    assert str(position.event_id) == feed_of(app, api_credentials)[-1]["id"]


@when("a posição do relay se perde e o relay publica de novo até não haver evento novo")
def relay_position_lost(app: FastAPI, nats: NatsServer, relay_runs: list[int]) -> None:
    with engine_of(app).begin() as connection:
        assert connection.execute(delete(RelayPosition)).rowcount == 1
    relay_publishes(app, nats, relay_runs)


@then("o relay não publicou nada de novo e o stream guarda cada evento uma vez")
def nothing_republished(app: FastAPI, nats: NatsServer, relay_runs: list[int]) -> None:
    first, again = relay_runs
    assert first > 0
    assert again == 0, again
    assert_exactly_once_in_order(app.state.database, nats)


@then(parsers.parse('nenhuma mensagem do stream guarda "{texts}"'), converters={"texts": names})
def stream_holds_nothing_of(nats: NatsServer, texts: tuple[str, ...]) -> None:
    published = [(message.data or b"").decode() for message in stream_messages(nats)]
    assert published
    for needle in texts:
        assert not any(needle in data for data in published), f"the stream still holds {needle!r}"


def _app_client_writer(app: FastAPI, credentials: dict[str, str]) -> Writer:
    return Writer(client_of(app), headers=credentials)


@then(
    'com "crm-core relay" rodando enquanto clientes gravam, o relay morto com SIGKILL e '
    "reiniciado deixa no stream cada evento exatamente uma vez, na ordem"
)
def relay_killed_mid_stream(
    app: FastAPI, nats: NatsServer, api_credentials: dict[str, str], tmp_path: Path
) -> None:
    relay = RelayProcess(app.state.settings.database_url, nats, tmp_path / "relay.log")
    try:
        relay.start()
        with _app_client_writer(app, api_credentials) as writer:
            wait_until(lambda: stream_count(nats) > 50, "the relay publishing")
            assert relay.process is not None
            relay.process.kill()  # SIGKILL: no chance to finish anything
            relay.process.wait(5)
            time.sleep(0.5)
            relay.start()
            time.sleep(1.0)
        assert writer.statuses
        assert all(200 <= status < 300 for status in writer.statuses), set(writer.statuses)
        wait_until(caught_up(app.state.database, nats), "the relay to catch up")
        assert relay.signal(signal.SIGTERM) == 0
    finally:
        relay.stop()
    assert assert_exactly_once_in_order(app.state.database, nats) > 100


@then(
    "com o nats-server parado e religado enquanto clientes gravam, a ingestão responde sempre 2xx "
    "e o stream termina com cada evento exatamente uma vez, na ordem"
)
def nats_restarted_under_load(
    app: FastAPI, nats: NatsServer, api_credentials: dict[str, str], tmp_path: Path
) -> None:
    relay = RelayProcess(app.state.settings.database_url, nats, tmp_path / "relay-2.log")
    try:
        relay.start()
        with _app_client_writer(app, api_credentials) as writer:
            before = len(writer.statuses)
            wait_until(lambda: stream_count(nats) > outbox_count(app.state.database) // 2, "relay")
            nats.stop()  # SIGTERM while the relay publishes and events are written
            down = len(writer.statuses)
            time.sleep(1.5)
            answered_while_down = len(writer.statuses) - down
            nats.start()  # same port, same store folder
            time.sleep(1.5)
        assert answered_while_down > 0, "no write was answered while NATS was down"
        assert len(writer.statuses) > before
        assert all(200 <= status < 300 for status in writer.statuses), set(writer.statuses)
        wait_until(caught_up(app.state.database, nats), "the relay to catch up")
        assert relay.signal(signal.SIGTERM) == 0
    finally:
        relay.stop()
    assert assert_exactly_once_in_order(app.state.database, nats) > 40
