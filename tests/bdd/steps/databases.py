"""Steps that open a database and check what it enforces on the models' tables (AC-01, AC-02).

Live databases get real writes (with Core, on the models' tables). Offline PostgreSQL has no
rows to write: those steps check, in the DDL the models render for PostgreSQL, the constraint
that makes PostgreSQL refuse the write, and print that they did so.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pytest_bdd import given, parsers, then
from sqlalchemy import select

from crm_core.models import Base
from tests.bdd.support.databases import (
    Backend,
    DatabaseUnderTest,
    LiveDatabase,
    insert_contact,
    insert_deal,
    open_database,
    refusal,
)

SOURCE = "whatsapp"
SENDER_ID = "5511999999999"


@given(
    parsers.parse("um banco {backend:w} vazio"),
    converters={"backend": Backend},
    target_fixture="database",
)
def empty_database(
    backend: Backend, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> DatabaseUnderTest:
    return open_database(backend, request, monkeypatch)


@given(
    parsers.parse("um banco {backend:w} com as tabelas criadas a partir dos models"),
    converters={"backend": Backend},
    target_fixture="database",
)
def database_with_model_tables(
    backend: Backend, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> DatabaseUnderTest:
    database = open_database(backend, request, monkeypatch)
    database.create_model_tables()
    return database


@then("o banco recusa um segundo contato com a mesma origem e o mesmo remetente")
def refuses_duplicate_contact(database: DatabaseUnderTest) -> None:
    if not isinstance(database, LiveDatabase):
        uniques = database.catalog().table("crm_contacts").unique_constraints
        assert ("source", "sender_id") in {unique.columns for unique in uniques}, uniques
        print("offline: checked UNIQUE (source, sender_id) in the models' PostgreSQL DDL")
        return
    engine = database.engine
    first = refusal(insert_contact, engine, SOURCE, SENDER_ID)
    assert first is None, f"the first contact was refused ({first})"
    again = refusal(insert_contact, engine, SOURCE, SENDER_ID)
    assert again == "unique", f"a second ({SOURCE}, {SENDER_ID}) contact: {again or 'accepted'}"
    # Only the pair is unique: the same sender on another channel, or another sender, is fine.
    for source, sender_id in (("instagram", SENDER_ID), (SOURCE, "5511888888888")):
        other = refusal(insert_contact, engine, source, sender_id)
        assert other is None, f"({source}, {sender_id}) was refused ({other})"


@then("o banco devolve as datas de criação e de atualização de um contato com fuso horário")
def returns_timezone_aware_timestamps(database: DatabaseUnderTest) -> None:
    if not isinstance(database, LiveDatabase):
        columns = database.catalog().table("crm_contacts").columns
        for name in ("created_at", "updated_at"):
            assert columns[name].type == "timestamp with time zone", columns[name]
        print("offline: checked TIMESTAMP WITH TIME ZONE in the models' PostgreSQL DDL")
        return
    before = datetime.now(UTC)
    contact_id = insert_contact(database.engine, SOURCE, f"tz-{uuid.uuid4().hex}")
    contacts = Base.metadata.tables["crm_contacts"]
    query = select(contacts.c.created_at, contacts.c.updated_at).where(contacts.c.id == contact_id)
    with database.engine.connect() as connection:
        row = connection.execute(query).one()
    for value in row:
        assert isinstance(value, datetime), value
        assert value.utcoffset() == timedelta(0), f"{value!r} is not a UTC timestamp"
        assert before - timedelta(seconds=5) <= value <= datetime.now(UTC) + timedelta(seconds=5)


@then("o banco aceita um negócio de um contato existente")
def accepts_deal_of_existing_contact(database: DatabaseUnderTest) -> None:
    if not isinstance(database, LiveDatabase):
        catalog = database.catalog()
        deal_columns = catalog.table("crm_deals").columns
        assert {"id", "contact_id", "title", "pipeline", "stage"} <= deal_columns.keys()
        assert catalog.table("crm_contacts").primary_key == ("id",)
        print("offline: checked crm_contacts(id) and crm_deals in the models' PostgreSQL DDL")
        return
    contact_id = insert_contact(database.engine, SOURCE, SENDER_ID)
    outcome = refusal(insert_deal, database.engine, contact_id)
    assert outcome is None, f"a deal of an existing contact was refused ({outcome})"


@then("o banco recusa um negócio de um contato que não existe")
def refuses_deal_of_missing_contact(database: DatabaseUnderTest) -> None:
    if not isinstance(database, LiveDatabase):
        foreign_keys = database.catalog().table("crm_deals").foreign_keys
        assert any(fk.links(("contact_id",), "crm_contacts", ("id",)) for fk in foreign_keys), (
            f"no FOREIGN KEY (contact_id) REFERENCES crm_contacts (id): {foreign_keys}"
        )
        print("offline: checked the crm_deals -> crm_contacts FOREIGN KEY in the PostgreSQL DDL")
        return
    outcome = refusal(insert_deal, database.engine, uuid.uuid4())
    assert outcome == "foreign_key", f"a deal of a missing contact: {outcome or 'accepted'}"
