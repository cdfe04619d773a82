"""deal history, audit log, erasure: crm_deal_stage_changes, crm_audit_log, crm_contacts.erased_at

Revision ID: 0005
Revises: 0004
Create Date: 2026-01-10 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON documents are JSONB on PostgreSQL and JSON text elsewhere.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("crm_contacts") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "crm_deal_stage_changes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deal_id", sa.Uuid(), nullable=False),
        sa.Column("from_stage", sa.String(length=64), nullable=True),
        sa.Column("to_stage", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["crm_deals.id"],
            name=op.f("fk_crm_deal_stage_changes_deal_id_crm_deals"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_deal_stage_changes")),
    )
    op.create_index(
        "ix_crm_deal_stage_changes_deal_id_changed_at",
        "crm_deal_stage_changes",
        ["deal_id", "changed_at"],
    )
    op.create_table(
        "crm_audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_audit_log")),
    )
    op.create_index("ix_crm_audit_log_subject_id_at", "crm_audit_log", ["subject_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_crm_audit_log_subject_id_at", table_name="crm_audit_log")
    op.drop_table("crm_audit_log")
    op.drop_index(
        "ix_crm_deal_stage_changes_deal_id_changed_at", table_name="crm_deal_stage_changes"
    )
    op.drop_table("crm_deal_stage_changes")
    # In place (SQLite 3.35+ drops a column without rebuilding the table, which the foreign
    # keys of crm_messages and crm_deals would forbid once contacts have messages or deals).
    op.drop_column("crm_contacts", "erased_at")
