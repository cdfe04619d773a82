"""The naive peer of `POST /ingest/message` (benchmarks/events_bench.py): the same body checked by
pydantic, one INSERT and one transaction per request through a psycopg pool, nothing else (no
contacts, no duplicate check, no events). Table: SCHEMA. Run: PEER_DATABASE_URL=... python
naive_peer.py PORT (one worker on a SO_REUSEPORT socket; start one a process)."""

import json
import os
import socket
import sys
import uuid
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (id uuid PRIMARY KEY, source text NOT NULL, "
    "sender_id text NOT NULL, content text NOT NULL, metadata jsonb NOT NULL, "
    "received_at timestamptz NOT NULL DEFAULT now())"
)
pool = AsyncConnectionPool(os.environ.get("PEER_DATABASE_URL", ""), max_size=16, open=False)


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    source: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    sender_id: Annotated[str, Field(min_length=1, max_length=128)]
    content: Annotated[str, Field(max_length=65_536)]
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def small(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if len(json.dumps(value).encode()) > 16_384:
            raise ValueError("at most 16384 bytes")
        return value


@asynccontextmanager
async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
    await pool.open()
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/ingest/message", status_code=202)
async def ingest(message: Message) -> dict[str, str]:
    new_id = uuid.uuid4()
    async with pool.connection() as connection:  # commits when the block ends
        await connection.execute(
            "INSERT INTO messages (id, source, sender_id, content, metadata) "
            "VALUES (%s, %s, %s, %s, %s)",
            (new_id, message.source, message.sender_id, message.content, Jsonb(message.metadata)),
        )
    return {"id": str(new_id), "status": "accepted"}


if __name__ == "__main__":  # served as `crm-core serve` serves ours: a socket per worker
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
