"""The offline PostgreSQL catalog is only evidence if it reads the DDL as PostgreSQL does.

Replaying DDL is checked on small scripts, and, when a server is available, against the
catalog PostgreSQL itself reports after the same migrations or the same models' tables.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.bdd.support.catalog import (
    Catalog,
    Column,
    ForeignKey,
    Index,
    UniqueConstraint,
    UnreadableDdlError,
)
from tests.bdd.support.databases import (
    Backend,
    DatabaseUnderTest,
    LiveDatabase,
    OfflinePostgres,
)

DDL = """
BEGIN;
-- Running upgrade  -> 0001
CREATE TABLE parents (
    id UUID NOT NULL,
    code VARCHAR(8) NOT NULL,
    CONSTRAINT pk_parents PRIMARY KEY (id),
    CONSTRAINT uq_parents_code UNIQUE (code)
);
CREATE TABLE children (
    id INTEGER PRIMARY KEY,
    parent_id UUID,
    price NUMERIC(14, 2) DEFAULT 0 NOT NULL,
    seen_at TIMESTAMP WITH TIME ZONE,
    doc JSONB NOT NULL,
    CONSTRAINT ck_children_price CHECK (price >= 0),
    CONSTRAINT fk_children_parent_id_parents FOREIGN KEY(parent_id)
        REFERENCES parents (id) ON DELETE CASCADE
);
CREATE INDEX ix_children_parent_id ON children (parent_id);
INSERT INTO alembic_version (version_num) VALUES ('0001');
COMMIT;
"""


def test_create_statements_become_tables_columns_keys_and_indexes() -> None:
    catalog = Catalog.from_ddl(DDL, "test")

    children = catalog.table("children")
    assert children.columns == {
        "id": Column("id", "integer", nullable=False),
        "parent_id": Column("parent_id", "uuid", nullable=True),
        "price": Column("price", "numeric", nullable=False),
        "seen_at": Column("seen_at", "timestamp with time zone", nullable=True),
        "doc": Column("doc", "jsonb", nullable=False),
    }
    assert children.primary_key == ("id",)
    assert children.foreign_keys == {
        ForeignKey("fk_children_parent_id_parents", ("parent_id",), "parents", ("id",), "CASCADE")
    }
    assert children.indexes == {Index("ix_children_parent_id", ("parent_id",), unique=False)}
    parents = catalog.table("parents")
    assert parents.columns["code"].type == "character varying"
    assert parents.unique_constraints == {UniqueConstraint("uq_parents_code", ("code",))}


def test_drop_statements_remove_what_they_name() -> None:
    catalog = Catalog.from_ddl(DDL, "test").apply(
        "DROP INDEX ix_children_parent_id;\nDROP TABLE children;\n"
    )

    assert set(catalog.tables) == {"parents"}
    assert catalog.table("parents").indexes == frozenset()


def test_columns_can_be_added_and_dropped() -> None:
    catalog = Catalog.from_ddl(DDL, "test").apply(
        "ALTER TABLE parents ADD COLUMN erased_at TIMESTAMP WITH TIME ZONE;"
    )
    column = catalog.table("parents").column("erased_at")
    assert (column.type, column.nullable) == ("timestamp with time zone", True)
    dropped = catalog.apply("ALTER TABLE parents DROP COLUMN erased_at;")
    assert "erased_at" not in dropped.table("parents").columns


def test_a_statement_it_cannot_replay_is_an_error_not_a_silence() -> None:
    with pytest.raises(UnreadableDdlError, match="ALTER TABLE"):
        Catalog.from_ddl(DDL, "test").apply("ALTER TABLE parents RENAME TO elders;")


def _migrated(database: DatabaseUnderTest) -> None:
    database.alembic("upgrade", "head")


def _model_tables(database: DatabaseUnderTest) -> None:
    database.create_model_tables()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "build",
    [pytest.param(_migrated, id="alembic-upgrade-head"), pytest.param(_model_tables, id="models")],
)
def test_the_offline_catalog_is_the_catalog_postgresql_reports(
    build: Callable[[DatabaseUnderTest], None],
    postgres_url: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = LiveDatabase(Backend.POSTGRESQL, postgres_url, monkeypatch, request)
    offline = OfflinePostgres(monkeypatch)

    build(live)
    build(offline)

    assert offline.catalog().tables == live.catalog().tables
