"""Leases: when the current holder took a lease (`taken_at`).

The `schedule` lease names the one process that runs the backup scheduler;
the pages and `/metrics` show since when it holds it. A renewal keeps the
time, a takeover sets it. Rows from before have none (NULL). SQLite adds a
nullable column in place, so no batch mode.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leases", sa.Column("taken_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("taken_at")
