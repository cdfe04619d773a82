"""whatsapp statuses and events: crm_message_statuses, crm_message_events

The WhatsApp Cloud API webhook (OS 006) stores each status of a message once per
(wamid, status), and each reaction, edit or revoke of an earlier message once by its own wamid.
Both tables carry the order key (seq, txid) of crm_core.models.base.Sequenced, made as
revision 0006 made it: an identity and the transaction id on PostgreSQL; on SQLite, seq written
by the application and txid 0.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 23:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_TXID = "(pg_current_xact_id()::text)::bigint"


def _order_key(postgresql: bool) -> list[sa.Column[int]]:
    if postgresql:
        seq = sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False)
        txid = sa.Column(
            "txid", sa.BigInteger(), nullable=False, server_default=sa.text(CURRENT_TXID)
        )
    else:
        seq = sa.Column("seq", sa.BigInteger(), nullable=False)
        txid = sa.Column("txid", sa.BigInteger(), nullable=False, server_default=sa.text("0"))
    return [seq, txid]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "crm_message_statuses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("wamid", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(pg.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        *_order_key(postgresql),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_message_statuses")),
        sa.UniqueConstraint("wamid", "status", name=op.f("uq_crm_message_statuses_wamid_status")),
    )
    op.create_index("ix_crm_message_statuses_seq", "crm_message_statuses", ["seq"], unique=True)
    op.create_table(
        "crm_message_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_wamid", sa.String(length=256), nullable=False),
        sa.Column("message_wamid", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(pg.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        *_order_key(postgresql),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_message_events")),
        sa.UniqueConstraint("event_wamid", name=op.f("uq_crm_message_events_event_wamid")),
    )
    op.create_index("ix_crm_message_events_seq", "crm_message_events", ["seq"], unique=True)
    op.create_index("ix_crm_message_events_message_wamid", "crm_message_events", ["message_wamid"])


def downgrade() -> None:
    op.drop_index("ix_crm_message_events_message_wamid", table_name="crm_message_events")
    op.drop_index("ix_crm_message_events_seq", table_name="crm_message_events")
    op.drop_table("crm_message_events")
    op.drop_index("ix_crm_message_statuses_seq", table_name="crm_message_statuses")
    op.drop_table("crm_message_statuses")
