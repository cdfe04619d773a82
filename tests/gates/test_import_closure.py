"""`gates import-closure`: a legacy closure document (the seed's shape) becomes a spec."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from gates import (
    GATE_NAMES,
    ClosureImportError,
    SectionKind,
    WorkOrderStatus,
    import_closure,
    load_vault,
    parse_work_order,
)
from gates.cli import main
from tests.gates.specs import make_root

SEED = Path(__file__).parent / "data" / "seed-os-004.md"
SEED_ID = "OS-CODEX-AURORA-CRM-HEADLESS-GENESIS-20260103-004"
SHARED_SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / f"{SEED_ID}.md"


def test_the_fixture_is_the_seed() -> None:
    if not SHARED_SEED.exists():
        pytest.skip("shared/ is not next to this clone")
    assert SEED.read_bytes() == SHARED_SEED.read_bytes()


def test_seed_import_gives_its_six_criteria() -> None:
    spec = import_closure(SEED)

    assert spec.errors == ()
    assert spec.id == SEED_ID
    assert [(c.id, c.claimed) for c in spec.criteria] == [(f"AC-0{n}", True) for n in range(1, 7)]
    assert [c.text for c in spec.criteria] == [
        "Model `Contact` criado conforme OS",
        "Model `Deal` criado conforme OS",
        "Endpoint `/ingest/message` ativo (rota registrada no app)",
        "Migração Alembic versionada no repo (contacts + deals)",
        "JSONB suportado no Postgres (schema via `with_variant`)",
        "Gates PASS",
    ]
    assert [c.gates for c in spec.criteria] == [()] * 5 + [GATE_NAMES]


def test_seed_import_moves_the_facts_into_front_matter(tmp_path: Path) -> None:
    out = tmp_path / "spec.md"
    out.write_text(import_closure(SEED).text, encoding="utf-8")

    order = parse_work_order(out, root=tmp_path).document

    assert order is not None
    assert (order.id, order.number, order.title, order.project) == (
        SEED_ID,
        4,
        "CRM Headless Genesis",
        "aurora-crm",
    )
    assert order.status is WorkOrderStatus.DECLARED_DONE
    assert order.executor == "CODEX / Copilot (executor mecânico)"
    assert (order.repository, order.branch, order.scope) == (
        "Ozzmosis",
        "chore/shield-workspace-foundation",
        "apps/crm-core",
    )
    assert (order.date, order.timezone) == (datetime.date(2026, 1, 3), "America/Sao_Paulo")
    assert order.endpoint == "POST /ingest/message"
    assert order.gates == GATE_NAMES
    assert [str(feature) for feature in order.features] == ["features/os_004.feature"]
    assert str(order.deliverables[0].path) == "apps/crm-core/src/models/contact.py"


def test_seed_import_leaves_out_the_output_only_sections() -> None:
    text = import_closure(SEED).text

    assert "Evidências" not in text
    assert "Decisão Final" not in text
    assert "Registro no Vault" not in text
    assert "**OS ID:**" not in text
    assert "**Status:**" not in text
    assert "## 1️⃣ Contexto" in text
    assert "**Natureza:** Fechamento Canônico (Governança da Verdade)" in text
    assert "- [x] **AC-06** Gates PASS (gates: " in text
    assert text.endswith("- Isso é **intencional** e conforme escopo Genesis.\n")


def test_seed_import_keeps_the_spec_sections(tmp_path: Path) -> None:
    out = tmp_path / "spec.md"
    out.write_text(import_closure(SEED).text, encoding="utf-8")

    order = parse_work_order(out, root=tmp_path).document

    assert order is not None
    assert [section.kind for section in order.body.sections] == [
        SectionKind.CONTEXT,
        SectionKind.EXECUTION,
        SectionKind.DELIVERABLES,
        SectionKind.CRITERIA,
        SectionKind.SCOPE_NOTES,
    ]
    assert order.body.preamble.startswith("# 🧬 ORDEM DE SERVIÇO")


def test_crlf_seed_imports_the_same(tmp_path: Path) -> None:
    crlf = tmp_path / "seed-crlf.md"
    crlf.write_bytes(b"\xef\xbb\xbf" + SEED.read_bytes().replace(b"\n", b"\r\n"))

    assert import_closure(crlf).text == import_closure(SEED).text


def test_options_choose_project_gates_and_features() -> None:
    spec = import_closure(
        SEED, project="outro", gates=("lint", "tests"), features=["features/a.feature"]
    )

    assert spec.errors == ()
    assert "project: outro\n" in spec.text
    assert "gates: [lint, tests]\n" in spec.text
    assert "features: [features/a.feature]\n" in spec.text
    assert spec.criteria[-1].gates == ("lint", "tests")


def test_existing_ids_are_kept_and_new_ones_skip_them(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.md"
    legacy.write_text(
        SEED.read_text("utf-8").replace("- [x] Model `Deal`", "- [x] **AC-01** Model `Deal`"),
        encoding="utf-8",
    )

    spec = import_closure(legacy)

    assert [c.id for c in spec.criteria] == ["AC-02", "AC-01", "AC-03", "AC-04", "AC-05", "AC-06"]


def test_a_legacy_document_without_a_date_is_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.md"
    legacy.write_text(
        SEED.read_text("utf-8").replace("- **Data:** 2026-01-03 (America/Sao_Paulo)\n", ""),
        encoding="utf-8",
    )

    with pytest.raises(ClosureImportError, match=r"no \*\*Data:\*\* line"):
        import_closure(legacy)


def test_a_spec_is_not_imported_again(tmp_path: Path) -> None:
    spec = tmp_path / "spec.md"
    spec.write_text(import_closure(SEED).text, encoding="utf-8")

    with pytest.raises(ClosureImportError, match="already has front matter"):
        import_closure(spec)


def test_cli_writes_a_spec_that_lint_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.md"

    assert main(["import-closure", str(SEED), "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"wrote {out}: {SEED_ID} with 6 criteria (AC-01, AC-02, AC-03, AC-04, AC-05, AC-06)\n"
    )
    assert main(["lint", "--root", str(tmp_path), str(out)]) == 0


def test_cli_writes_into_the_vault_as_a_valid_spec(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    folder = root / "vault" / "aurora-crm" / "os"
    folder.mkdir(parents=True)

    assert main(["import-closure", str(SEED), "--out", str(folder)]) == 0

    vault = load_vault(root)
    assert vault.errors == ()
    assert list(vault.documents) == [SEED_ID]


def test_cli_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.md"
    out.write_text("meu\n", encoding="utf-8")

    assert main(["import-closure", str(SEED), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"gates: error: {out} exists; pass --force to overwrite it\n"
    assert out.read_text("utf-8") == "meu\n"
    assert main(["import-closure", str(SEED), "--out", str(out), "--force"]) == 0
    assert out.read_text("utf-8") == import_closure(SEED).text


def test_cli_prints_to_stdout_by_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gates", "import-closure", str(SEED)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == import_closure(SEED).text


def test_cli_reports_an_unusable_legacy_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = tmp_path / "legacy.md"
    legacy.write_text("# nada aqui\n", encoding="utf-8")

    assert main(["import-closure", str(legacy)]) == 1
    assert capsys.readouterr().err.startswith(f"gates: error: {legacy}: no **OS ID:**")


def test_cli_rejects_unknown_gates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-closure", str(SEED), "--gates", "lint,bogus"]) == 2
    assert "unknown gate bogus" in capsys.readouterr().err


def test_cli_missing_input_is_an_io_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import-closure", str(tmp_path / "nope.md")]) == 2
    assert "cannot read" in capsys.readouterr().err
