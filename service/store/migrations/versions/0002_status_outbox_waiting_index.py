"""Status outbox: a partial index of the waiting rows, one for the newer-status lookup.

The sender's "what is due" scan used `ix_status_outbox_next_attempt_at`
over every row ever queued; it now reads a partial index of the rows still
waiting, and `ix_status_outbox_sent_at` has no reader left. A database made
before migrations by the swapyard that introduced these indexes may already
have them (and lack the old ones), hence the `if_exists`/`if_not_exists`.
Index changes need no table copy on SQLite, so no batch mode.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_status_outbox_next_attempt_at", "status_outbox", if_exists=True)
    op.drop_index("ix_status_outbox_sent_at", "status_outbox", if_exists=True)
    op.create_index(
        "ix_status_outbox_context",
        "status_outbox",
        ["repository", "sha", "context"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_status_outbox_waiting",
        "status_outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text("sent_at IS NULL AND given_up = 0"),
        postgresql_where=sa.text("sent_at IS NULL AND given_up = false"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_status_outbox_waiting", "status_outbox")
    op.drop_index("ix_status_outbox_context", "status_outbox")
    op.create_index("ix_status_outbox_sent_at", "status_outbox", ["sent_at"])
    op.create_index("ix_status_outbox_next_attempt_at", "status_outbox", ["next_attempt_at"])
