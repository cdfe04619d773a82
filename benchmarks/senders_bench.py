"""canonical_sender_id on uncached ids: libphonenumber against the hand-written rules it replaced.

The hand-written E.164 reading (a regular expression, then the Brazilian ninth digit) is kept
below, frozen, as the same-run baseline. Each side canonicalises the same N distinct WhatsApp
ids as WhatsApp sends them (digits, country code first: 13-digit and 12-digit Brazilian mobiles,
landlines, other countries), bypassing the cache, best of five runs; the cached lookup (a hit,
the hot path) is timed too. National forms and JIDs, which only the new code reads, are timed
on their own.

    python benchmarks/senders_bench.py [--n 20000]
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm_core.services import senders  # noqa: E402

# The hand-written rules as they were before libphonenumber (crm_core/services/senders.py).
_PUNCTUATION = re.compile(r"[\s().+-]")
_DIGITS = re.compile(r"[1-9][0-9]{7,14}")


def hand_written(raw: str) -> str:
    digits = _PUNCTUATION.sub("", raw)
    if not _DIGITS.fullmatch(digits):
        raise ValueError(raw)
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return f"{digits[:4]}9{digits[4:]}"
    return digits


def whatsapp_ids(n: int) -> list[str]:
    """N distinct ids in four forms, as WhatsApp reports them."""
    forms = ("55119{:08d}", "55218{:07d}", "55113{:07d}", "1415{:07d}")
    return [forms[i % 4].format(i // 4 + 1_000_000) for i in range(n)]


def national_forms(n: int) -> list[str]:
    """N distinct ids only the new code reads: national forms and JIDs."""
    forms = ("(21) 9{:04d}-{:04d}", "55219{:04d}{:04d}:3@s.whatsapp.net", "5511{:04d}{:04d}@c.us")
    return [forms[i % 3].format(8000 + i // 10_000, i % 10_000) for i in range(n)]


def best_of(runs: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def per_call(inputs: Sequence[str], canonical: Callable[[str], str]) -> float:
    """Microseconds per call, best of five passes over the inputs."""
    return best_of(5, lambda: [canonical(raw) for raw in inputs]) / len(inputs) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="distinct ids per form set")
    args = parser.parse_args()
    ids = whatsapp_ids(args.n)
    uncached_new = senders._canonical_whatsapp_id.__wrapped__
    assert [hand_written(raw) for raw in ids] == [uncached_new(raw, "BR") for raw in ids]

    old = per_call(ids, hand_written)
    new = per_call(ids, lambda raw: uncached_new(raw, "BR"))
    cached_old = functools.lru_cache(maxsize=65_536)(hand_written)
    hits = ids[: min(len(ids), 10_000)]
    for raw in hits:  # warm both caches
        cached_old(raw)
        senders.canonical_sender_id("whatsapp", raw)
    hit_old = per_call(hits, cached_old)
    hit_new = per_call(hits, lambda raw: senders.canonical_sender_id("whatsapp", raw))
    national = per_call(national_forms(args.n), lambda raw: uncached_new(raw, "BR"))

    print(f"{args.n:,} distinct WhatsApp ids, microseconds per call (best of 5)")
    print(f"uncached, hand-written rules:   {old:8.2f}")
    print(f"uncached, libphonenumber:       {new:8.2f}   ratio {new / old:.1f}x")
    print(f"uncached, national forms/JIDs:  {national:8.2f}   (libphonenumber only)")
    print(f"cached hit, hand-written:       {hit_old:8.2f}")
    print(f"cached hit, libphonenumber:     {hit_new:8.2f}   ratio {hit_new / hit_old:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
