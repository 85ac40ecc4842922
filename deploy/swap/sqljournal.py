"""`SqlJournal`: the swap journal on SQLAlchemy, in its own `deploy_*` tables (SQLite by default).

The engine, the step rows and the times are `deploy.steps.sql`, shared
with the backup journal. The lock row (`deploy_locks`, one per instance
key) is what keeps two swaps of one instance apart, and a swap from a
backup (`deploy.live`): a swap takes it in the transaction that stores the
swap, others with `lock`. Used alone, the journal creates its tables; in
the service's database the service's migrations own them
(`deploy.steps.sql.create_tables`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from deploy.live import LiveRecord
from deploy.providers.types import SwapInProgress
from deploy.spec import AppCheck
from deploy.steps.runner import StepStatus
from deploy.steps.sql import (
    create_tables,
    done_steps,
    finish_step,
    now,
    open_engine,
    start_step,
    step_table,
)
from deploy.swap.journal import SwapRecord, SwapState, SwapStep

metadata = sa.MetaData()

swaps = sa.Table(
    "deploy_swaps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(100), nullable=False),
    sa.Column("volume_id", sa.String(200), nullable=False),
    sa.Column("old_instance", sa.String(200)),
    sa.Column("new_instance", sa.String(200)),
    sa.Column("old_commit", sa.String(64)),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("reason", sa.Text),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("updated", sa.DateTime, nullable=False),
)

steps = step_table("deploy_steps", metadata, "swap_id", "deploy_swaps")

live = sa.Table(
    "deploy_current",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("instance_id", sa.String(200), nullable=False),
    sa.Column("volume_id", sa.String(200), nullable=False),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(100), nullable=False),
    sa.Column("domains", sa.JSON, nullable=False),
    sa.Column("updated", sa.DateTime, nullable=False),
)

locks = sa.Table(
    "deploy_locks",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("swap_id", sa.Integer, sa.ForeignKey("deploy_swaps.id"), nullable=True),
    sa.Column("holder", sa.String(200)),  # set when not a swap holds it (e.g. "backup:12")
    sa.Column("acquired", sa.DateTime, nullable=False),
)


def _live_record(row: Any) -> LiveRecord:
    return LiveRecord(
        row["project"],
        row["name"],
        row["instance_id"],
        row["volume_id"],
        row["commit"],
        row["digest"],
        tuple(row["domains"]),
    )


class SqlJournal:
    """`Journal` on SQLAlchemy; `url` like `sqlite:////var/lib/swapyard/swapyard.db`."""

    def __init__(self, url: str | sa.Engine = "sqlite:///swapyard.db"):
        self.engine = open_engine(url)
        create_tables(self.engine, metadata)

    def begin(self, record: SwapRecord) -> SwapRecord:
        """Store a new swap and take the instance's lock (`SwapInProgress` if held)."""
        started = now()
        values = {
            "project": record.project,
            "name": record.name,
            "kind": record.kind,
            "commit": record.commit,
            "digest": record.digest,
            "volume_id": record.volume_id,
            "old_instance": record.old_instance,
            "new_instance": record.new_instance,
            "old_commit": record.old_commit,
            "state": SwapState.RUNNING,
            "spec": record.spec,
            "created": started,
            "updated": started,
        }
        key = f"{record.project}/{record.name}"
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(swaps.insert().values(**values)).inserted_primary_key
                assert inserted is not None
                swap_id = inserted[0]
                conn.execute(locks.insert().values(key=key, swap_id=swap_id, acquired=started))
        except IntegrityError:
            holder, is_swap = self._holder(key)
            if not is_swap:  # a backup or a restore: it ends by itself
                raise SwapInProgress(
                    f"{key}: {holder} holds the instance's lock; deploy after it ends",
                    holder,
                ) from None
            raise SwapInProgress(
                f"{key}: {holder} is still running; wait for it, or restart the "
                "worker so it resumes or rolls it back",
                holder,
                is_swap=True,
            ) from None
        return self.get(swap_id)

    def _holder(self, key: str) -> tuple[str, bool]:
        """Who holds the lock of `key`, and whether that is a swap."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(locks.c.swap_id, locks.c.holder).where(locks.c.key == key)
            ).first()
        if row is None:
            return "another operation", False
        if row.holder:
            return row.holder, False
        return f"swap {row.swap_id}", True

    def lock(self, key: str, holder: str) -> None:
        """Take the lock of instance `key` (`project/name`) for something else than a swap.

        The same lock row a swap takes, so a backup and a swap of one
        instance never overlap. Raises `SwapInProgress` when it is held.
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(locks.insert().values(key=key, holder=holder, acquired=now()))
        except IntegrityError:
            held_by, is_swap = self._holder(key)
            raise SwapInProgress(
                f"{key}: {held_by} holds the instance's lock; {holder} waits for it",
                held_by,
                is_swap=is_swap,
            ) from None

    def unlock(self, key: str, holder: str) -> None:
        """Give back a lock taken with `lock`; a no-op when `holder` does not hold it."""
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.key == key, locks.c.holder == holder))

    def update(self, swap_id: int, **fields: Any) -> None:
        """Change fields of a running swap (e.g. `new_instance` before creating it)."""
        with self.engine.begin() as conn:
            conn.execute(
                swaps.update().where(swaps.c.id == swap_id).values(**fields, updated=now())
            )

    def step_started(self, swap_id: int, step: str) -> None:
        """Record that a step began."""
        with self.engine.begin() as conn:
            start_step(conn, steps, swap_id, step)

    def _finish_step(
        self, conn: sa.Connection, swap_id: int, step: str, status: StepStatus, detail: str
    ) -> None:
        finish_step(conn, steps, swap_id, step, status, detail)
        conn.execute(swaps.update().where(swaps.c.id == swap_id).values(updated=now()))

    def step_finished(self, swap_id: int, step: str, ok: bool, detail: str = "") -> None:
        """Record that a step ended, successfully or not."""
        status = StepStatus.DONE if ok else StepStatus.FAILED
        with self.engine.begin() as conn:
            self._finish_step(conn, swap_id, step, status, detail)

    def switched(self, swap_id: int, record: LiveRecord) -> None:
        """Atomically mark `switch_traffic` done and make `record` the instance's live record."""
        with self.engine.begin() as conn:
            self._finish_step(conn, swap_id, "switch_traffic", StepStatus.DONE, record.instance_id)
            self._set_current(conn, record)

    def _set_current(self, conn: sa.Connection, d: LiveRecord) -> None:
        conn.execute(live.delete().where(live.c.project == d.project, live.c.name == d.name))
        conn.execute(
            live.insert().values(
                project=d.project,
                name=d.name,
                instance_id=d.instance_id,
                volume_id=d.volume_id,
                commit=d.commit,
                digest=d.digest,
                domains=list(d.domains),
                updated=now(),
            )
        )

    def finish(self, swap_id: int, state: SwapState, reason: str | None = None) -> None:
        """End a swap with a final state and release the instance's lock."""
        with self.engine.begin() as conn:
            conn.execute(
                swaps.update()
                .where(swaps.c.id == swap_id)
                .values(state=state, reason=reason, updated=now())
            )
            conn.execute(locks.delete().where(locks.c.swap_id == swap_id))

    def get(self, swap_id: int) -> SwapRecord:
        """One swap with the names of its completed steps."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(swaps).where(swaps.c.id == swap_id)).mappings().one()
            done = done_steps(conn, steps, swap_id)
        fields = {k: row[k] for k in SwapRecord.__dataclass_fields__ if k in row and k != "done"}
        return SwapRecord(**{**fields, "state": SwapState(row["state"])}, done=done)

    def unfinished(self) -> list[SwapRecord]:
        """Swaps still running (a worker died during them)."""
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    sa.select(swaps.c.id)
                    .where(swaps.c.state == SwapState.RUNNING)
                    .order_by(swaps.c.id)
                )
                .scalars()
                .all()
            )
        return [self.get(i) for i in ids]

    def steps(self, swap_id: int) -> list[SwapStep]:
        """Every step of a swap, in order."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(steps).where(steps.c.swap_id == swap_id).order_by(steps.c.id)
                )
                .mappings()
                .all()
            )
        return [
            SwapStep(
                r["swap_id"],
                r["step"],
                StepStatus(r["status"]),
                r["started"],
                r["finished"],
                r["detail"],
            )
            for r in rows
        ]

    def current(self, project: str, name: str) -> LiveRecord | None:
        """The live record of an instance, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(live).where(live.c.project == project, live.c.name == name))
                .mappings()
                .first()
            )
        return None if row is None else _live_record(row)

    def live_apps(self, project: str, name: str) -> tuple[AppCheck, ...]:
        """The health checks of the live record: those of the swap that put it live.

        Empty when the instance is not deployed (or was put live by a swap
        that journaled no apps).
        """
        record = self.current(project, name)
        if record is None:
            return ()
        with self.engine.connect() as conn:
            spec = conn.execute(
                sa.select(swaps.c.spec)
                .where(
                    swaps.c.project == project,
                    swaps.c.name == name,
                    swaps.c.new_instance == record.instance_id,
                )
                .order_by(swaps.c.id.desc())
                .limit(1)
            ).scalar()
        return tuple(AppCheck(*app) for app in (spec or {}).get("apps", ()))

    def live_records(self) -> list[LiveRecord]:
        """Every live record (for reconciliation after a restart)."""
        with self.engine.connect() as conn:
            query = sa.select(live).order_by(live.c.project, live.c.name)
            rows = conn.execute(query).mappings().all()
        return [_live_record(r) for r in rows]

    def clear_current(self, project: str, name: str) -> None:
        """Forget the live record (after an explicit destroy)."""
        with self.engine.begin() as conn:
            conn.execute(live.delete().where(live.c.project == project, live.c.name == name))

    def locks(self) -> list[tuple[str, int | None]]:
        """Held locks as (instance key, swap id); the swap id is None for a `lock`."""
        with self.engine.connect() as conn:
            return [(k, s) for k, s in conn.execute(sa.select(locks.c.key, locks.c.swap_id))]
