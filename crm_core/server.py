"""`crm-core serve`: uvicorn workers that each own a SO_REUSEPORT socket on the same port.

`uvicorn --workers N` shares one listening socket between its workers, and whichever worker
wakes first accepts: long-lived keep-alive connections opened together can all land on one
worker, leaving the others idle. Here every worker binds its own socket with SO_REUSEPORT, and
the kernel spreads new connections across them (Linux hashes each connection to a socket).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn

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


def _worker(host: str, port: int, log_level: str) -> None:
    config = uvicorn.Config(
        "crm_core.main:app", log_level=log_level, access_log=False, lifespan="on"
    )
    config.load()
    # The modules, models and routes loaded by now live as long as the process: kept out of
    # the cycle collector, whose full passes over them paused every request in flight.
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run(sockets=[_socket(host, port)])


def serve(host: str, port: int, workers: int, log_level: str = "warning") -> int:
    """Run `workers` processes on host:port until SIGINT or SIGTERM; the exit code."""
    if not hasattr(socket, "SO_REUSEPORT"):
        print("crm-core serve: SO_REUSEPORT is not available here; use uvicorn", file=sys.stderr)
        return 2
    _socket(host, port).close()  # fail now, in one line, if the port is taken
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, log_level), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    # A worker stopped by our SIGTERM before uvicorn took over its signals ends with -SIGTERM.
    codes = [process.exitcode or 0 for process in processes]
    return max((0 if code == -signal.SIGTERM else abs(code)) for code in codes)
