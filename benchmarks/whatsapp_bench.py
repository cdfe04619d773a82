"""Measure the WhatsApp webhook against PostgreSQL, on this machine, over loopback. Not part of
the tests.

Usage: python benchmarks/whatsapp_bench.py [--admin-url URL] [--duration 5] [--workers 2]
       [--connections 16] [--json]

Needs `wrk` and a PostgreSQL server (the admin URL defaults to AURORA_TEST_POSTGRES_URL). It
runs in a throwaway database (created, migrated, dropped afterwards), against `crm-core serve`
as benchmarks/ingest_bench.py does, each measurement bounded by `--duration` seconds:

  (a) POST /ingest/message, one message a request (API key), the door of OS 005
  (b) POST /webhooks/whatsapp, a signed delivery of 1 text message
  (c) POST /webhooks/whatsapp, a signed delivery of 50 text messages (one entry, one change)

Each request carries new wamids, so every message is a new row. wrk's Lua has no HMAC: the
signed deliveries are made here beforehand (a pool per run, each body with its signature) and
wrk's threads take them in turn; a pool is large enough for the expected rate, and the number
of rows stored is printed, so a pool that ran out (re-deliveries, stored once) would show.
Printed: requests/s, messages/s, p50 and p99 of each.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import psycopg
from ingest_bench import (
    SINGLE_LUA,
    HttpFigures,
    create_key,
    default_admin_url,
    measure_http,
    throwaway_database,
)

SECRET = "bench-app-secret"
TOKEN = "bench-verify-token"
WRK_THREADS = 2  # as ingest_bench.wrk runs it

SIGNED_LUA = """
local threads = {}
setup = function(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
init = function(args)
  bodies, signatures, position = {}, {}, 0
  local n = 0
  local path = os.getenv("BENCH_DIR") .. "/" .. os.getenv("BENCH_RUN") .. ".txt"
  for line in io.lines(path) do
    n = n + 1
    if n % THREADS == tid - 1 then
      local tab = line:find("\\t")
      table.insert(signatures, line:sub(1, tab - 1))
      table.insert(bodies, line:sub(tab + 1))
    end
  end
end
request = function()
  position = position % #bodies + 1
  return wrk.format("POST", "/webhooks/whatsapp",
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = signatures[position]},
    bodies[position])
end
""".replace("THREADS", str(WRK_THREADS))


def delivery(run: str, index: int, size: int) -> bytes:
    """A delivery of `size` text messages from one of 10,000 senders, with new wamids."""
    sender = f"55219{index % 10_000:08d}"
    messages = [
        {
            "from": sender,
            "id": f"wamid.BENCH.{run}.{index}.{position}",
            "timestamp": "1764546000",
            "type": "text",
            "text": {"body": "Olá, quero simular um consórcio de uma moto"},
        }
        for position in range(size)
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "552130000001", "phone_number_id": "900000000000001"},
        "contacts": [{"profile": {"name": "Cliente"}, "wa_id": sender}],
        "messages": messages,
    }
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "800000000000001", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def write_pool(directory: Path, run: str, size: int, count: int) -> None:
    lines = []
    for index in range(count):
        body = delivery(run, index, size)
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        lines.append(b"sha256=" + signature.encode() + b"\t" + body)
    (directory / f"{run}.txt").write_bytes(b"\n".join(lines) + b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default=default_admin_url())
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("whatsapp_bench: needs wrk", file=sys.stderr)
        return 2

    server_env = {"CRM_WHATSAPP_VERIFY_TOKEN": TOKEN, "CRM_WHATSAPP_APP_SECRET": SECRET}
    figures: dict[str, object] = {
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
    }
    pools: dict[str, int] = {}
    with throwaway_database(args.admin_url) as url:
        key = create_key(url, "ingest")
        with tempfile.TemporaryDirectory(prefix="whatsapp-bench-") as scratch:
            directory = Path(scratch)
            single = directory / "single.lua"
            single.write_text(SINGLE_LUA)
            signed = directory / "signed.lua"
            signed.write_text(SIGNED_LUA)

            def run(script: Path, size: int | None, pool: int) -> HttpFigures:
                wrk_env = {"BENCH_KEY": key, "BENCH_RUN": secrets.token_hex(4)}
                wrk_env["BENCH_DIR"] = scratch
                if size is not None:  # the warm-up's pool, then the measured one
                    write_pool(directory, wrk_env["BENCH_RUN"] + "w", size, max(pool // 4, 64))
                    write_pool(directory, wrk_env["BENCH_RUN"], size, pool)
                return measure_http(
                    url,
                    args.workers,
                    script,
                    args.connections,
                    args.duration,
                    wrk_env,
                    server_env,
                    args.warmup,
                )

            ingest = run(single, None, 0)
            pools["b_webhook_1_message"] = int(ingest.requests_per_s * args.duration * 2) + 2000
            one = run(signed, 1, pools["b_webhook_1_message"])
            # a delivery of 50 is at most as many requests/s as one of 1, with room to spare
            pools["c_webhook_50_messages"] = int(one.requests_per_s * args.duration * 1.5) + 500
            fifty = run(signed, 50, pools["c_webhook_50_messages"])
        with psycopg.connect(url) as connection:
            stored = connection.execute("SELECT count(*) FROM crm_messages").fetchone()[0]  # type: ignore[index]

    rows = {
        "a_ingest_message": (ingest, 1),
        "b_webhook_1_message": (one, 1),
        "c_webhook_50_messages": (fifty, 50),
    }
    for label, (measured, size) in rows.items():
        sent = round(measured.requests_per_s * args.duration)
        figures[label] = {
            **asdict(measured),
            "messages_per_s": round(measured.requests_per_s * size, 1),
            "requests_sent": sent,
            "deliveries_in_pool": pools.get(label),
            "pool_ran_out": label in pools and sent > pools[label],
        }
    figures["rows_stored_incl_warmups"] = stored
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"crm-core serve --workers {args.workers}, {args.connections} connections, "
        f"{args.duration:.0f} s per measurement (after {args.warmup:.0f} s of warm-up)"
    )
    for label, (measured, size) in rows.items():
        print(
            f"{label:<22} {measured.requests_per_s:>8.0f} req/s  "
            f"{measured.requests_per_s * size:>8.0f} messages/s  p50 {measured.p50_ms:.1f} ms  "
            f"p99 {measured.p99_ms:.1f} ms  errors {measured.errors}"
            + (f"  (pool {pools[label]} deliveries)" if label in pools else "")
        )
        if label in pools and measured.requests_per_s * args.duration > pools[label]:
            print(f"  {label}: the pool ran out; later requests were re-deliveries")
    print(f"crm_messages rows stored (warm-ups included): {stored}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
