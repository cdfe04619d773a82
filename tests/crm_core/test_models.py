"""The models against a migrated database of each kind: constraints hold, timestamps are UTC."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from crm_core.models import Base, Contact, Deal
from tests.conftest import REPO_ROOT


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on a database migrated to head (the migrations, not create_all)."""
    config = AlembicConfig(str(REPO_ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session


def _contact(session: Session, sender_id: str = "5511999999999") -> Contact:
    contact = Contact(source="whatsapp", sender_id=sender_id, display_name="Maria")
    session.add(contact)
    session.commit()
    return contact


def test_metadata_has_the_two_tables_with_named_constraints() -> None:
    contacts = Base.metadata.tables["crm_contacts"]
    deals = Base.metadata.tables["crm_deals"]
    assert {c.name for c in contacts.constraints if c.name} >= {
        "pk_crm_contacts",
        "uq_crm_contacts_source_sender_id",
    }
    (foreign_key,) = deals.foreign_keys
    assert foreign_key.target_fullname == "crm_contacts.id"
    assert foreign_key.ondelete == "RESTRICT"
    assert foreign_key.constraint is not None
    assert foreign_key.constraint.name == "fk_crm_deals_contact_id_crm_contacts"


def test_a_contact_round_trips_with_utc_timestamps(session: Session) -> None:
    contact = _contact(session)
    contact.attributes = {"linha": "rodobens", "tags": ["consórcio"]}
    session.commit()
    session.expunge_all()
    loaded = session.get(Contact, contact.id)
    assert loaded is not None
    assert loaded.attributes == {"linha": "rodobens", "tags": ["consórcio"]}
    assert loaded.created_at.tzinfo is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert abs(loaded.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_aware_timestamps_are_stored_in_utc(session: Session) -> None:
    contact = _contact(session)
    sao_paulo = timezone(timedelta(hours=-3))
    contact.updated_at = datetime(2026, 1, 3, 9, 0, tzinfo=sao_paulo)
    session.commit()
    session.expunge_all()
    loaded = session.get(Contact, contact.id)
    assert loaded is not None
    assert loaded.updated_at == datetime(2026, 1, 3, 12, 0, tzinfo=UTC)


def test_naive_timestamps_are_refused(session: Session) -> None:
    contact = _contact(session)
    contact.updated_at = datetime(2026, 1, 3, 9, 0)  # naive on purpose
    with pytest.raises(StatementError, match="naive datetime"):
        session.commit()


def test_source_and_sender_id_are_unique_together(session: Session) -> None:
    _contact(session)
    session.add(Contact(source="instagram", sender_id="5511999999999"))
    session.commit()
    session.add(Contact(source="whatsapp", sender_id="5511999999999"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_a_deal_belongs_to_an_existing_contact(session: Session) -> None:
    contact = _contact(session)
    deal = Deal(
        contact_id=contact.id,
        title="Consórcio Rodobens 2026",
        pipeline="rodobens",
        stage="novo",
        amount=Decimal("85000.50"),
    )
    session.add(deal)
    session.commit()
    session.expunge_all()
    loaded = session.scalars(select(Deal)).one()
    assert loaded.amount == Decimal("85000.50")
    assert loaded.currency == "BRL"
    assert loaded.contact.sender_id == "5511999999999"


def test_a_deal_for_an_unknown_contact_is_refused(session: Session) -> None:
    session.add(Deal(contact_id=uuid.uuid4(), title="x", pipeline="juridico", stage="triagem"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_a_contact_with_deals_cannot_be_deleted(session: Session) -> None:
    contact = _contact(session)
    session.add(
        Deal(contact_id=contact.id, title="Ação trabalhista", pipeline="juridico", stage="triagem")
    )
    session.commit()
    session.delete(contact)
    with pytest.raises(IntegrityError):
        session.commit()


@pytest.mark.parametrize(("amount", "currency"), [(Decimal("-1"), "BRL"), (Decimal("10"), "REAL")])
def test_deal_checks_hold_in_the_database(session: Session, amount: Decimal, currency: str) -> None:
    contact = _contact(session)
    session.add(
        Deal(
            contact_id=contact.id,
            title="x",
            pipeline="rodobens",
            stage="novo",
            amount=amount,
            currency=currency,
        )
    )
    with pytest.raises((IntegrityError, StatementError)):
        session.commit()
