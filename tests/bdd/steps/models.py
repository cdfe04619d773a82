"""Steps about the ORM models' metadata: tables, columns, keys and column types (AC-01, 02, 05)."""

from __future__ import annotations

import sqlalchemy
from pytest_bdd import given, parsers, then
from sqlalchemy import Column, Table, UniqueConstraint
from sqlalchemy import inspect as inspect_mapped

from crm_core import models
from crm_core.models import Base
from tests.bdd.support.databases import dialect_named
from tests.bdd.support.names import ColumnRef, ForeignKeySpec, names

REQUIRED = {"sim": True, "não": False}


def table_of(model: type[Base]) -> Table:
    table = inspect_mapped(model).local_table
    assert isinstance(table, Table), f"{model.__name__} is not mapped to a Table: {table!r}"
    return table


@given(parsers.parse('o model "{name}" do crm_core'), target_fixture="model")
def the_model(name: str) -> type[Base]:
    model = getattr(models, name, None)
    assert isinstance(model, type), f"crm_core.models exports no model {name!r}"
    assert issubclass(model, Base), f"crm_core.models.{name} is not a model of Base"
    return model


@then(parsers.parse('ele mapeia a tabela "{table_name}"'))
def maps_table(model: type[Base], table_name: str) -> None:
    table = table_of(model)
    assert table.name == table_name
    assert Base.metadata.tables.get(table_name) is table, f"{table_name} not on Base.metadata"


@then("a tabela tem as colunas:")
def has_columns(model: type[Base], datatable: list[list[str]]) -> None:
    table = table_of(model)
    header, *rows = datatable
    assert header == ["coluna", "obrigatória"], header
    for name, required in rows:
        assert name in table.c, f"{table.name} has no column {name!r}: {list(table.c.keys())}"
        expected = REQUIRED[required]
        assert table.c[name].nullable is not expected, (
            f"{table.name}.{name} should be {'NOT NULL' if expected else 'nullable'}"
        )


@then(parsers.parse('a chave primária da tabela é "{columns}"'), converters={"columns": names})
def primary_key_is(model: type[Base], columns: tuple[str, ...]) -> None:
    table = table_of(model)
    assert tuple(column.name for column in table.primary_key.columns) == columns


@then(
    parsers.parse('a tabela tem uma restrição de unicidade em "{columns}"'),
    converters={"columns": names},
)
def has_unique_constraint(model: type[Base], columns: tuple[str, ...]) -> None:
    table = table_of(model)
    uniques = [
        tuple(column.name for column in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    assert columns in uniques, f"{table.name}: unique constraints are {uniques}"


@then(
    parsers.parse('a tabela tem a chave estrangeira "{foreign_key}"'),
    converters={"foreign_key": ForeignKeySpec.parse},
)
def has_foreign_key(model: type[Base], foreign_key: ForeignKeySpec) -> None:
    table = table_of(model)
    assert table.name == foreign_key.table
    declared = [(fk.parent.name, fk.column.table.name, fk.column.name) for fk in table.foreign_keys]
    wanted = (foreign_key.column, foreign_key.referred_table, foreign_key.referred_column)
    assert wanted in declared, f"{table.name}: foreign keys are {declared}, not {foreign_key}"


@then(
    parsers.parse('as colunas "{columns}" guardam data e hora com fuso horário'),
    converters={"columns": names},
)
def timestamps_are_timezone_aware(model: type[Base], columns: tuple[str, ...]) -> None:
    table = table_of(model)
    for name in columns:
        column_type = table.c[name].type
        assert getattr(column_type, "timezone", False) is True, (
            f"{table.name}.{name}: {column_type!r}"
        )
        compiled = column_type.compile(dialect=dialect_named("postgresql"))
        assert compiled == "TIMESTAMP WITH TIME ZONE", f"{table.name}.{name} is {compiled}"


@given(
    parsers.parse('as colunas "{columns}" dos models'),
    converters={"columns": names},
    target_fixture="model_columns",
)
def model_columns(columns: tuple[str, ...]) -> list[Column[object]]:
    found = []
    for reference in map(ColumnRef.parse, columns):
        table = Base.metadata.tables.get(reference.table)
        assert table is not None, f"no model maps the table {reference.table!r}"
        assert reference.column in table.c, f"{reference} is not a column of the models"
        found.append(table.c[reference.column])
    return found


@then(parsers.parse('o tipo genérico de cada coluna é "{type_name}"'))
def generic_type_is(model_columns: list[Column[object]], type_name: str) -> None:
    generic = getattr(sqlalchemy.types, type_name)
    for column in model_columns:
        assert type(column.type) is generic, f"{column}: {type(column.type).__name__}"


@then(parsers.parse('cada coluna compila como "{compiled}" no dialeto "{dialect}"'))
def compiles_as(model_columns: list[Column[object]], compiled: str, dialect: str) -> None:
    for column in model_columns:
        rendered = column.type.compile(dialect=dialect_named(dialect))
        assert rendered == compiled, f"{column} compiles as {rendered} on {dialect}"
