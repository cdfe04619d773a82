"""`gates report`: the auditors' static site, rendered from the vault and the ledger.

The site is plain HTML and one CSS file, with relative links only, so the folder opens from disk,
can be zipped and mailed, and needs neither a server nor JavaScript. What a spec says is
rendered from its markdown with raw HTML turned off (a `<script>` in a spec shows as text) and
links restricted to harmless schemes. The same vault gives the same bytes: nothing depends on
the clock, the machine or the folder the repository sits in.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import html
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from cmarkgfm import markdown_to_html_with_extensions
from cmarkgfm.cmark import Options
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

from gates.certify.config import load_config
from gates.exceptions import OutputWriteError
from gates.orders.documents import parse_work_order
from gates.orders.model import WorkOrder
from gates.orders.vault import discover, load_documents
from gates.record import ledger
from gates.record.drift import Drift, DriftFinder
from gates.record.integrity import Staleness, Verification, stale_certifications, verify
from gates.record.records import RecordSummary, all_records
from gates.signing import key_id, public_key_from_b64, verify_signature

STYLESHEET = "report.css"
MANIFEST = ".gates-report"  # the files the last run wrote, so a re-run removes those now gone
_TEMPLATES = "templates/report"
_SAFE_SCHEMES = ("http:", "https:", "mailto:")
# From this many OSes, their pages are rendered by MAX_WORKERS processes at most.
PARALLEL_FROM = 500
MAX_WORKERS = 8
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


class State(StrEnum):
    """The state of an OS on the site: its last verdict, or why that verdict no longer holds."""

    CONCLUDED = "CONCLUÍDA"
    FAILED = "REPROVADA"
    REGRESSED = "REGREDIDA"
    STALE = "DESATUALIZADA"
    UNCERTIFIED = "NÃO CERTIFICADA"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]

    @property
    def css(self) -> str:
        return _CSS[self]


_SYMBOLS = {
    State.CONCLUDED: "✓",
    State.FAILED: "✗",
    State.REGRESSED: "↓",
    State.STALE: "⚠",
    State.UNCERTIFIED: "○",
}
_STATE_VALUES = frozenset(state.value for state in State)
_CSS = {
    State.CONCLUDED: "ok",
    State.FAILED: "bad",
    State.REGRESSED: "bad",
    State.STALE: "warn",
    State.UNCERTIFIED: "none",
}


@dataclass(frozen=True, slots=True)
class OrderView:
    """One OS as the site shows it."""

    order: WorkOrder
    state: State
    records: tuple[RecordSummary, ...]
    stale: Staleness | None
    outside: tuple[str, ...] = ()
    """Records in the folder that no ledger entry vouches for: shown as such, never a verdict."""
    drift: Drift | None = None
    """What HEAD changed in the OS's files since its last certified commit."""

    @property
    def latest(self) -> RecordSummary | None:
        return self.records[-1] if self.records else None

    @property
    def page(self) -> str:
        return f"os/{self.order.id}.html"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One ledger line with what the site says of it."""

    number: int
    entry: dict[str, Any] | None
    chained: bool
    signature: str  # "válida", "inválida", "outra chave", "não assinada"
    time: datetime | None


@dataclass(frozen=True, slots=True)
class Site:
    """Everything the pages are rendered from."""

    root: Path
    orders: tuple[OrderView, ...]
    verification: Verification
    ledger_rows: tuple[LedgerRow, ...]
    checked_key: str | None
    spec_errors: tuple[str, ...] = ()

    @property
    def zones(self) -> dict[str, str]:
        """Each OS's time zone by id (ledger entries are shown in their OS's time zone)."""
        return {view.order.id: view.order.timezone for view in self.orders}

    @property
    def short_ids(self) -> dict[str, str]:
        return {view.order.id: view.order.short_id for view in self.orders}

    def count(self, state: State) -> int:
        return sum(1 for view in self.orders if view.state is state)


def write_report(
    root: Path, out: Path, *, public_key: Ed25519PublicKey | None = None
) -> tuple[Site, list[str]]:
    """Render the site of the vault under `root` into `out`; returns the site and its files.

    The ledger is checked as `gates verify` does. A large vault is shared among processes:
    they parse the specs, then read each OS's records and write its pages while this process
    verifies the ledger and the files it names. The bytes of each page do not depend on which
    process wrote it.
    """
    paths = discover(root)
    workers = min(_cpus(), MAX_WORKERS) if len(paths) >= PARALLEL_FROM else 1
    try:
        out.mkdir(parents=True, exist_ok=True)
        with _no_cycle_collection(), _executor(workers) as pool:
            site, written = _build_and_write(root, out, paths, pool, workers, public_key)
        written.sort()
        _remove_previous(out, set(written))
        _write(out / MANIFEST, "".join(f"{name}\n" for name in written).encode("utf-8"))
    except OSError as exc:
        raise OutputWriteError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    return site, written


def _build_and_write(
    root: Path,
    out: Path,
    paths: list[Path],
    pool: Executor | None,
    workers: int,
    public_key: Ed25519PublicKey | None,
) -> tuple[Site, list[str]]:
    if pool is None:
        vault = load_documents(paths, root=root)
    else:
        chunk = max(1, len(paths) // (workers * 8))
        parse = functools.partial(parse_work_order, root=root)
        vault = load_documents(
            paths, root=root, parse_all=lambda specs: pool.map(parse, specs, chunksize=chunk)
        )
    config = load_config(root)
    stale = stale_certifications(root, config, vault)
    rows = tuple(
        _ledger_rows(ledger.read_lines(ledger.ledger_path(root, config.vault)), public_key)
    )
    orders = sorted(vault.documents.values(), key=lambda o: (o.number, o.id))
    by_id = {s.os_id: s for s in stale}
    last_commit = {
        str(entry.get("os")): str(entry.get("commit"))
        for entry in ledger.entries(ledger.ledger_path(root, config.vault))
    }
    finder = DriftFinder(root, config)
    drifts = {order.id: finder.drift(order, last_commit.get(order.id)) for order in orders}
    size = max(1, len(orders) // (workers * 8))
    jobs = [
        _Share(
            root,
            out,
            rows[-1].time if rows else None,
            tuple(
                (order, by_id.get(order.id), drifts[order.id])
                for order in orders[start : start + size]
            ),
        )
        for start in range(0, len(orders), size)
    ]
    # Executor.map submits every share now: the pages are written while the ledger is checked
    shares = pool.map(_write_share, jobs) if pool is not None else None
    verification = verify(root, public_key=public_key, vault=vault, stale=stale)
    views: list[OrderView] = []
    written: list[str] = []
    results = shares if shares is not None else map(_write_share, jobs)
    for share, done in zip(jobs, results, strict=True):
        for (order, order_stale, drift), (records, names) in zip(share.orders, done, strict=True):
            state = _state(records, order_stale)
            views.append(OrderView(order, state, records, order_stale, drift=drift))
            written.extend(names)
    site = Site(
        root=root,
        orders=tuple(views),
        verification=verification,
        ledger_rows=rows,
        checked_key=key_id(public_key) if public_key is not None else None,
        spec_errors=tuple(str(error) for error in vault.errors),
    )
    written.extend(_write_all(out, _site_pages(site)))
    return site, written


@dataclass(frozen=True, slots=True)
class _Share:
    """A share of the OSes whose pages one process writes, with what their pages need."""

    root: Path
    out: Path
    last_entry: datetime | None  # shown in every page's footer
    orders: tuple[tuple[WorkOrder, Staleness | None, Drift | None], ...]


def _write_share(share: _Share) -> list[tuple[tuple[RecordSummary, ...], list[str]]]:
    """Read each OS's records and write its pages; its records (without their JSON documents,
    so memory stays flat however large the vault) and the files written, for each OS."""
    done = []
    for order, stale, drift in share.orders:
        found = all_records(share.root, PurePosixPath(order.path.as_posix()), order.id)
        records = [record for record in found if record.vouched]
        outside = tuple(record.twin.as_posix() for record in found if not record.vouched)
        view = OrderView(order, _state(records, stale), tuple(records), stale, outside, drift)
        names = _write_all(share.out, _order_pages(share.root, share.last_entry, view))
        done.append((tuple(replace(record, document={}) for record in records), names))
    return done


def _site_pages(site: Site) -> Iterator[tuple[str, bytes]]:
    last = site.ledger_rows[-1].time if site.ledger_rows else None
    yield "index.html", _render("index.html.j2", base="", site=site, last_entry=last)
    yield "ledger.html", _render("ledger.html.j2", base="", site=site, last_entry=last)
    yield STYLESHEET, _stylesheet()


def _order_pages(
    root: Path, last_entry: datetime | None, view: OrderView
) -> Iterator[tuple[str, bytes]]:
    """An OS's page, a page for each earlier closure, and copies of its record files."""
    folder = f"os/{view.order.id}"
    yield (
        view.page,
        _render(
            "os.html.j2",
            base="../",
            last_entry=last_entry,
            view=view,
            document=view.latest.document if view.latest else None,
            spec_html=render_markdown(_spec_text(root, view.order)),
        ),
    )
    for record in view.records[:-1]:  # the OS page itself shows the latest one
        yield (
            f"{folder}/{record.commit[:12]}.html",
            _render(
                "record.html.j2",
                base="../../",
                last_entry=last_entry,
                view=view,
                record=record,
                document=record.document,
            ),
        )
    for record in view.records:  # the records themselves, to check against the ledger
        for source in (record.markdown, record.twin):
            path = root / source
            if path.is_file():
                yield f"{folder}/{record.commit[:12]}{_suffix(source)}", path.read_bytes()


def _executor(workers: int) -> contextlib.AbstractContextManager[Executor | None]:
    if workers < 2:
        return contextlib.nullcontext()
    return ProcessPoolExecutor(workers, initializer=gc.disable)


def _cpus() -> int:
    """The CPUs this process may use (a container's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _write_all(out: Path, pages: Iterable[tuple[str, bytes]]) -> list[str]:
    written = []
    folders: set[Path] = set()  # made once each: a page's folder is shared by its records
    for name, data in pages:
        path = out / name
        if path.parent not in folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            folders.add(path.parent)
        path.write_bytes(data)
        written.append(name)
    return written


def _suffix(path: PurePosixPath) -> str:
    return ".json" if path.name.endswith(".json") else ".md"


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cycle collector: rendering makes no reference cycles, only a growing heap
    for the collector to rescan, which made the cost grow faster than the vault."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _remove_previous(out: Path, keep: set[str]) -> None:
    """Delete what the previous run wrote and this one does not (never any other file)."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    for name in manifest.read_text(encoding="utf-8").splitlines():
        target = out / name
        inside = os.path.abspath(target).startswith(os.path.abspath(out) + os.sep)
        if name and name not in keep and inside and target.is_file():
            target.unlink()


def _state(records: Sequence[RecordSummary], stale: Staleness | None) -> State:
    if not records:
        return State.UNCERTIFIED
    decision = records[-1].decision
    if decision == State.CONCLUDED:
        return State.STALE if stale is not None else State.CONCLUDED
    if decision == State.REGRESSED:
        return State.REGRESSED
    return State.FAILED


def _spec_text(root: Path, order: WorkOrder) -> str:
    """The spec's markdown body: its text without the front matter."""
    text = (root / order.path).read_text(encoding="utf-8").removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[0].strip() == "---":
        for index in range(1, len(lines)):
            if lines[index].strip() == "---":
                return "\n".join(lines[index + 1 :])
    return "\n".join(lines)


def _ledger_rows(
    lines: Iterable[ledger.Line], expected: Ed25519PublicKey | None
) -> Iterable[LedgerRow]:
    previous = ledger.GENESIS
    for seq, line in enumerate(lines, start=1):
        entry = line.entry
        if entry is None:
            yield LedgerRow(line.number, None, False, "ilegível", None)
            continue
        chained = (
            entry.get("seq") == seq
            and entry.get("prev") == previous
            and entry.get("hash") == ledger.entry_hash(entry)
            and line.text == ledger.canonical(entry)
        )
        previous = str(entry.get("hash"))
        yield LedgerRow(
            line.number, entry, chained, _signature_state(entry, expected), _entry_time(entry)
        )


def _signature_state(entry: Mapping[str, Any], expected: Ed25519PublicKey | None) -> str:
    signature, embedded = entry.get("signature"), entry.get("public_key")
    if signature is None and embedded is None:
        return "não assinada"
    public = public_key_from_b64(str(embedded)) if embedded else None
    if public is None or not isinstance(signature, str):
        return "inválida"
    if entry.get("key_id") != key_id(public) or not verify_signature(
        public, str(entry.get("hash", "")).encode("ascii"), signature
    ):
        return "inválida"
    if expected is not None and key_id(expected) != key_id(public):
        return "outra chave"
    return "válida"


def _entry_time(entry: Mapping[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(entry.get("time")))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- markdown -------------------------------------------------------------------------------


def _validate_link(url: str) -> bool:
    """Only web and mail links, and links inside the page or the site; never `javascript:`."""
    cleaned = "".join(url.split()).lower()
    return not _SCHEME.match(cleaned) or cleaned.startswith(_SAFE_SCHEMES)


def _shifted_heading(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """A spec's `#` becomes `<h3>`: the page's own `<h1>` and `<h2>` stay above it."""
    token = tokens[idx]
    token.tag = f"h{min(6, int(token.tag[1]) + 2)}"
    return self.renderToken(tokens, idx, options, env)


def _markdown() -> MarkdownIt:
    # with html off these rules only turn raw HTML into text, which plain text does too
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.disable(["image", "html_block", "html_inline"])
    md.validateLink = _validate_link  # type: ignore[method-assign]
    md.add_render_rule("heading_open", _shifted_heading)
    md.add_render_rule("heading_close", _shifted_heading)
    return md


_MD = _markdown()


_CMARK_OPTIONS = Options.CMARK_OPT_VALIDATE_UTF8
_CMARK_REFUSED = re.compile(r"<!-- raw HTML omitted -->|<img |href=\"([^\"]*)\"")
_CMARK_HEADING = re.compile(r"<(/?)h([1-6])>")
_CMARK_ALIGN = re.compile(r' align="(left|center|right)">')


def render_markdown(text: str) -> Markup:
    """HTML of a spec's markdown; raw HTML is escaped (shown as text), never passed through.

    cmark-gfm (C) renders a spec in a fraction of markdown-it's time, but in its safe mode it
    drops raw HTML instead of showing it, keeps images and allows more link schemes than the
    site does. A spec where it would do any of that is rendered by markdown-it instead, with
    HTML off, so what the spec says is always shown, as text.
    """
    fast = markdown_to_html_with_extensions(text, options=_CMARK_OPTIONS, extensions=["table"])
    for refused in _CMARK_REFUSED.finditer(fast):
        link = refused.group(1)
        if link is None or not _validate_link(html.unescape(link)) or not link:
            return Markup(_MD.render(text))  # html is disabled: escaped
    # no raw HTML came through, so every tag here is one the renderer made: shift headings,
    # and align table cells as markdown-it does (the same spec gives the same bytes either way)
    fast = _CMARK_ALIGN.sub(r' style="text-align:\1">', fast)
    return Markup(_CMARK_HEADING.sub(_shift_heading, fast))


def _shift_heading(match: re.Match[str]) -> str:
    return f"<{match.group(1)}h{min(6, int(match.group(2)) + 2)}>"


def render_inline(text: str) -> Markup:
    """A one-line text (a criterion) with its code spans and emphasis; raw HTML stays text."""
    return Markup(_MD.renderInline(text))


# --- templates ------------------------------------------------------------------------------


def _when(moment: datetime | str | None, timezone: str = "UTC") -> Markup:
    """`<time>` in the OS's time zone: `2026-01-03 14:22:01 (America/Sao_Paulo)`."""
    if moment is None:
        return Markup("—")
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(ZoneInfo(timezone))
    return Markup('<time datetime="{}">{} ({})</time>').format(
        local.isoformat(timespec="seconds"), local.strftime("%Y-%m-%d %H:%M:%S"), timezone
    )


_VERDICTS = {
    "PASS": ("ok", "✓"),
    "PASSED": ("ok", "✓"),
    "FAIL": ("bad", "✗"),
    "NÃO VERIFICADO": ("warn", "⚠"),
}


@functools.lru_cache(maxsize=64)
def _badge(css: str, symbol: str, label: str) -> Markup:
    """Cached: a site shows a handful of distinct badges thousands of times."""
    return Markup(
        '<span class="state {}"><span class="symbol" aria-hidden="true">{}</span> {}</span>'
    ).format(css, symbol, label)


def _state_badge(state: State | str) -> Markup:
    """A state as a word and a symbol, never as a colour alone."""
    if state not in _STATE_VALUES:  # a decision this version does not know: never a pass
        return _badge("bad", "✗", str(state))
    shown = State(state)
    return _badge(shown.css, shown.symbol, shown.value)


def _verdict_badge(verdict: str) -> Markup:
    css, symbol = _VERDICTS.get(verdict, ("bad", "✗"))
    return _badge(css, symbol, verdict)


def _duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "—"
    return f"{float(seconds):.1f} s".replace(".", ",")


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("gates", _TEMPLATES),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html", "html.j2"], default_for_string=True),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates ship with the package: no stat of each one per page
    )
    environment.filters["when"] = _when
    environment.filters["duration"] = _duration
    environment.globals["State"] = State
    environment.filters["inline"] = render_inline
    environment.filters["state"] = _state_badge
    environment.filters["verdict"] = _verdict_badge
    return environment


_ENVIRONMENT = _environment()


def _render(template: str, **context: Any) -> bytes:
    return _ENVIRONMENT.get_template(template).render(**context).encode("utf-8")


def _stylesheet() -> bytes:
    loader = _ENVIRONMENT.loader
    assert loader is not None
    source, _, _ = loader.get_source(_ENVIRONMENT, STYLESHEET)
    return source.encode("utf-8")
