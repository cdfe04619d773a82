"""contacts and deals: crm_contacts, crm_deals and the deal -> contact foreign key

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-03 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON documents are JSONB on PostgreSQL and JSON text elsewhere.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "crm_contacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("attributes", JSON_DOCUMENT, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_contacts")),
        sa.UniqueConstraint("source", "sender_id", name=op.f("uq_crm_contacts_source_sender_id")),
    )
    op.create_table(
        "crm_deals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("pipeline", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="BRL", nullable=False),
        sa.Column("attributes", JSON_DOCUMENT, nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "amount IS NULL OR amount >= 0", name=op.f("ck_crm_deals_amount_not_negative")
        ),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_crm_deals_currency_iso_4217")),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_deals_contact_id_crm_contacts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_deals")),
    )
    op.create_index(op.f("ix_crm_deals_contact_id"), "crm_deals", ["contact_id"])
    op.create_index(op.f("ix_crm_deals_pipeline"), "crm_deals", ["pipeline"])


def downgrade() -> None:
    op.drop_index(op.f("ix_crm_deals_pipeline"), table_name="crm_deals")
    op.drop_index(op.f("ix_crm_deals_contact_id"), table_name="crm_deals")
    op.drop_table("crm_deals")
    op.drop_table("crm_contacts")
