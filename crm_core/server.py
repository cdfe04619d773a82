"""`crm-core serve`: uvicorn workers that each own a SO_REUSEPORT socket on the same port.

`uvicorn --workers N` shares one listening socket between its workers, and whichever worker
wakes first accepts: long-lived keep-alive connections opened together can all land on one
worker, leaving the others idle. Here every worker binds its own socket with SO_REUSEPORT, and
the kernel spreads new connections across them (Linux hashes each connection to a socket).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError

from crm_core.config import get_settings
from crm_core.database import Database, create_db_engine, normalize_database_url
from crm_core.exceptions import CrmError, DatabaseUnavailableError
from crm_core.log import configure_logging

logger = logging.getLogger("crm_core.server")

DATABASE_CHECK_SECONDS = 3
"""How long `serve` waits, at start, for the database before warning that it does not answer."""

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""uvicorn's log levels, most severe first."""


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _shown_database_url(raw: str) -> str:
    """The database URL as a log line may show it: normalised, the password hidden."""
    return normalize_database_url(raw).render_as_string(hide_password=True)


def _worker(host: str, port: int, log_level: str, number: int, workers: int) -> None:
    config = uvicorn.Config(
        "crm_core.main:app", log_level=log_level, access_log=False, lifespan="on"
    )
    config.load()  # builds the app, which configures crm_core's logging from the settings
    # The modules, models and routes loaded by now live as long as the process: kept out of
    # the cycle collector, whose full passes over them paused every request in flight.
    gc.collect()
    gc.freeze()
    sock = _socket(host, port)
    logger.info(
        "worker %d/%d listening on http://%s:%d",
        number,
        workers,
        f"[{host}]" if ":" in host else host,
        port,
        extra={
            "host": host,
            "port": port,
            "worker": number,
            "workers": workers,
            "pid": os.getpid(),
            "database": _shown_database_url(get_settings().database_url),
        },
    )
    uvicorn.Server(config).run(sockets=[sock])


def _check_database() -> None:
    """Warn, in the serving process's log, when the database does not answer within a few
    seconds. The workers start anyway: /readyz tells a load balancer when the database is up."""
    try:
        settings = get_settings()
        configure_logging(settings.log_level)
        database = Database(
            create_db_engine(settings.database_url, connect_timeout=DATABASE_CHECK_SECONDS)
        )
    except (CrmError, ValidationError):
        return  # each worker reports the configuration error itself, in one line
    try:
        database.ping()
    except DatabaseUnavailableError as exc:
        logger.warning(
            "the database does not answer (%s); serving anyway, /readyz answers 503 until it does",
            exc,
            extra={"database": _shown_database_url(settings.database_url)},
        )
    finally:
        database.dispose()


def serve(host: str, port: int, workers: int, log_level: str = "warning") -> int:
    """Run `workers` processes on host:port until SIGINT or SIGTERM; the exit code."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("crm-core serve: SO_REUSEPORT is not available here; use uvicorn", file=sys.stderr)
        return 2
    _socket(host, port).close()  # fail now, in one line, if the port is taken
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, log_level, number, workers), daemon=False)
        for number in range(1, workers + 1)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _check_database()
    for process in processes:
        process.join()
    # A worker stopped by our SIGTERM before uvicorn took over its signals ends with -SIGTERM.
    codes = [process.exitcode or 0 for process in processes]
    return max((0 if code == -signal.SIGTERM else abs(code)) for code in codes)
