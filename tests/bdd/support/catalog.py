"""A database's catalog as the scenarios see it: tables, columns, keys, constraints, indexes.

It is read from a live database (`Catalog.reflect`) or, for PostgreSQL without a server, from
the DDL that `alembic upgrade head --sql` or the models render for the postgresql dialect
(`Catalog.from_ddl`). Column types are named as the database's own catalog names them:
`information_schema.columns.data_type` on PostgreSQL (so the offline DDL is translated to those
names), the declared type on SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, Engine, inspect, text


class UnreadableDdlError(Exception):
    """The offline DDL holds a statement this catalog cannot replay."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool


@dataclass(frozen=True)
class ForeignKey:
    name: str | None
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]
    ondelete: str | None = None

    def links(self, columns: tuple[str, ...], table: str, referred: tuple[str, ...]) -> bool:
        return (self.columns, self.referred_table, self.referred_columns) == (
            columns,
            table,
            referred,
        )


@dataclass(frozen=True)
class UniqueConstraint:
    name: str | None
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    foreign_keys: frozenset[ForeignKey] = frozenset()
    unique_constraints: frozenset[UniqueConstraint] = frozenset()
    indexes: frozenset[Index] = frozenset()

    def column(self, name: str) -> Column:
        if name not in self.columns:
            raise AssertionError(f"{self.name} has no column {name!r}: {sorted(self.columns)}")
        return self.columns[name]


@dataclass(frozen=True)
class Catalog:
    """The tables of one database, and where they were read from."""

    source: str
    tables: dict[str, Table] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        if name not in self.tables:
            raise AssertionError(f"{self.source}: no table {name!r}; tables: {sorted(self.tables)}")
        return self.tables[name]

    @classmethod
    def reflect(cls, engine: Engine) -> Catalog:
        """Read the catalog of a live database."""
        with engine.connect() as connection:
            inspector = inspect(connection)
            tables = {}
            for name in inspector.get_table_names():
                columns = _live_columns(connection, name)
                tables[name] = Table(
                    name=name,
                    columns={column.name: column for column in columns},
                    primary_key=tuple(
                        inspector.get_pk_constraint(name)["constrained_columns"] or ()
                    ),
                    foreign_keys=frozenset(
                        ForeignKey(
                            name=fk["name"],
                            columns=tuple(fk["constrained_columns"]),
                            referred_table=fk["referred_table"],
                            referred_columns=tuple(fk["referred_columns"]),
                            ondelete=_upper(fk.get("options", {}).get("ondelete")),
                        )
                        for fk in inspector.get_foreign_keys(name)
                    ),
                    unique_constraints=frozenset(
                        UniqueConstraint(uq["name"], tuple(uq["column_names"]))
                        for uq in inspector.get_unique_constraints(name)
                    ),
                    indexes=frozenset(
                        Index(
                            str(ix["name"]),
                            tuple(str(column) for column in ix["column_names"]),
                            bool(ix["unique"]),
                        )
                        for ix in inspector.get_indexes(name)
                        # PostgreSQL backs each UNIQUE constraint with an index of its name.
                        if not ix.get("duplicates_constraint")
                    ),
                )
        return cls(f"live {engine.dialect.name} catalog", tables)

    @classmethod
    def from_ddl(cls, ddl: str, source: str) -> Catalog:
        """Replay PostgreSQL DDL (CREATE/DROP TABLE, CREATE/DROP INDEX, ALTER TABLE ADD/DROP
        COLUMN and ALTER COLUMN) on an empty catalog."""
        return cls(source).apply(ddl)

    def apply(self, ddl: str) -> Catalog:
        """The catalog after running `ddl`; anything else that changes the schema is refused."""
        tables = dict(self.tables)
        for statement in _statements(ddl):
            words = statement.split()
            head = " ".join(words[:2]).upper()
            if head == "CREATE TABLE":
                table = _parse_create_table(statement)
                tables[table.name] = table
            elif head == "DROP TABLE":
                del tables[_identifier(words[2])]
            elif head in ("CREATE INDEX", "CREATE UNIQUE"):
                table_name, index = _parse_create_index(statement)
                table = tables[table_name]
                tables[table_name] = replace(table, indexes=table.indexes | {index})
            elif head == "DROP INDEX":
                name = _identifier(words[2])
                tables = {
                    key: replace(t, indexes=frozenset(i for i in t.indexes if i.name != name))
                    for key, t in tables.items()
                }
            elif head == "ALTER TABLE" and (column := _ALTER_COLUMN.match(statement)):
                table = tables[_identifier(column["table"])]
                columns = dict(table.columns)
                if column["action"].upper() == "ADD":
                    added, _ = _parse_column(column["rest"])
                    columns[added.name] = added
                else:
                    del columns[_identifier(column["rest"].split()[0])]
                tables[table.name] = replace(table, columns=columns)
            elif head == "ALTER TABLE" and (constraint := _ALTER_CONSTRAINT.match(statement)):
                tables = _alter_constraint(tables, constraint)
            elif head == "ALTER TABLE" and _ALTER_COLUMNS.match(statement):
                table = tables[_identifier(words[2])]
                tables[table.name] = _alter_columns(table, statement)
            elif words[0].upper() in _NOT_SCHEMA_CHANGES:
                continue
            else:
                raise UnreadableDdlError(f"the offline catalog cannot replay: {statement!r}")
        return Catalog(self.source, tables)


_ALTER_CONSTRAINT = re.compile(
    r"ALTER TABLE (?P<table>\S+) (?P<action>ADD|DROP) CONSTRAINT (?P<name>\S+)(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)


def _alter_constraint(tables: dict[str, Table], constraint: re.Match[str]) -> dict[str, Table]:
    """A constraint dropped (a unique constraint or foreign key the catalog holds, by name) or a
    CHECK constraint added; the catalog holds no CHECK constraints, so adding or dropping one
    leaves it as it is. Any other constraint added is not replayed."""
    table = tables[_identifier(constraint["table"])]
    name = _identifier(constraint["name"])
    if constraint["action"].upper() == "DROP":
        tables[table.name] = replace(
            table,
            unique_constraints=frozenset(u for u in table.unique_constraints if u.name != name),
            foreign_keys=frozenset(f for f in table.foreign_keys if f.name != name),
        )
    elif not constraint["rest"].strip().upper().startswith("CHECK"):
        raise UnreadableDdlError(f"the offline catalog cannot replay: {constraint.group(0)!r}")
    return tables


# Statements that change rows or transactions, not the schema (alembic's version bookkeeping,
# a sequence moved past the rows a migration numbered).
_NOT_SCHEMA_CHANGES = {"BEGIN", "COMMIT", "INSERT", "UPDATE", "DELETE", "SELECT"}

# PostgreSQL's information_schema names for the types the DDL spells differently.
_DATA_TYPE_NAMES = {
    "varchar": "character varying",
    "char": "character",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
    "int": "integer",
    "float": "double precision",
    "bool": "boolean",
}

_COLUMN_CLAUSE_KEYWORDS = {
    "DEFAULT",
    "NOT",
    "NULL",
    "PRIMARY",
    "REFERENCES",
    "UNIQUE",
    "CHECK",
    "CONSTRAINT",
    "COLLATE",
    "GENERATED",
}


def _live_columns(connection: Connection, table: str) -> list[Column]:
    """Columns with the type the database's own catalog gives them."""
    if connection.dialect.name == "postgresql":
        query = text(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = :table "
            "ORDER BY ordinal_position"
        )
    else:
        query = text('SELECT name, lower(type), NOT "notnull" FROM pragma_table_info(:table)')
    rows = connection.execute(query, {"table": table})
    return [Column(str(name), str(data_type), bool(nullable)) for name, data_type, nullable in rows]


def _upper(value: object) -> str | None:
    return str(value).upper() if value else None


def _statements(ddl: str) -> Iterator[str]:
    lines = [line for line in ddl.splitlines() if not line.lstrip().startswith("--")]
    for chunk in re.split(r";[ \t]*(?:\n|$)", "\n".join(lines)):
        statement = " ".join(chunk.split())
        if statement:
            yield statement


def _identifier(word: str) -> str:
    return word.strip().strip('"')


def _names(group: str) -> tuple[str, ...]:
    return tuple(_identifier(name) for name in group.split(","))


def _split_top_level(body: str) -> list[str]:
    """Split a parenthesised list on the commas that are not inside parentheses."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in body:
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _data_type(spelled: str) -> str:
    base = re.sub(r"\(.*?\)", "", spelled).strip().lower()
    return _DATA_TYPE_NAMES.get(base, base)


_CREATE_TABLE = re.compile(r"CREATE TABLE (?P<name>\S+) \((?P<body>.*)\)$", re.IGNORECASE)
_CONSTRAINT_NAME = re.compile(r"CONSTRAINT (?P<name>\S+) (?P<rest>.*)$", re.IGNORECASE)
_PRIMARY_KEY = re.compile(r"PRIMARY KEY ?\((?P<columns>[^)]*)\)", re.IGNORECASE)
_UNIQUE = re.compile(r"UNIQUE ?\((?P<columns>[^)]*)\)", re.IGNORECASE)
_FOREIGN_KEY = re.compile(
    r"FOREIGN KEY ?\((?P<columns>[^)]*)\) REFERENCES (?P<table>\S+) ?\((?P<referred>[^)]*)\)"
    r"(?: ON DELETE (?P<ondelete>CASCADE|RESTRICT|SET NULL|SET DEFAULT|NO ACTION))?",
    re.IGNORECASE,
)
_ALTER_COLUMN = re.compile(
    r"ALTER TABLE (?P<table>\S+) (?P<action>ADD|DROP) COLUMN (?P<rest>.+)$", re.IGNORECASE
)
_ALTER_COLUMNS = re.compile(r"ALTER TABLE \S+ ALTER COLUMN ", re.IGNORECASE)
_COLUMN_ACTION = re.compile(
    r"ALTER COLUMN (?P<column>\S+) (?P<action>SET NOT NULL|DROP NOT NULL|ADD GENERATED "
    r"(?:ALWAYS|BY DEFAULT) AS IDENTITY|SET DEFAULT .+|DROP DEFAULT)$",
    re.IGNORECASE,
)
_CREATE_INDEX = re.compile(
    r"CREATE (?P<unique>UNIQUE )?INDEX (?P<name>\S+) ON (?P<table>\S+) ?\((?P<columns>[^)]*)\)$",
    re.IGNORECASE,
)


def _parse_create_table(statement: str) -> Table:
    match = _CREATE_TABLE.match(statement)
    if match is None:
        raise UnreadableDdlError(f"not a CREATE TABLE this catalog understands: {statement!r}")
    name = _identifier(match["name"])
    columns: dict[str, Column] = {}
    primary_key: tuple[str, ...] = ()
    foreign_keys: set[ForeignKey] = set()
    uniques: set[UniqueConstraint] = set()
    for item in _split_top_level(match["body"]):
        constraint_name: str | None = None
        named = _CONSTRAINT_NAME.match(item)
        clause = item
        if named:
            constraint_name, clause = _identifier(named["name"]), named["rest"]
        keyword = clause.split()[0].upper()
        if keyword == "PRIMARY" and (pk := _PRIMARY_KEY.match(clause)):
            primary_key = _names(pk["columns"])
        elif keyword == "UNIQUE" and (uq := _UNIQUE.match(clause)):
            uniques.add(UniqueConstraint(constraint_name, _names(uq["columns"])))
        elif keyword == "FOREIGN" and (fk := _FOREIGN_KEY.match(clause)):
            foreign_keys.add(
                ForeignKey(
                    name=constraint_name,
                    columns=_names(fk["columns"]),
                    referred_table=_identifier(fk["table"]),
                    referred_columns=_names(fk["referred"]),
                    ondelete=_upper(fk["ondelete"]),
                )
            )
        elif keyword == "CHECK":
            continue
        elif named:
            raise UnreadableDdlError(f"{name}: unknown table constraint {item!r}")
        else:
            column, inline_primary_key = _parse_column(item)
            columns[column.name] = column
            if inline_primary_key:
                primary_key = (column.name,)
    return Table(
        name=name,
        columns=columns,
        primary_key=primary_key,
        foreign_keys=frozenset(foreign_keys),
        unique_constraints=frozenset(uniques),
    )


def _parse_column(item: str) -> tuple[Column, bool]:
    words = item.split()
    type_words = []
    for word in words[1:]:
        if word.upper() in _COLUMN_CLAUSE_KEYWORDS:
            break
        type_words.append(word)
    clauses = " ".join(words[1 + len(type_words) :]).upper()
    inline_primary_key = "PRIMARY KEY" in clauses
    identity = "GENERATED" in clauses and "AS IDENTITY" in clauses
    nullable = "NOT NULL" not in clauses and not inline_primary_key and not identity
    return Column(_identifier(words[0]), _data_type(" ".join(type_words)), nullable), (
        inline_primary_key
    )


def _alter_columns(table: Table, statement: str) -> Table:
    """`ALTER TABLE t ALTER COLUMN c <action>, ...`: what it changes of the columns (an identity
    column is NOT NULL; a default changes nothing this catalog holds)."""
    actions = _split_top_level(statement.split(None, 3)[3])
    columns = dict(table.columns)
    for action in actions:
        match = _COLUMN_ACTION.match(action)
        if match is None:
            raise UnreadableDdlError(f"{table.name}: unknown ALTER COLUMN action {action!r}")
        name, verb = _identifier(match["column"]), match["action"].upper()
        if verb.startswith(("SET NOT NULL", "ADD GENERATED")):
            columns[name] = replace(columns[name], nullable=False)
        elif verb.startswith("DROP NOT NULL"):
            columns[name] = replace(columns[name], nullable=True)
    return replace(table, columns=columns)


def _parse_create_index(statement: str) -> tuple[str, Index]:
    match = _CREATE_INDEX.match(statement)
    if match is None:
        raise UnreadableDdlError(f"not a CREATE INDEX this catalog understands: {statement!r}")
    index = Index(_identifier(match["name"]), _names(match["columns"]), bool(match["unique"]))
    return _identifier(match["table"]), index
