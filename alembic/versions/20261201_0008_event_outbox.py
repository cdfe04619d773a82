"""event outbox: crm_events, crm_relay_positions

OS 007: each change that matters (a message received, a status, a reaction, edit or revoke, a
contact created or erased, a deal created or moved) is written as an event in the transaction
that makes it (crm_core.services.outbox); `GET /events` serves them in commit order and the
relay publishes them to NATS JetStream, keeping its position in crm_relay_positions. The events
carry the order key (seq, txid) of crm_core.models.base.Sequenced, made as revision 0006 made
it, with an index on (txid, seq) for the feed and one on contact_id for erasure. API keys may
now have the scope `read` (the feed's consumers, and any reader that must not write).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0008"
down_revision: str | None = "0007"
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


SCOPES_BEFORE = "scope IN ('ingest', 'readwrite')"
SCOPES_AFTER = "scope IN ('ingest', 'read', 'readwrite')"


def _scopes(condition: str) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table (Alembic's "batch" recipe).
    with op.batch_alter_table("crm_api_keys") as batch:
        batch.drop_constraint(op.f("ck_crm_api_keys_scope_known"), type_="check")
        batch.create_check_constraint("scope_known", condition)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    _scopes(SCOPES_AFTER)
    op.create_table(
        "crm_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_id", sa.Uuid(), nullable=True),
        sa.Column("data", sa.JSON().with_variant(pg.JSONB(), "postgresql"), nullable=False),
        *_order_key(postgresql),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_events")),
    )
    op.create_index("ix_crm_events_seq", "crm_events", ["seq"], unique=True)
    op.create_index("ix_crm_events_txid_seq", "crm_events", ["txid", "seq"])
    op.create_index("ix_crm_events_contact_id", "crm_events", ["contact_id"])
    op.create_table(
        "crm_relay_positions",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_crm_relay_positions")),
    )


def downgrade() -> None:
    if not op.get_context().as_sql:  # offline (--sql), the script cannot look at the rows
        readers = op.get_bind().execute(
            sa.text("SELECT count(*) FROM crm_api_keys WHERE scope = 'read'")
        )
        if readers.scalar_one():
            raise RuntimeError(
                "revision 0007 has no `read` API keys: delete the read keys "
                "(DELETE FROM crm_api_keys WHERE scope = 'read') before downgrading"
            )
    _scopes(SCOPES_BEFORE)
    op.drop_table("crm_relay_positions")
    op.drop_index("ix_crm_events_contact_id", table_name="crm_events")
    op.drop_index("ix_crm_events_txid_seq", table_name="crm_events")
    op.drop_index("ix_crm_events_seq", table_name="crm_events")
    op.drop_table("crm_events")
