"""`crm-core events tail`: follow `GET /events` from a terminal, one CloudEvent per line.

It is an HTTP client of the API, as any consumer is: it asks for the events after its cursor
with a long-poll wait, prints each event as one line of JSON (so `| jq` works), and asks again
from the page's `end_cursor`. A server that is down or restarting is waited for (one line on
standard error each time); a refusal (a bad key, cursor or type) ends it with the API's own
detail. Interrupted (Ctrl-C), it prints the cursor to resume from.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

WAIT_SECONDS = 20.0
"""How long each request waits for an event (the API allows up to 30 seconds)."""

RETRY_SECONDS = 2.0


class TailError(Exception):
    """The API refused the request (4xx): its problem detail, in one line."""


@dataclass(frozen=True, slots=True)
class Feed:
    """Where the feed is: the API's base URL (e.g. http://127.0.0.1:8000), the API key (None
    when the API runs without authentication), and the event types wanted (all when empty)."""

    url: str
    key: str | None
    types: Sequence[str] = ()
    limit: int = 100

    def request(self, after: str | None, wait: float) -> urllib.request.Request:
        query: dict[str, str] = {"limit": str(self.limit), "wait": f"{wait:g}"}
        if after is not None:
            query["after"] = after
        if self.types:
            query["types"] = ",".join(self.types)
        address = f"{self.url.rstrip('/')}/events?{urllib.parse.urlencode(query)}"
        headers = {"Accept": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return urllib.request.Request(address, headers=headers)


def fetch(feed: Feed, after: str | None, wait: float) -> dict[str, Any]:
    """One page of the feed: {"data": [...], "next_cursor": ..., "end_cursor": ...}.

    Raises TailError for a refusal (4xx, with the problem's detail) and OSError (URLError
    included) when the API cannot be reached or answers 5xx."""
    try:
        with urllib.request.urlopen(feed.request(after, wait), timeout=wait + 15) as answer:
            page: dict[str, Any] = json.load(answer)
            return page
    except urllib.error.HTTPError as error:
        detail = _detail(error)
        if 400 <= error.code < 500:
            raise TailError(f"{error.code} {detail}") from None
        raise OSError(f"{error.code} {detail}") from None


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail or error.reason)


class Follower:
    """Prints every event after a cursor as it commits, one JSON object a line; `cursor` is
    always where it got to (what a restart resumes from)."""

    def __init__(
        self,
        feed: Feed,
        after: str | None,
        out: TextIO,
        err: TextIO,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.feed = feed
        self.cursor = after
        self.out = out
        self.err = err
        self.sleep = sleep

    def run(self, *, wait: float = WAIT_SECONDS, once: bool = False) -> None:
        """Follow the feed; with `once`, stop at its end. Raises TailError on a refusal."""
        unreachable = False
        while True:
            try:
                page = fetch(self.feed, self.cursor, 0 if once else wait)
            except OSError as exc:
                if not unreachable:
                    where = self.feed.url
                    print(
                        f"crm-core events tail: waiting for {where}: {_reason(exc)}", file=self.err
                    )
                    unreachable = True
                self.sleep(RETRY_SECONDS)
                continue
            if unreachable:
                print(f"crm-core events tail: {self.feed.url} answers again", file=self.err)
                unreachable = False
            for event in page.get("data", []):
                self.out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.out.flush()
            self.cursor = page.get("end_cursor") or self.cursor
            if once and page.get("next_cursor") is None:
                return


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).strip().splitlines()[0] if str(reason).strip() else type(exc).__name__


def run(feed: Feed, after: str | None, *, once: bool) -> int:
    """The command: 0 when it ends (interrupted, or at the end with `once`), 1 on a refusal."""
    follower = Follower(feed, after, sys.stdout, sys.stderr)
    try:
        follower.run(once=once)
    except TailError as exc:
        print(f"crm-core events tail: the API refused: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    if follower.cursor is not None:
        print(f"crm-core events tail: resume with --after {follower.cursor}", file=sys.stderr)
    return 0
