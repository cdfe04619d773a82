"""baseline: the empty schema every later revision builds on

Revision ID: 0001
Revises:
Create Date: 2026-01-03 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to create: this revision marks a database as managed by these migrations."""


def downgrade() -> None:
    """Nothing to drop."""
