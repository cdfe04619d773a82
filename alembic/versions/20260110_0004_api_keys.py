"""api keys: crm_api_keys (hashed bearer keys with a scope)

Revision ID: 0004
Revises: 0003
Create Date: 2026-01-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "scope IN ('ingest', 'readwrite')", name=op.f("ck_crm_api_keys_scope_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_crm_api_keys_prefix")),
    )


def downgrade() -> None:
    op.drop_table("crm_api_keys")
