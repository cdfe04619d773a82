"""`crm-core`: administration commands (API keys, the server, the event feed). Parses
arguments and reports; no logic."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from crm_core import tail
from crm_core.config import get_settings
from crm_core.database import Database, create_db_engine, normalize_database_url
from crm_core.exceptions import CrmError
from crm_core.models.api_key import NAME_MAX_LENGTH, SCOPES
from crm_core.server import LOG_LEVELS, serve
from crm_core.services import api_keys, outbox, relay


class _Parser(argparse.ArgumentParser):
    """An argument parser whose every complaint is one line on standard error, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _bounded_int(name: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type=` reading a whole number from `low` to `high` (no bound if None)."""
    wanted = f"a whole number from {low} to {high}" if high is not None else f"at least {low}"

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {name} {text!r}: {wanted}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"invalid {name} {text!r}: {wanted}")
        return value

    return read


def _key_name(text: str) -> str:
    if len(text) > NAME_MAX_LENGTH:
        raise argparse.ArgumentTypeError(f"a key name has at most {NAME_MAX_LENGTH} characters")
    return text


def _key_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key id (a UUID, as `keys list` shows)"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="crm-core", description="Administer the Aurora CRM core (database: DATABASE_URL)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--scope", choices=SCOPES, required=True)
    create.add_argument("--name", type=_key_name, default="", help="who or what uses the key")
    actions.add_parser("list", help="list the keys (never the keys themselves)")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="ID", type=_key_id, help="the id `keys list` shows")
    serve = commands.add_parser(
        "serve", help="run the API: N uvicorn workers, each with its own SO_REUSEPORT socket"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=_bounded_int("port", 1, 65535),
        default=8000,
        help="TCP port, 1-65535 (default: %(default)s)",
    )
    serve.add_argument(
        "--workers",
        type=_bounded_int("number of workers", 1),
        default=None,
        help="worker processes, at least 1 (default: one per CPU on PostgreSQL, 1 on SQLite, "
        "whose one writer at a time gains nothing from more)",
    )
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default="warning",
        help="uvicorn's log level (default: %(default)s)",
    )
    events = commands.add_parser("events", help="follow or prune the event feed")
    event_actions = events.add_subparsers(dest="action", required=True)
    tailing = event_actions.add_parser(
        "tail", help="print the events of GET /events as they commit, one JSON line each"
    )
    tailing.add_argument(
        "--url",
        default=os.environ.get("CRM_API_URL", "http://127.0.0.1:8000"),
        help="the API's base URL (default: $CRM_API_URL or %(default)s)",
    )
    tailing.add_argument(
        "--key",
        default=os.environ.get("CRM_API_KEY"),
        help="an API key of scope read or readwrite (default: $CRM_API_KEY)",
    )
    tailing.add_argument(
        "--types",
        type=_event_types,
        default=(),
        help="only these event types, comma-separated (e.g. br.aurora.crm.message.received)",
    )
    tailing.add_argument(
        "--after", default=None, help="a cursor to resume from (default: the start)"
    )
    tailing.add_argument(
        "--once", action="store_true", help="stop at the end of the feed instead of waiting"
    )
    pruning = event_actions.add_parser(
        "prune", help="delete old events (never one the relay has not published)"
    )
    pruning.add_argument(
        "--older-than-days",
        type=_positive_days,
        default=None,
        help="age in days (default: CRM_EVENTS_RETENTION_DAYS, 30)",
    )
    commands.add_parser(
        "relay",
        help="publish the event outbox to NATS JetStream (CRM_NATS_URL) until SIGTERM/SIGINT",
    )
    return parser


def _event_types(text: str) -> tuple[str, ...]:
    wanted = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in wanted if name not in outbox.EVENT_TYPES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown event type {unknown[0]!r}; the types are: {', '.join(outbox.EVENT_TYPES)}"
        )
    return wanted


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days > 0 or days == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid age {text!r}: a number of days above 0")
    return days


def _default_workers() -> int:
    """One worker per CPU, but one on SQLite: it runs one write transaction at a time, and
    workers waiting for its lock only lengthen the tail of the answers."""
    try:
        url = normalize_database_url(get_settings().database_url)
    except (CrmError, ValidationError):
        return 1  # the worker reports the configuration error itself
    return 1 if url.get_backend_name() == "sqlite" else os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "serve":
        workers = arguments.workers if arguments.workers is not None else _default_workers()
        try:
            return serve(arguments.host, arguments.port, workers, arguments.log_level)
        except OSError as exc:
            print(
                f"crm-core serve: cannot listen on {arguments.host}:{arguments.port}: {exc}",
                file=sys.stderr,
            )
            return 1
    if arguments.command == "events" and arguments.action == "tail":
        feed = tail.Feed(arguments.url, arguments.key, arguments.types)
        return tail.run(feed, arguments.after, once=arguments.once)
    if arguments.command == "relay":
        return relay.command()
    try:
        settings = get_settings()
        database = Database(create_db_engine(settings.database_url))
    except (CrmError, ValidationError) as exc:
        print(f"crm-core: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        with database.sessionmaker() as session:
            if arguments.command == "events":
                days = arguments.older_than_days or settings.events_retention_days
                stream = settings.nats_stream if settings.nats_url is not None else None
                pruned = outbox.prune(session, timedelta(days=days), relay_stream=stream)
                kept = (
                    f"; kept {pruned.kept_unpublished} the relay has not published yet"
                    if pruned.kept_unpublished
                    else ""
                )
                print(f"pruned {pruned.deleted} event(s) older than {days:g} day(s){kept}")
            elif arguments.action == "create":
                key, token = api_keys.create_key(session, arguments.scope, arguments.name)
                print(f"id:    {key.id}\nscope: {key.scope}\nkey:   {token}")
                print("Keep the key now: it is not stored and cannot be shown again.")
            elif arguments.action == "list":
                for key in api_keys.list_keys(session):
                    state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                    print(f"{key.id}  {key.scope:<9}  crm_{key.prefix}_…  {state:<18}  {key.name}")
            else:
                key = api_keys.revoke_key(session, arguments.key_id)
                print(f"revoked {key.id} ({key.scope}, {key.name or 'no name'})")
    except CrmError as exc:
        print(f"crm-core: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"crm-core: database error: {reason} (did you run `alembic upgrade head`?)",
            file=sys.stderr,
        )
        return 1
    finally:
        database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
