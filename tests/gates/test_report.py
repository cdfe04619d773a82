"""`gates report`: the auditors' site shows each state, matrix and gate as the vault has them."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gates.cli import main
from gates.record import ledger
from gates.record.publish import certify
from gates.report import site as report
from gates.report.site import MANIFEST, render_markdown, write_report
from gates.signing import Signer
from tests.gates.certify_project import SPEC_ID, Project, make_project

LEDGER = "vault/ledger.jsonl"
FIRST_RUN = datetime(2026, 1, 5, 15, 0, 0, tzinfo=UTC)
SECOND_RUN = datetime(2026, 1, 6, 15, 30, 0, tzinfo=UTC)

FAILED_ID = "OS-DEMO-NADA-PROVA-20260105-002"
STALE_ID = "OS-DEMO-PORTAS-20260105-003"
UNCERTIFIED_ID = "OS-DEMO-HOSTIL-20260105-005"

HOSTILE = """\
<script>alert("spec")</script>

<img src="https://tracker.example/pixel.png" onerror="alert(1)">

![pixel](https://tracker.example/p.png) [clique](javascript:alert(1)) [dados](data:text/html,x)
[site](https://example.com/ok)
"""


def other_spec(os_id: str, number: int, title: str, criteria: str, context: str = "Teste.") -> str:
    return f"""\
---
id: {os_id}
number: {number}
title: {title}
project: demo
status: declarada concluída
executor: Equipe de teste
repository: demo
branch: main
scope: src
date: 2026-01-05
timezone: Asia/Tokyo
gates: [lint, types]
features: []
---

# {title}

## Contexto

{context}

## Critérios de Aceite

{criteria}
"""


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certified vault with an OS in each state; never modified by the tests."""
    project = make_project(tmp_path_factory.mktemp("report") / "demo")
    project.write(
        f"vault/demo/os/{FAILED_ID}.md",
        other_spec(FAILED_ID, 2, "Nada prova", "- [x] **AC-01** Algo que nenhum gate prova"),
    )
    project.write(
        f"vault/demo/os/{STALE_ID}.md",
        other_spec(STALE_ID, 3, "Portas", "- [x] **AC-01** Gates PASS (gates: lint, types)"),
    )
    project.commit("three specs")
    decisions = {r.order.id: r.decision.value for r in certify(project.root, now=FIRST_RUN)}
    assert decisions == {SPEC_ID: "CONCLUÍDA", FAILED_ID: "REPROVADA", STALE_ID: "CONCLUÍDA"}
    project.commit("records")
    project.write("src/flag.txt", "no\n")
    project.commit("break the flag")
    (regressed,) = certify(project.root, ["OS-001"], now=SECOND_RUN)
    assert regressed.decision.value == "REGREDIDA"
    project.write(
        f"vault/demo/os/{STALE_ID}.md",
        other_spec(
            STALE_ID, 3, "Portas", "- [x] **AC-01** Gates PASS (gates: lint, types)", "Mudou."
        ),
    )
    project.write(
        f"vault/demo/os/{UNCERTIFIED_ID}.md",
        other_spec(UNCERTIFIED_ID, 5, "Hostil", "- [ ] **AC-01** Nada", HOSTILE),
    )
    project.commit("after the closures")
    return project.root


@pytest.fixture(scope="module")
def site(vault: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    write_report(vault, out)
    return out


@pytest.fixture
def copy(vault: Path, tmp_path: Path) -> Project:
    target = tmp_path / "copy"
    shutil.copytree(vault, target, symlinks=True)
    return Project(target)


def page(site: Path, os_id: str) -> str:
    return (site / "os" / f"{os_id}.html").read_text(encoding="utf-8")


def twin(vault: Path, os_id: str) -> dict[str, object]:
    latest = max((vault / "vault/demo/fechamentos" / os_id).glob("*.json"), key=_certified_at)
    document: dict[str, object] = json.loads(latest.read_text(encoding="utf-8"))
    return document


def _certified_at(path: Path) -> str:
    if path.name.endswith(".intoto.json") or path.name.endswith(".dsse.json"):
        return ""
    return str(json.loads(path.read_text(encoding="utf-8"))["certified_at"])


class Links(HTMLParser):
    """Every link, stylesheet, source and heading of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.external: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src", "action", "srcset", "poster") and value is not None:
                if re.match(r"^[a-z]+:|^/", value):
                    self.external.append((tag, value))
                else:
                    self.urls.append(value)


def parsed(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_the_index_shows_each_os_with_its_state(site: Path, vault: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    rows = dict(re.findall(r'data-os="([^"]+)" data-state="([^"]+)"', index))
    assert rows == {
        SPEC_ID: "REGREDIDA",
        FAILED_ID: "REPROVADA",
        STALE_ID: "DESATUALIZADA",
        UNCERTIFIED_ID: "NÃO CERTIFICADA",
    }
    regressed = twin(vault, SPEC_ID)
    assert str(regressed["commit"])[:12] in index
    # dates in each OS's time zone: 15:30 UTC is 12:30 in São Paulo, 15:00 UTC is midnight in Tokyo
    assert "2026-01-06 12:30:00 (America/Sao_Paulo)" in index
    assert "2026-01-06 00:00:00 (Asia/Tokyo)" in index
    assert 'data-intact="sim"' in index
    assert "VERIFICADO" in index


def test_each_state_has_a_word_and_a_symbol(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    for symbol, word in [
        ("✓", "CONCLUÍDA"),
        ("✗", "REPROVADA"),
        ("↓", "REGREDIDA"),
        ("⚠", "DESATUALIZADA"),
        ("○", "NÃO CERTIFICADA"),
    ]:
        assert f'<span class="symbol" aria-hidden="true">{symbol}</span> {word}</span>' in index


def test_the_os_page_shows_the_matrix_of_its_json_twin(site: Path, vault: Path) -> None:
    html = page(site, SPEC_ID)
    document = twin(vault, SPEC_ID)
    criteria = document["criteria"]
    assert isinstance(criteria, list)
    shown = re.findall(r'data-criterion="([^"]+)" data-verdict="([^"]+)"', html)
    assert shown == [(c["id"], c["verdict"]) for c in criteria]
    assert shown == [("AC-01", "FAIL"), ("AC-02", "PASS")]
    assert "declaração contrariada pelos gates" in html
    gates = document["gates"]
    assert isinstance(gates, list)
    assert re.findall(r'data-gate="([^"]+)" data-status="([^"]+)"', html) == [
        (g["name"], g["status"]) for g in gates
    ]
    assert html.count('<details class="log">') == len(gates)
    assert "<summary>Log do gate <code>lint</code> (PASS)</summary>" in html
    assert "lint ok" in html  # the log itself
    assert 'data-present="sim"' in html
    assert "<code>src/app.py</code>" in html


def test_the_history_links_every_closure(site: Path, vault: Path) -> None:
    html = page(site, SPEC_ID)
    records = sorted((vault / "vault/demo/fechamentos" / SPEC_ID).glob("*.md"))
    assert len(records) == 2
    latest = str(twin(vault, SPEC_ID)["commit"])[:12]
    assert '<a href="#veredito">fechamento (nesta página)</a>' in html
    for record in records:
        commit = record.stem
        if commit != latest:
            assert f'href="{SPEC_ID}/{commit}.html"' in html
            assert (site / "os" / SPEC_ID / f"{commit}.html").is_file()
        copied = site / "os" / SPEC_ID / f"{commit}.md"
        assert copied.read_bytes() == record.read_bytes()
        assert (site / "os" / SPEC_ID / f"{commit}.json").is_file()


def test_a_stale_os_says_what_changed(site: Path) -> None:
    html = page(site, STALE_ID)
    assert 'data-state="DESATUALIZADA"' in html
    assert f"vault/demo/os/{STALE_ID}.md" in html
    assert "É preciso certificá-la de novo" in html


def test_an_uncertified_os_shows_its_criteria_with_only_the_claim(site: Path) -> None:
    html = page(site, UNCERTIFIED_ID)
    assert 'data-criterion="AC-01" data-verdict="NÃO CERTIFICADA"' in html
    assert "Nenhum fechamento registrado." in html


def test_html_in_a_spec_is_shown_as_text_never_run(site: Path) -> None:
    html = page(site, UNCERTIFIED_ID)
    assert "&lt;script&gt;alert(&quot;spec&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=&quot;https://tracker.example/pixel.png&quot;" in html
    links = parsed(site / "os" / f"{UNCERTIFIED_ID}.html")
    assert "script" not in links.tags
    assert "img" not in links.tags
    # a link a spec writes stays a link to follow, never something the page loads by itself
    assert links.external == [
        ("a", "https://tracker.example/p.png"),
        ("a", "https://example.com/ok"),
    ]


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[a](javascript:alert(1))", "<p>[a](javascript:alert(1))</p>"),
        ("[a](JaVaScRiPt:alert(1))", "<p>[a](JaVaScRiPt:alert(1))</p>"),
        ("[a](vbscript:x)", "<p>[a](vbscript:x)</p>"),
        ("[a](file:///etc/passwd)", "<p>[a](file:///etc/passwd)</p>"),
        ("[a](https://example.com)", '<p><a href="https://example.com">a</a></p>'),
        ("[a](mailto:x@example.com)", '<p><a href="mailto:x@example.com">a</a></p>'),
        ("[a](#AC-01)", '<p><a href="#AC-01">a</a></p>'),
        ("# Título\n## Seção", "<h3>Título</h3>\n<h4>Seção</h4>"),
        ("<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>"),
        ("[a](ftp://example.com/x)", "<p>[a](ftp://example.com/x)</p>"),
        ("[a](tel:+5511999999999)", "<p>[a](tel:+5511999999999)</p>"),
        (
            "![pixel](https://tracker.example/p.png)",  # an image is a link, never loaded
            '<p>!<a href="https://tracker.example/p.png">pixel</a></p>',
        ),
        (
            "texto `<i>` e <!-- nota -->",
            "<p>texto <code>&lt;i&gt;</code> e &lt;!-- nota --&gt;</p>",
        ),
        ("[a](<>)", '<p><a href="">a</a></p>'),
    ],
)
def test_markdown_is_rendered_safely(markdown: str, expected: str) -> None:
    assert render_markdown(markdown).strip() == expected


def test_every_link_is_relative_and_resolves_inside_the_site(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 2 + 4 + 1  # index and ledger, four OS pages, one earlier closure
    for html in pages:
        links = parsed(html)
        assert links.tags.count("h1") == 1, html
        assert "script" not in links.tags
        if html.name != f"{UNCERTIFIED_ID}.html":
            assert links.external == [], html
        for url in links.urls:
            if url.startswith("#"):
                continue
            target = (html.parent / url.split("#")[0]).resolve()
            assert target.is_relative_to(site.resolve()), (html, url)
            assert target.is_file(), (html, url)


def test_the_stylesheet_is_small_and_fetches_nothing(site: Path) -> None:
    css = (site / "report.css").read_text(encoding="utf-8")
    assert len(css.encode()) < 10_000
    assert "@import" not in css
    assert "url(" not in css
    assert "@media print" in css


def test_the_same_vault_gives_the_same_bytes(site: Path, copy: Project, tmp_path: Path) -> None:
    # rendered again, from a copy of the vault in another folder
    again = tmp_path / "again"
    write_report(copy.root, again)
    first = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    second = {
        p.relative_to(again).as_posix(): p.read_bytes() for p in again.rglob("*") if p.is_file()
    }
    assert sorted(first) == sorted(second)
    for name, data in first.items():
        assert second[name] == data, name
    assert str(copy.root) not in "".join(d.decode() for d in second.values() if len(d) < 10**6)


def test_a_tampered_ledger_shows_as_broken(copy: Project, tmp_path: Path) -> None:
    book = copy.root / LEDGER
    lines = book.read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[0])
    entry["decision"] = "CONCLUÍDA" if entry["decision"] != "CONCLUÍDA" else "REPROVADA"
    lines[0] = ledger.canonical(entry)
    book.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "site"
    assert main(["report", "--root", str(copy.root), "--out", str(out)]) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'data-intact="não"' in index
    assert "ROMPIDO" in index
    assert "hash differs from its content" in index
    book_page = (out / "ledger.html").read_text(encoding="utf-8")
    assert 'data-line="1" data-chained="não"' in book_page
    assert 'data-line="2" data-chained="sim"' in book_page


def test_the_cli_writes_the_site_and_says_where(
    vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep" / "site"
    assert main(["report", "--root", str(vault), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"to {out} (open {out / 'index.html'}); ledger verified" in said
    assert (out / "index.html").is_file()


def test_an_unwritable_folder_is_one_line_and_exit_2(
    vault: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    assert main(["report", "--root", str(vault), "--out", str(blocker / "site")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"gates: error: {blocker / 'site'}: cannot write the report")
    assert error.count("\n") == 1


def test_a_rerun_removes_only_what_it_wrote_before(vault: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    write_report(vault, out)
    (out / "notes.txt").write_text("the auditor's own notes", encoding="utf-8")
    (out / "os" / "OS-GONE.html").write_text("from an older vault", encoding="utf-8")
    with (out / MANIFEST).open("a", encoding="utf-8") as manifest:
        manifest.write("os/OS-GONE.html\n../outside.txt\n")
    (tmp_path / "outside.txt").write_text("never touched", encoding="utf-8")
    write_report(vault, out)
    assert (out / "notes.txt").is_file()
    assert not (out / "os" / "OS-GONE.html").exists()
    assert (tmp_path / "outside.txt").is_file()


def test_an_empty_vault_renders(tmp_path: Path) -> None:
    (tmp_path / "repo" / "vault").mkdir(parents=True)
    (tmp_path / "repo" / "pyproject.toml").write_text("[project]\nname='x'\n", encoding="utf-8")
    write_report(tmp_path / "repo", tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "O vault não tem nenhuma OS." in index
    assert "SEM LIVRO-RAZÃO" in index


def test_the_ledger_page_shows_each_signature_state(copy: Project, tmp_path: Path) -> None:
    book = copy.root / LEDGER
    signer = Signer(Ed25519PrivateKey.generate())
    lines = ledger.read_lines(book)
    fields = {k: v for k, v in dict(lines[-1].entry or {}).items() if k not in ("seq", "prev")}
    for key in ("key_id", "public_key", "hash", "signature"):
        fields.pop(key)
    ledger.append(book, fields, signer)  # a valid signature
    forged = ledger.entries(book)[-1]
    ledger.append(book, fields, signer)
    text = book.read_text(encoding="utf-8").splitlines()
    last = json.loads(text[-1])
    last["signature"] = forged["signature"]  # the signature of another entry
    text[-1] = ledger.canonical(last)
    book.write_text("\n".join(text) + "\n", encoding="utf-8")
    write_report(copy.root, tmp_path / "site")
    html = (tmp_path / "site" / "ledger.html").read_text(encoding="utf-8")
    assert "não assinada" in html
    assert "assinada, válida" in html
    assert "assinatura inválida" in html
    assert signer.key_id in html


REPOSITORY = Path(__file__).resolve().parents[2]
TABLE = "| Estágio | Próximo |\n|:--|:-:|\n| `novo` | **proposta** |\n\n- [x] **AC-01** feito\n"


@pytest.mark.parametrize(
    "source",
    [*sorted((REPOSITORY / "vault").glob("*/os/*.md")), TABLE],
    ids=lambda source: source.name if isinstance(source, Path) else "table",
)
def test_both_markdown_renderers_give_the_same_html(source: Path | str) -> None:
    """Specs are rendered by cmark-gfm, or by markdown-it when they hold what cmark would
    drop: on what both accept, the two must agree byte for byte."""
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    body = text.split("\n---\n", 1)[-1] if isinstance(source, Path) else text
    fast = render_markdown(body)
    assert "<table>" in fast or "<h3>" in fast
    assert fast == report._MD.render(body)  # the strict renderer, for comparison


def test_a_criterion_shows_its_code_spans_and_never_its_html() -> None:
    from gates.report.site import render_inline

    assert render_inline("Model `Contact` <b>x</b>") == (
        "Model <code>Contact</code> &lt;b&gt;x&lt;/b&gt;"
    )


def test_pages_rendered_in_parallel_are_the_same_bytes(
    site: Path, vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "PARALLEL_FROM", 1)
    monkeypatch.setattr(report, "MAX_WORKERS", 2)
    monkeypatch.setattr(report, "_cpus", lambda: 2)
    out = tmp_path / "parallel"
    _, written = write_report(vault, out)
    assert written == sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    for name in written:
        assert (out / name).read_bytes() == (site / name).read_bytes(), name


def test_a_spec_with_errors_is_named_on_the_index(copy: Project, tmp_path: Path) -> None:
    copy.write("vault/demo/os/OS-DEMO-QUEBRADA-20260105-009.md", "---\nid: [\n---\n")
    write_report(copy.root, tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Especificações com erros não aparecem neste relatório" in index
    assert "vault/demo/os/OS-DEMO-QUEBRADA-20260105-009.md:" in index
