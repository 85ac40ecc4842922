"""Deployments: indexes for the latest (and latest successful) deployment per instance.

The overview page and `/api/instances` show, per instance, its latest
deployment and its latest successful one. They loaded every deploy row and
kept the last per key in Python: with 20,000 deployments, the whole history
on every view. Grouped `max(id)` queries read these covering indexes instead.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deployments_latest", "deployments", ["mode", "key", "id"])
    op.create_index("ix_deployments_latest_status", "deployments", ["mode", "status", "key", "id"])


def downgrade() -> None:
    op.drop_index("ix_deployments_latest_status", "deployments")
    op.drop_index("ix_deployments_latest", "deployments")
