"""Baseline: the schema swapyard made before it had migrations (as of commit 4a55514).

The service's tables (service.store.models), the swap journal's `deploy_*`
(deploy.swap.sqljournal) and the backup journal's `backup_*` (deploy.backup.journal).
A database made before migrations may already hold some of them (the journal
tables appeared only once something was deployed); service.store.migrate has
checked that those match this shape, so only the missing tables are created.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _events() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("repository", sa.String(length=255), nullable=True),
        sa.Column("clone_url", sa.Text(), nullable=True),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("before", sa.String(length=64), nullable=True),
        sa.Column("after", sa.String(length=64), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("forge", "delivery_id", name="uq_event_delivery"),
    )
    op.create_index("ix_events_status", "events", ["status"])


def _leases() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def _status_outbox() -> None:
    op.create_table(
        "status_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("forge", sa.String(length=16), nullable=False),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("context", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=140), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("given_up", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_status_outbox_next_attempt_at", "status_outbox", ["next_attempt_at"])
    op.create_index("ix_status_outbox_sent_at", "status_outbox", ["sent_at"])


def _deployments() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=True),
        sa.Column("instance", sa.String(length=64), nullable=True),
        sa.Column("context", sa.String(length=255), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=True),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "key", name="uq_deployment_event_key"),
    )
    op.create_index("ix_deployments_event_id", "deployments", ["event_id"])
    op.create_index("ix_deployments_key", "deployments", ["key"])
    op.create_index("ix_deployments_status", "deployments", ["status"])


def _steps() -> None:
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("log", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_steps_deployment_id", "steps", ["deployment_id"])


def _deploy_current() -> None:
    op.create_table(
        "deploy_current",
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("instance_id", sa.String(length=200), nullable=False),
        sa.Column("volume_id", sa.String(length=200), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=100), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project", "name"),
    )


def _deploy_swaps() -> None:
    op.create_table(
        "deploy_swaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=100), nullable=False),
        sa.Column("volume_id", sa.String(length=200), nullable=False),
        sa.Column("old_instance", sa.String(length=200), nullable=True),
        sa.Column("new_instance", sa.String(length=200), nullable=True),
        sa.Column("old_commit", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deploy_swaps_state", "deploy_swaps", ["state"])


def _deploy_locks() -> None:
    op.create_table(
        "deploy_locks",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("swap_id", sa.Integer(), nullable=True),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("acquired", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["swap_id"], ["deploy_swaps.id"]),
        sa.PrimaryKeyConstraint("key"),
    )


def _deploy_steps() -> None:
    op.create_table(
        "deploy_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("swap_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["swap_id"], ["deploy_swaps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deploy_steps_swap_id", "deploy_steps", ["swap_id"])


def _backup_alerts() -> None:
    op.create_table(
        "backup_alerts",
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project", "name", "kind"),
    )


def _backup_runs() -> None:
    op.create_table(
        "backup_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("instance_id", sa.String(length=200), nullable=True),
        sa.Column("volume_id", sa.String(length=200), nullable=True),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("repository", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("snapshot_id", sa.String(length=80), nullable=True),
        sa.Column("files", sa.BigInteger(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("window", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_backup_runs_name", "backup_runs", ["name"])
    op.create_index("ix_backup_runs_project", "backup_runs", ["project"])
    op.create_index("ix_backup_runs_state", "backup_runs", ["state"])


def _backup_steps() -> None:
    op.create_table(
        "backup_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=False),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["backup_runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_backup_steps_run_id", "backup_steps", ["run_id"])


# Each table with its indexes, a referenced table before the tables that refer to it.
TABLES: dict[str, Callable[[], None]] = {
    "events": _events,
    "leases": _leases,
    "status_outbox": _status_outbox,
    "deployments": _deployments,
    "steps": _steps,
    "deploy_current": _deploy_current,
    "deploy_swaps": _deploy_swaps,
    "deploy_locks": _deploy_locks,
    "deploy_steps": _deploy_steps,
    "backup_alerts": _backup_alerts,
    "backup_runs": _backup_runs,
    "backup_steps": _backup_steps,
}


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
