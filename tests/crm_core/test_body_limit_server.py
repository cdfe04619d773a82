"""A body over the limit, sent to a real server by a client that writes it all before reading.

Python's urllib (and many simple clients) send the whole request, then read the answer. A
server that answers early and closes with the body unread makes the kernel reset the connection,
and such a client sees a broken pipe instead of the 413. These tests send through uvicorn's own
HTTP parser (a child process), and check the client reads the problem and nothing is stored.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from crm_core.config import Settings
from tests.bdd.support.live_server import LiveServer, chunked, live_server, message, raw_exchange

LIMIT = Settings.model_fields["max_body_bytes"].default
"""CRM_MAX_BODY_BYTES left at its default (1 MiB)."""
TEN_MB = 10_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("body-limit")) as running:
        yield running


def contacts(server: LiveServer) -> int:
    """How many contacts the server has stored (each message here is from a new sender)."""
    answer = server.get("/contacts?limit=100")
    assert answer.status_code == 200, answer.text
    return len(answer.json()["data"])


def test_urllib_sending_10_mb_reads_the_413_problem(server: LiveServer) -> None:
    before = contacts(server)
    request = urllib.request.Request(
        server.url + "/ingest/message",
        data=message(TEN_MB),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert refused.value.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(refused.value.read())
    assert problem["status"] == 413
    assert str(LIMIT) in problem["detail"]
    assert contacts(server) == before


def test_a_whole_declared_body_sent_at_once_reads_the_413(server: LiveServer) -> None:
    before = contacts(server)
    body = message(TEN_MB)
    status, headers, answer = raw_exchange(
        server,
        [
            "POST /ingest/message HTTP/1.1",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ],
        body,
    )
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(answer)["status"] == 413
    assert contacts(server) == before


def test_a_whole_chunked_body_sent_at_once_reads_the_413(server: LiveServer) -> None:
    before = contacts(server)
    status, headers, answer = raw_exchange(
        server,
        [
            "POST /ingest/message HTTP/1.1",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
        chunked(message(TEN_MB)),
    )
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(answer)["status"] == 413
    assert contacts(server) == before


def test_a_client_waiting_for_100_continue_reads_the_413_without_sending(
    server: LiveServer,
) -> None:
    head = [
        "POST /ingest/message HTTP/1.1",
        f"Host: {server.host}:{server.port}",
        f"Authorization: Bearer {server.key}",
        "Content-Type: application/json",
        f"Content-Length: {TEN_MB}",
        "Expect: 100-continue",
    ]
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        received = b""
        while chunk := sock.recv(65536):  # the server closes after the refusal
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", "no 100 Continue first"
    assert b"content-type: application/problem+json" in rest.lower()
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["status"] == 413


def test_a_refused_content_coding_sent_whole_reads_the_415(server: LiveServer) -> None:
    before = contacts(server)
    body = message(TEN_MB)
    status, headers, answer = raw_exchange(
        server,
        [
            "POST /ingest/message HTTP/1.1",
            "Content-Type: application/json",
            "Content-Encoding: gzip",
            f"Content-Length: {len(body)}",
        ],
        body,
    )
    assert status == 415
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(answer)["status"] == 415
    assert contacts(server) == before


def test_a_body_at_the_limit_is_stored(server: LiveServer) -> None:
    before = contacts(server)
    body = message(LIMIT)
    request = urllib.request.Request(
        server.url + "/ingest/message",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 202
    assert contacts(server) == before + 1
