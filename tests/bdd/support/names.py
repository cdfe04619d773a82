"""The small languages of the feature files: lists of names, `table.column`, foreign keys."""

from __future__ import annotations

import re
from dataclasses import dataclass


def names(text: str) -> tuple[str, ...]:
    """'crm_contacts, crm_deals' -> ('crm_contacts', 'crm_deals')."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class ColumnRef:
    """'crm_deals.contact_id'."""

    table: str
    column: str

    @classmethod
    def parse(cls, text: str) -> ColumnRef:
        table, dot, column = text.strip().partition(".")
        if not (dot and table and column):
            raise ValueError(f"not a table.column reference: {text!r}")
        return cls(table, column)

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class ForeignKeySpec:
    """'crm_deals.contact_id -> crm_contacts.id'."""

    table: str
    column: str
    referred_table: str
    referred_column: str

    @classmethod
    def parse(cls, text: str) -> ForeignKeySpec:
        source, arrow, target = text.partition("->")
        if not arrow:
            raise ValueError(f"not a foreign key 'table.column -> table.column': {text!r}")
        constrained, referred = ColumnRef.parse(source), ColumnRef.parse(target)
        return cls(constrained.table, constrained.column, referred.table, referred.column)

    def __str__(self) -> str:
        return f"{self.table}.{self.column} -> {self.referred_table}.{self.referred_column}"


@dataclass(frozen=True)
class TableColumns:
    """'crm_contacts (source, sender_id)'."""

    table: str
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> TableColumns:
        match = re.fullmatch(r"\s*(\w+)\s*\(([^)]*)\)\s*", text)
        if match is None:
            raise ValueError(f"not 'table (column, ...)': {text!r}")
        return cls(match[1], names(match[2]))
