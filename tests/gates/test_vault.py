"""The vault as a whole: discovery, the root, and the checks across documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from gates import RepositoryRootNotFound, discover, find_root, load_documents, load_vault
from tests.gates.specs import SPEC_ID, VALID_SPEC, make_root, replaced, write_spec

OTHER_ID = "OS-ZETA-AURORA-20260104-005"


def other_spec(spec_id: str = OTHER_ID, number: int = 5, project: str = "demo") -> str:
    text = replaced(VALID_SPEC, f"id: {SPEC_ID}", f"id: {spec_id}")
    text = replaced(text, "number: 4", f"number: {number}")
    return replaced(text, "project: demo", f"project: {project}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path)


def test_discover_finds_the_specs_of_every_project_only(root: Path) -> None:
    first = write_spec(root)
    second = write_spec(root, other_spec(project="outro"), spec_id=OTHER_ID, project="outro")
    (root / "vault" / "README.md").write_text("# vault\n", encoding="utf-8")
    (root / "vault" / "demo" / "fechamentos").mkdir()
    (root / "vault" / "demo" / "fechamentos" / "registro.md").write_text("x", encoding="utf-8")

    assert discover(root) == [first, second]


def test_load_vault_indexes_documents_by_id(root: Path) -> None:
    write_spec(root)
    write_spec(root, other_spec(), spec_id=OTHER_ID)

    vault = load_vault(root)

    assert vault.ok
    assert (vault.checked, list(vault.documents)) == (2, [SPEC_ID, OTHER_ID])


def test_duplicate_os_id_across_projects(root: Path) -> None:
    write_spec(root)
    write_spec(root, replaced(VALID_SPEC, "project: demo", "project: zeta"), project="zeta")

    vault = load_vault(root)

    assert [str(error) for error in vault.errors] == [
        f"vault/zeta/os/{SPEC_ID}.md:2: duplicate OS id {SPEC_ID} "
        f"(first in vault/demo/os/{SPEC_ID}.md:2) — fix: give each OS its own id; "
        "a copy of an OS must not stay in the vault"
    ]
    assert list(vault.documents) == [SPEC_ID]


def test_duplicate_os_number(root: Path) -> None:
    write_spec(root)
    clash = "OS-ZETA-AURORA-20260104-004"
    write_spec(root, other_spec(clash, number=4), spec_id=clash)

    vault = load_vault(root)

    assert len(vault.errors) == 1
    error = vault.errors[0]
    assert (error.path.as_posix(), error.line) == (f"vault/demo/os/{clash}.md", 3)
    assert error.message == (
        f"OS number 4 (@OS-004) is already used by {SPEC_ID} (vault/demo/os/{SPEC_ID}.md:3)"
    )


def test_errors_of_all_documents_are_collected(root: Path) -> None:
    write_spec(root, replaced(VALID_SPEC, "date: 2026-01-03", "date: amanhã"))
    write_spec(root, replaced(other_spec(), "- [ ] AC-02", "- [ ] AC-01"), spec_id=OTHER_ID)

    vault = load_vault(root)

    assert [(error.path.name, error.line) for error in vault.errors] == [
        (f"{SPEC_ID}.md", 11),
        (f"{OTHER_ID}.md", 36),
    ]
    assert (vault.checked, vault.failing, vault.documents) == (2, 2, {})


def test_load_documents_compares_only_the_given_files(root: Path, tmp_path: Path) -> None:
    write_spec(root)
    copy = tmp_path / "copia.md"
    copy.write_text(VALID_SPEC, encoding="utf-8")

    vault = load_documents([copy], root=root)

    assert vault.ok
    assert list(vault.documents) == [SPEC_ID]


def test_find_root_walks_up_to_the_folder_with_vault(root: Path) -> None:
    nested = root / "a" / "b"
    nested.mkdir(parents=True)

    assert find_root(nested) == root


def test_find_root_needs_a_marker(tmp_path: Path) -> None:
    (tmp_path / "vault").mkdir()

    with pytest.raises(RepositoryRootNotFound, match="pass --root"):
        find_root(tmp_path)


def test_the_repository_vault_is_valid() -> None:
    repo = Path(__file__).resolve().parents[2]

    vault = load_vault(repo)

    assert vault.errors == ()
    genesis = vault.documents["OS-CODEX-AURORA-CRM-HEADLESS-GENESIS-20260103-004"]
    assert [(c.id, c.claimed) for c in genesis.criteria] == [
        (f"AC-0{n}", True) for n in range(1, 7)
    ]
    assert genesis.criteria[-1].gates == (
        "lint",
        "types",
        "tests",
        "migrations",
        "acceptance",
        "deliverables",
    )
    assert [str(d.path) for d in genesis.deliverables] == [
        "crm_core/models/contact.py",
        "crm_core/models/deal.py",
        "crm_core/api/v1/ingest.py",
        "crm_core/main.py",
        "alembic/versions/20260103_0002_contacts_deals.py",
        "PLAN.md",
    ]
    assert genesis.short_id == "OS-004"
    assert genesis.endpoint == "POST /ingest/message"


def test_the_readme_example_is_a_valid_spec(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "vault" / "README.md").read_text("utf-8")
    example = readme.split("````markdown\n", 1)[1].split("\n````", 1)[0] + "\n"
    root = make_root(tmp_path)
    path = write_spec(
        root, example, spec_id="OS-CODEX-AURORA-CRM-EXEMPLO-20260110-005", project="aurora-crm"
    )

    vault = load_vault(root)

    assert vault.errors == ()
    order = vault.documents["OS-CODEX-AURORA-CRM-EXEMPLO-20260110-005"]
    assert order.path == path.relative_to(root)
    assert [c.id for c in order.criteria] == ["AC-01", "AC-02", "AC-03"]
