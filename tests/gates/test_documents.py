"""The parser over valid documents and over every kind of broken document."""

from __future__ import annotations

import datetime
import os
from pathlib import Path, PurePosixPath

import pytest

from gates import (
    MAX_FILE_BYTES,
    DocumentError,
    ParsedDocument,
    SectionKind,
    WorkOrderStatus,
    parse_work_order,
    parse_work_order_bytes,
)
from tests.gates.specs import SPEC_ID, VALID_SPEC, make_root, relative, replaced, write_spec


def parse(root: Path, content: str | bytes, **where: str) -> ParsedDocument:
    return parse_work_order(write_spec(root, content, **where), root=root)


def single_error(parsed: ParsedDocument) -> DocumentError:
    assert parsed.document is None
    assert len(parsed.errors) == 1, [str(error) for error in parsed.errors]
    return parsed.errors[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


@pytest.fixture
def spec_path(root: Path) -> str:
    return f"vault/demo/os/{SPEC_ID}.md"


class TestValidDocument:
    def test_front_matter_becomes_typed_fields(self, root: Path) -> None:
        order = parse(root, VALID_SPEC).document

        assert order is not None
        assert order.path == Path(f"vault/demo/os/{SPEC_ID}.md")
        assert (order.id, order.number, order.title, order.project) == (SPEC_ID, 4, "Teste", "demo")
        assert order.status is WorkOrderStatus.DRAFT
        assert (order.executor, order.repository, order.branch, order.scope) == (
            "CODEX",
            "demo",
            "main",
            "app",
        )
        assert order.date == datetime.date(2026, 1, 3)
        assert order.timezone == "America/Sao_Paulo"
        assert order.endpoint == "POST /ingest/message"
        assert order.gates == ("lint", "tests")
        assert order.features == (PurePosixPath("features/os_004.feature"),)
        assert (order.short_id, order.tag) == ("OS-004", "@OS-004")
        assert order.line_of("date") == 11
        assert len(order.sha256) == 64

    def test_criteria_keep_the_tick_as_a_claim(self, root: Path) -> None:
        order = parse(root, VALID_SPEC).document

        assert order is not None
        assert [(c.id, c.text, c.claimed, c.gates, c.line) for c in order.criteria] == [
            ("AC-01", "Primeiro critério", True, (), 35),
            ("AC-02", "Segundo critério", False, (), 36),
            ("AC-03", "Gates PASS", True, ("lint", "tests"), 37),
        ]
        assert order.criterion("AC-02") == order.criteria[1]

    def test_deliverables_are_the_path_code_spans(self, root: Path) -> None:
        order = parse(root, VALID_SPEC).document

        assert order is not None
        assert [(d.path, d.line) for d in order.deliverables] == [
            (PurePosixPath("app/models.py"), 30)
        ]

    def test_body_sections_are_kept_as_markdown(self, root: Path) -> None:
        order = parse(root, VALID_SPEC).document

        assert order is not None
        body = order.body
        assert body.preamble == "# OS de teste"
        assert body.context == "Contexto da OS."
        assert body.execution == "- **Executor:** CODEX"
        assert body.deliverables == "- `app/models.py`\n- tabela `crm_contacts`"
        assert body.criteria.startswith("- [x] **AC-01** Primeiro critério\n")
        assert body.scope_notes == "- Nada além."
        assert [(s.kind, s.heading, s.line) for s in body.sections] == [
            (SectionKind.CONTEXT, "1️⃣ Contexto", 20),
            (SectionKind.EXECUTION, "2️⃣ Execução", 24),
            (SectionKind.DELIVERABLES, "3️⃣ Entregáveis", 28),
            (SectionKind.CRITERIA, "4️⃣ Critérios de Aceite (OS 004)", 33),
            (SectionKind.SCOPE_NOTES, "5️⃣ Observações de Escopo", 39),
        ]

    def test_english_headings_are_accepted(self, root: Path) -> None:
        text = VALID_SPEC
        for old, new in [
            ("1️⃣ Contexto", "Context"),
            ("2️⃣ Execução", "Execution"),
            ("3️⃣ Entregáveis", "Deliverables"),
            ("4️⃣ Critérios de Aceite (OS 004)", "Acceptance Criteria"),
            ("5️⃣ Observações de Escopo", "Scope Notes"),
        ]:
            text = replaced(text, old, new)

        order = parse(root, text).document

        assert order is not None
        assert [s.kind for s in order.body.sections] == [
            SectionKind.CONTEXT,
            SectionKind.EXECUTION,
            SectionKind.DELIVERABLES,
            SectionKind.CRITERIA,
            SectionKind.SCOPE_NOTES,
        ]
        assert len(order.criteria) == 3

    def test_crlf_and_bom_parse_exactly_like_lf(self, root: Path) -> None:
        lf = parse(root, VALID_SPEC)
        crlf = parse(root, VALID_SPEC.replace("\n", "\r\n"))
        bom = parse(root, "\ufeff" + VALID_SPEC)
        both = parse(root, b"\xef\xbb\xbf" + VALID_SPEC.replace("\n", "\r\n").encode())

        assert lf.document is not None
        assert lf == crlf == bom == both

    def test_crlf_errors_name_the_same_lines(self, root: Path) -> None:
        broken = replaced(VALID_SPEC, "- [ ] AC-02", "- [ ] AC-01")

        lf = parse(root, broken)
        crlf = parse(root, "\ufeff" + broken.replace("\n", "\r\n"))

        assert lf.errors == crlf.errors
        assert [error.line for error in lf.errors] == [36]

    def test_optional_keys_take_their_defaults(self, root: Path) -> None:
        text = replaced(VALID_SPEC, "timezone: America/Sao_Paulo\n", "")
        text = replaced(text, "endpoint: POST /ingest/message\n", "")

        order = parse(root, text).document

        assert order is not None
        assert (order.timezone, order.endpoint) == ("America/Sao_Paulo", None)

    def test_number_is_decimal_even_with_leading_zeros(self, root: Path) -> None:
        order = parse(root, replaced(VALID_SPEC, "number: 4", "number: 004")).document

        assert order is not None
        assert order.number == 4

    def test_number_is_never_octal(self, root: Path) -> None:
        text = replaced(VALID_SPEC, "number: 4", "number: 010")
        text = replaced(text, "20260103-004", "20260103-010")

        order = parse(root, text, spec_id="OS-TESTE-AURORA-20260103-010").document

        assert order is not None
        assert (order.number, order.short_id) == (10, "OS-010")

    def test_unknown_headings_are_kept_as_sections_without_kind(self, root: Path) -> None:
        text = replaced(VALID_SPEC, "## 5️⃣ Observações", "## Anexos\n\nTexto.\n\n## 5️⃣ Observações")

        order = parse(root, text).document

        assert order is not None
        extra = order.body.sections[4]
        assert (extra.kind, extra.heading, extra.line, extra.markdown) == (
            None,
            "Anexos",
            39,
            "Texto.",
        )
        assert order.body.scope_notes == "- Nada além."

    def test_headings_and_checkboxes_inside_code_fences_are_text(self, root: Path) -> None:
        fenced = "```markdown\n## Evidências\n- [x] sem ID\n- `../fora.py`\n```\n"
        text = replaced(VALID_SPEC, "- [x] **AC-01**", fenced + "- [x] **AC-01**")
        text = replaced(text, "- `app/models.py`", fenced + "- `app/models.py`")

        parsed = parse(root, text)

        assert parsed.errors == ()
        assert parsed.document is not None
        assert len(parsed.document.criteria) == 3

    def test_free_text_and_indented_items_in_criteria_are_allowed(self, root: Path) -> None:
        text = replaced(
            VALID_SPEC,
            "- [ ] AC-02 Segundo critério\n",
            "- [ ] AC-02 Segundo critério\n  - detalhe do critério\n\nNota livre.\n\n",
        )

        assert parse(root, text).ok

    def test_only_path_like_code_spans_are_deliverables(self, root: Path) -> None:
        spans = (
            "- `crm_core/main.py` (roteamento), `PLAN.md`, `alembic/versions/`\n"
            "- `crm_contacts` + `crm_deals`, `with_variant`\n"
            "- FK (`crm_deals.contact_id -> crm_contacts.id`), `POST /ingest/message`\n"
            "- `https://example.org/x`, `./Makefile`, `app/../app/x.py`\n"
        )
        order = parse(root, replaced(VALID_SPEC, "- `app/models.py`\n", spans)).document

        assert order is not None
        assert [str(d.path) for d in order.deliverables] == [
            "crm_core/main.py",
            "PLAN.md",
            "alembic/versions",
            "Makefile",
            "app/x.py",
        ]

    def test_a_file_outside_the_vault_skips_the_layout_rules(
        self, root: Path, tmp_path: Path
    ) -> None:
        draft = tmp_path / "rascunho.md"
        draft.write_text(replaced(VALID_SPEC, "project: demo", "project: outro"), "utf-8")

        parsed = parse_work_order(draft, root=root)

        assert parsed.errors == ()
        assert parsed.path == draft

    def test_bytes_without_root_are_checked_for_content_only(self) -> None:
        parsed = parse_work_order_bytes(
            VALID_SPEC.encode(), path=Path("qualquer-nome.md"), root=None
        )

        assert parsed.ok
        assert parsed.path == Path("qualquer-nome.md")


FRONT_MATTER_ERRORS = [
    pytest.param(
        "---\n", "", 1, "no front matter: the file does not start with a '---' line", id="no-fm"
    ),
    pytest.param(
        "features: [features/os_004.feature]\n---\n",
        "features: [features/os_004.feature]\n",
        1,
        "front matter is not closed: no second '---' line",
        id="unclosed-fm",
    ),
    pytest.param("branch: main\n", "", 1, "missing front matter key 'branch'", id="missing-key"),
    pytest.param(
        "number: 4",
        "number: quatro",
        3,
        "front matter key 'number' must be an integer, not the text 'quatro'",
        id="ill-typed-number",
    ),
    pytest.param(
        "number: 4",
        'number: "4"',
        3,
        "front matter key 'number' must be an integer, not the text '4'",
        id="quoted-number",
    ),
    pytest.param(
        "title: Teste",
        "title: [a, b]",
        4,
        "front matter key 'title' must be a text, not a list",
        id="ill-typed-title",
    ),
    pytest.param(
        "branch: main",
        "branch: 2026",
        9,
        "front matter key 'branch' must be a text, not the number 2026",
        id="ill-typed-branch",
    ),
    pytest.param(
        "gates: [lint, tests]",
        "gates: lint",
        14,
        "front matter key 'gates' must be a list of gate names, not the text 'lint'",
        id="ill-typed-gates",
    ),
    pytest.param(
        "scope: app\n",
        "scope: app\nowner: eu\n",
        11,
        "unknown front matter key 'owner'",
        id="unknown-key",
    ),
    pytest.param(
        "scope: app\n",
        "scope: app\nscope: outro\n",
        11,
        "front matter key 'scope' is repeated (first at line 10)",
        id="repeated-key",
    ),
    pytest.param(
        "gates: [lint, tests]",
        "gates: [lint, lintt]",
        14,
        "front matter key 'gates' item 2: unknown gate 'lintt'",
        id="unknown-gate",
    ),
    pytest.param(
        "gates: [lint, tests]",
        "gates: [lint, tests, lint]",
        14,
        "front matter key 'gates' item 3: gate 'lint' is listed twice",
        id="gate-twice",
    ),
    pytest.param(
        "date: 2026-01-03",
        "date: 2026-02-30",
        11,
        "front matter key 'date': '2026-02-30' is not a valid date",
        id="impossible-date",
    ),
    pytest.param(
        "date: 2026-01-03",
        "date: 03/01/2026",
        11,
        "front matter key 'date': '03/01/2026' is not a date written YYYY-MM-DD",
        id="date-format",
    ),
    pytest.param(
        "date: 2026-01-03",
        "date: 2026-01-03 10:00:00",
        11,
        "front matter key 'date': '2026-01-03 10:00:00' is not a date written YYYY-MM-DD",
        id="datetime",
    ),
    pytest.param(
        "timezone: America/Sao_Paulo",
        "timezone: America/Sao_Paolo",
        12,
        "front matter key 'timezone': unknown time zone 'America/Sao_Paolo'",
        id="bad-timezone",
    ),
    pytest.param(
        "timezone: America/Sao_Paulo",
        "timezone: ../../etc/passwd",
        12,
        "front matter key 'timezone': unknown time zone '../../etc/passwd'",
        id="timezone-path",
    ),
    pytest.param(
        "status: rascunho",
        "status: concluída",
        6,
        "front matter key 'status': unknown status 'concluída'",
        id="bad-status",
    ),
    pytest.param(
        "endpoint: POST /ingest/message",
        "endpoint: /ingest/message",
        13,
        "front matter key 'endpoint': '/ingest/message' is not an HTTP method and a path",
        id="bad-endpoint",
    ),
    pytest.param(
        "project: demo",
        "project: Demo CRM",
        5,
        "front matter key 'project': 'Demo CRM' is not a project slug",
        id="bad-project",
    ),
    pytest.param(
        "features: [features/os_004.feature]",
        "features: [features/os_004.md]",
        15,
        "front matter key 'features' item 1: 'features/os_004.md' is not a .feature file",
        id="feature-not-feature",
    ),
    pytest.param(
        "features: [features/os_004.feature]",
        "features:\n  - features/a.feature\n  - ../fora/os_004.feature",
        17,
        "front matter key 'features' item 2: feature path '../fora/os_004.feature' "
        "escapes the repository",
        id="feature-escapes",
    ),
    pytest.param(
        "title: Teste",
        "title: !!python/object/apply:os.system [ls]",
        4,
        "front matter key 'title' has a value YAML cannot read: could not determine a "
        "constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        id="python-tag",
    ),
    pytest.param(
        "title: Teste\nproject: demo",
        "title: &t Teste\nproject: *t",
        5,
        "front matter uses a YAML alias (*name)",
        id="alias",
    ),
    pytest.param(
        "number: 4",
        "number: 5",
        3,
        "number 5 does not match the id, which ends in -004",
        id="number-not-id",
    ),
    pytest.param(
        "id: OS-TESTE-AURORA-20260103-004",
        "id: os-teste-004",
        2,
        "front matter key 'id': 'os-teste-004' is not an OS id",
        id="bad-id",
    ),
    pytest.param(
        "project: demo",
        "project: outro",
        5,
        "project 'outro' does not match the folder vault/demo/",
        id="project-not-folder",
    ),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), FRONT_MATTER_ERRORS)
def test_front_matter_error(
    root: Path, spec_path: str, old: str, new: str, line: int, message: str
) -> None:
    error = single_error(parse(root, replaced(VALID_SPEC, old, new)))

    assert (error.path.as_posix(), error.line, error.message) == (spec_path, line, message)
    assert str(error).startswith(f"{spec_path}:{line}: {message} — fix: ")
    assert error.fix


BODY_ERRORS = [
    pytest.param(
        "## 4️⃣ Critérios de Aceite (OS 004)",
        "## 4️⃣ Critérios",
        17,
        "missing 'Critérios de Aceite' section",
        id="missing-criteria-section",
    ),
    pytest.param(
        "- [x] **AC-01** Primeiro critério\n- [ ] AC-02 Segundo critério\n"
        "- [x] **AC-03** Gates PASS (gates: lint, tests)\n",
        "Nada.\n",
        33,
        "section '4️⃣ Critérios de Aceite (OS 004)' has no criteria",
        id="no-criteria",
    ),
    pytest.param(
        "- [ ] AC-02 Segundo critério",
        "- [ ] Segundo critério",
        36,
        "criterion has no ID: 'Segundo critério'",
        id="criterion-without-id",
    ),
    pytest.param(
        "- [ ] AC-02 Segundo",
        "- [ ] **AC-2** Segundo",
        36,
        "criterion ID 'AC-2' is malformed",
        id="malformed-id",
    ),
    pytest.param(
        "- [ ] AC-02 Segundo",
        "- [ ] AC-01 Segundo",
        36,
        "duplicate criterion ID AC-01 (first at line 35)",
        id="duplicate-criterion-id",
    ),
    pytest.param(
        "- [ ] AC-02 Segundo critério",
        "- [ ] AC-02",
        36,
        "criterion AC-02 has no text",
        id="criterion-without-text",
    ),
    pytest.param(
        "- [ ] AC-02 Segundo",
        "- AC-02 Segundo",
        36,
        "list item in 'Critérios de Aceite' is not a checkbox",
        id="not-a-checkbox",
    ),
    pytest.param(
        "(gates: lint, tests)",
        "(gates: lint, bogus)",
        37,
        "criterion AC-03 names unknown gate 'bogus'",
        id="criterion-unknown-gate",
    ),
    pytest.param(
        "(gates: lint, tests)",
        "(gates: )",
        37,
        "criterion AC-03 has an empty gate name in its (gates: ...) list",
        id="criterion-empty-gates",
    ),
    pytest.param(
        "(gates: lint, tests)",
        "(gates: lint, migrations)",
        37,
        "criterion AC-03 relies on gate 'migrations', which the OS does not require",
        id="criterion-gate-not-required",
    ),
    pytest.param(
        "- `app/models.py`",
        "- `../fora/models.py`",
        30,
        "deliverable path '../fora/models.py' escapes the repository",
        id="deliverable-escapes",
    ),
    pytest.param(
        "- `app/models.py`",
        "- `app/../../models.py`",
        30,
        "deliverable path 'app/../../models.py' escapes the repository",
        id="deliverable-escapes-after-normalising",
    ),
    pytest.param(
        "- `app/models.py`",
        "- `/etc/passwd`",
        30,
        "deliverable path '/etc/passwd' is absolute",
        id="deliverable-absolute",
    ),
    pytest.param(
        "## 5️⃣ Observações de Escopo",
        "## 6️⃣ Evidências\n\n- Commit: `abc`\n\n## 5️⃣ Observações de Escopo",
        39,
        "section '6️⃣ Evidências' belongs in a closure record, not in a spec",
        id="closure-only-section",
    ),
    pytest.param(
        "## 5️⃣ Observações de Escopo",
        "## Contexto\n\n## 5️⃣ Observações de Escopo",
        39,
        "second 'Contexto' section (first at line 20)",
        id="section-twice",
    ),
    pytest.param(
        "- Nada além.",
        "- Nada além.\n\n```bash\nexit 0",
        43,
        "code fence is never closed",
        id="unclosed-fence",
    ),
]


@pytest.mark.parametrize(("old", "new", "line", "message"), BODY_ERRORS)
def test_body_error(
    root: Path, spec_path: str, old: str, new: str, line: int, message: str
) -> None:
    error = single_error(parse(root, replaced(VALID_SPEC, old, new)))

    assert (error.path.as_posix(), error.line, error.message) == (spec_path, line, message)
    assert error.fix


def test_id_must_match_the_file_name(root: Path) -> None:
    path = write_spec(root, spec_id="OS-TESTE-AURORA-20260103-999")

    error = single_error(parse_work_order(path, root=root))

    assert str(error) == (
        "vault/demo/os/OS-TESTE-AURORA-20260103-999.md:2: id OS-TESTE-AURORA-20260103-004 "
        "does not match the file name OS-TESTE-AURORA-20260103-999.md — fix: rename the file "
        "to OS-TESTE-AURORA-20260103-004.md or correct the id"
    )


def test_every_error_of_a_document_is_collected(root: Path) -> None:
    text = replaced(VALID_SPEC, "date: 2026-01-03", "date: ontem")
    text = replaced(text, "timezone: America/Sao_Paulo", "timezone: Lua/Base")
    text = replaced(text, "- [ ] AC-02", "- [ ] AC-01")
    text = replaced(text, "- `app/models.py`", "- `/app/models.py`")

    parsed = parse(root, text)

    assert [error.line for error in parsed.errors] == [11, 12, 30, 36]


def test_invalid_utf8_names_line_and_byte_offset(root: Path, spec_path: str) -> None:
    data = replaced(VALID_SPEC, "Contexto da OS.", "Contexto da OS \udcff.").encode(
        "utf-8", "surrogateescape"
    )
    offset = data.index(b"\xff")

    error = single_error(parse(root, data))

    assert (error.path.as_posix(), error.line) == (spec_path, 22)
    assert error.message == f"invalid UTF-8 byte 0xff at byte offset {offset} (column 16)"
    assert error.fix == "save the file as UTF-8"


def test_file_too_large(root: Path, spec_path: str) -> None:
    padding = "\n" + "x" * 100 + "\n"
    data = VALID_SPEC + padding * (MAX_FILE_BYTES // len(padding) + 1)

    error = single_error(parse(root, data))

    assert (error.path.as_posix(), error.line) == (spec_path, 1)
    assert error.message == f"file too large: more than {MAX_FILE_BYTES} bytes"


def test_symlink_out_of_the_repository_is_not_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text(VALID_SPEC, encoding="utf-8")
    link = root / "vault" / "demo" / "os" / f"{SPEC_ID}.md"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)

    error = single_error(parse_work_order(link, root=root))

    assert (relative(root / error.path, root), error.line) == (relative(link, root), 1)
    assert error.message == f"symbolic link points outside the repository ({outside})"


def test_symlinked_folder_out_of_the_repository_is_not_followed(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "os").mkdir(parents=True)
    (elsewhere / "os" / f"{SPEC_ID}.md").write_text(VALID_SPEC, encoding="utf-8")
    os.symlink(elsewhere, root / "vault" / "demo")

    error = single_error(
        parse_work_order(root / "vault" / "demo" / "os" / f"{SPEC_ID}.md", root=root)
    )

    assert error.message.startswith("symbolic link points outside the repository")


def test_symlink_inside_the_repository_is_read(root: Path) -> None:
    real = root / "docs" / "spec.md"
    real.parent.mkdir()
    real.write_text(VALID_SPEC, encoding="utf-8")
    link = root / "vault" / "demo" / "os" / f"{SPEC_ID}.md"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)

    assert parse_work_order(link, root=root).ok


def test_a_folder_is_not_a_document(root: Path) -> None:
    folder = root / "vault" / "demo" / "os" / f"{SPEC_ID}.md"
    folder.mkdir(parents=True)

    error = single_error(parse_work_order(folder, root=root))

    assert (error.line, error.message) == (1, "not a regular file")


def test_missing_file_is_an_error_not_an_exception(root: Path) -> None:
    error = single_error(parse_work_order(root / "vault" / "demo" / "os" / "X.md", root=root))

    assert error.message.startswith("cannot read the file:")


def test_broken_yaml(root: Path, spec_path: str) -> None:
    error = single_error(parse(root, replaced(VALID_SPEC, "title: Teste", "title: Teste: de novo")))

    assert (error.path.as_posix(), error.line) == (spec_path, 4)
    assert error.message.startswith("front matter is not valid YAML: mapping values are not")
    assert error.fix == "correct the YAML syntax"


def test_empty_front_matter(root: Path) -> None:
    error = single_error(parse(root, "---\n---\n" + VALID_SPEC.split("---\n", 2)[2]))

    assert (error.line, error.message) == (1, "front matter is empty")


def test_front_matter_that_is_not_a_mapping(root: Path) -> None:
    text = "---\n- a\n- b\n---\n" + VALID_SPEC.split("---\n", 2)[2]

    error = single_error(parse(root, text))

    assert (error.line, error.message) == (2, "front matter is not a mapping of keys to values")


def test_exponential_aliases_are_refused_quickly(root: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(10)
    )
    text = replaced(VALID_SPEC, "scope: app\n", "scope: app\n" + bomb)

    parsed = parse(root, text)

    assert parsed.errors[0].message == "front matter uses a YAML alias (*name)"
    assert parsed.errors[0].line == 12
