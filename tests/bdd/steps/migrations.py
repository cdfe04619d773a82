"""Steps about the Alembic migrations and the catalog they leave behind (AC-04, AC-05)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pytest_bdd import given, parsers, then, when

from crm_core.models import Base
from tests.bdd.support.catalog import Catalog
from tests.bdd.support.databases import (
    AlembicAction,
    DatabaseUnderTest,
    LiveDatabase,
    dialect_named,
    models_ddl,
)
from tests.bdd.support.names import ColumnRef, ForeignKeySpec, TableColumns, names
from tests.conftest import REPO_ROOT


def alembic_action(text: str) -> AlembicAction:
    if text == "upgrade":
        return "upgrade"
    if text == "downgrade":
        return "downgrade"
    raise ValueError(f"not an alembic command these steps run: {text!r}")


@given(parsers.parse('a migração "{path}" do repositório'), target_fixture="migration")
def the_migration(path: str) -> Path:
    return REPO_ROOT / path


@then("o arquivo da migração existe")
def migration_file_exists(migration: Path) -> None:
    assert migration.is_file(), f"{migration} is not in the repository"


@then(
    parsers.parse(
        'o Alembic carrega o arquivo como a revisão "{revision}", '
        'que segue a revisão "{down_revision}"'
    )
)
def alembic_loads_revision(
    migration: Path, alembic_scripts: ScriptDirectory, revision: str, down_revision: str
) -> None:
    script = alembic_scripts.get_revision(revision)
    assert script is not None, f"alembic has no revision {revision!r}"
    assert Path(script.path).resolve() == migration.resolve(), script.path
    assert script.down_revision == down_revision


@then(
    parsers.parse(
        'a revisão "{revision}" está na linha única de revisões que leva à head do Alembic'
    )
)
def revision_leads_to_head(alembic_scripts: ScriptDirectory, revision: str) -> None:
    heads = alembic_scripts.get_heads()
    assert len(heads) == 1, f"the migrations have {len(heads)} heads: {heads}"
    line = [script.revision for script in alembic_scripts.iterate_revisions(heads[0], "base")]
    assert revision in line, f"revision {revision} is not on the way to head: {line}"


@when(
    parsers.parse('eu aplico "alembic {action:w} {target:w}"'),
    converters={"action": alembic_action},
    target_fixture="catalog",
)
def apply_alembic(database: DatabaseUnderTest, action: AlembicAction, target: str) -> Catalog:
    database.alembic(action, target)
    return database.catalog()


@then(parsers.parse('o banco tem as tabelas "{tables}"'), converters={"tables": names})
def has_tables(catalog: Catalog, tables: tuple[str, ...]) -> None:
    missing = set(tables) - catalog.tables.keys()
    assert not missing, f"{catalog.source}: missing {sorted(missing)}; has {sorted(catalog.tables)}"


@then(parsers.parse('o banco não tem as tabelas "{tables}"'), converters={"tables": names})
def lacks_tables(catalog: Catalog, tables: tuple[str, ...]) -> None:
    left = set(tables) & catalog.tables.keys()
    assert not left, f"{catalog.source}: still has {sorted(left)}"


@then(
    parsers.parse('o banco tem a chave estrangeira "{foreign_key}"'),
    converters={"foreign_key": ForeignKeySpec.parse},
)
def has_foreign_key(catalog: Catalog, foreign_key: ForeignKeySpec) -> None:
    declared = catalog.table(foreign_key.table).foreign_keys
    assert any(
        fk.links((foreign_key.column,), foreign_key.referred_table, (foreign_key.referred_column,))
        for fk in declared
    ), f"{catalog.source}: no {foreign_key}; foreign keys: {declared}"


@then(
    parsers.parse('o banco tem a restrição de unicidade "{unique}"'),
    converters={"unique": TableColumns.parse},
)
def has_unique_constraint(catalog: Catalog, unique: TableColumns) -> None:
    declared = {constraint.columns for constraint in catalog.table(unique.table).unique_constraints}
    assert unique.columns in declared, f"{catalog.source}: {unique.table} has {declared}"


@then(
    parsers.parse('a coluna "{column}" tem o tipo "{data_type}" no catálogo'),
    converters={"column": ColumnRef.parse},
)
def column_has_type(catalog: Catalog, column: ColumnRef, data_type: str) -> None:
    found = catalog.table(column.table).column(column.column)
    assert found.type == data_type, f"{catalog.source}: {column} is {found.type}, not {data_type}"


@then("o esquema do banco coincide com o dos models")
def schema_matches_models(database: DatabaseUnderTest, catalog: Catalog) -> None:
    if isinstance(database, LiveDatabase):
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == [], f"the migrations and the models differ: {differences}"
        return
    expected = Catalog.from_ddl(
        models_ddl(dialect_named("postgresql")), "the models' PostgreSQL DDL"
    )
    for name, table in expected.tables.items():
        assert catalog.table(name) == table, (
            f"{name} differs:\n  migrations: {catalog.table(name)}\n  models:     {table}"
        )
    extra = catalog.tables.keys() - expected.tables.keys() - {"alembic_version"}
    assert not extra, f"the migrations create tables no model maps: {sorted(extra)}"
    print("offline: compared the migrations' and the models' PostgreSQL DDL")
