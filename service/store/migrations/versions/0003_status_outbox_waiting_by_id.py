"""Status outbox: the waiting rows' partial index ordered by id.

The sender reads the oldest due rows (`ORDER BY id`) and, per round, gives up
the replaced ones among the oldest 500. Keyed by `next_attempt_at` (0002),
the index found every due row and sorted them: with 30,000 statuses queued
during a flood of pushes, 15 ms under the write lock per round. Keyed by
`(id, next_attempt_at)` it is read in order and stops at the limit (0.3 ms).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _waiting_index(columns: list[str]) -> None:
    op.drop_index("ix_status_outbox_waiting", "status_outbox")
    op.create_index(
        "ix_status_outbox_waiting",
        "status_outbox",
        columns,
        sqlite_where=sa.text("sent_at IS NULL AND given_up = 0"),
        postgresql_where=sa.text("sent_at IS NULL AND given_up = false"),
    )


def upgrade() -> None:
    _waiting_index(["id", "next_attempt_at"])


def downgrade() -> None:
    _waiting_index(["next_attempt_at"])
