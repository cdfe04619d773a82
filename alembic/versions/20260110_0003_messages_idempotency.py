"""messages and idempotency keys: crm_messages, crm_idempotency_keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-10 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON documents are JSONB on PostgreSQL and JSON text elsewhere.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "crm_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.Column("channel_message_id", sa.String(length=256), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["crm_contacts.id"],
            name=op.f("fk_crm_messages_contact_id_crm_contacts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_messages")),
        sa.UniqueConstraint(
            "source",
            "channel_message_id",
            name=op.f("uq_crm_messages_source_channel_message_id"),
        ),
    )
    op.create_index(
        "ix_crm_messages_contact_id_received_at", "crm_messages", ["contact_id", "received_at"]
    )
    op.create_table(
        "crm_idempotency_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", JSON_DOCUMENT, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('processing', 'completed')", name=op.f("ck_crm_idempotency_keys_state_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_idempotency_keys")),
        sa.UniqueConstraint("principal", "key", name=op.f("uq_crm_idempotency_keys_principal_key")),
    )


def downgrade() -> None:
    op.drop_table("crm_idempotency_keys")
    op.drop_index("ix_crm_messages_contact_id_received_at", table_name="crm_messages")
    op.drop_table("crm_messages")
