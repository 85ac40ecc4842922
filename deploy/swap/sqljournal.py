"""`SqlJournal`: the swap journal on SQLAlchemy, in its own `deploy_*` tables (SQLite by default).

SQLite runs in WAL mode with a busy timeout, so the web process can read the
history while a worker writes it; PostgreSQL works unchanged when several
workers share the database. The lock row (`deploy_locks`, one per instance
key) is what keeps two swaps of one instance apart. Used alone, the journal
creates its tables; in the service's database the service's migrations own
them (`create_tables`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from deploy.providers.types import SwapInProgress
from deploy.spec import AppCheck
from deploy.swap.journal import RUNNING, Deployment, StepRecord, SwapRecord

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

steps = sa.Table(
    "deploy_steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("swap_id", sa.Integer, sa.ForeignKey("deploy_swaps.id"), nullable=False, index=True),
    sa.Column("step", sa.String(60), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started", sa.DateTime, nullable=False),
    sa.Column("finished", sa.DateTime),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

deployments = sa.Table(
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _deployment(row: Any) -> Deployment:
    return Deployment(
        row["project"],
        row["name"],
        row["instance_id"],
        row["volume_id"],
        row["commit"],
        row["digest"],
        tuple(row["domains"]),
    )


def create_tables(engine: sa.Engine, tables: sa.MetaData) -> None:
    """Create a journal's tables, unless migrations manage this database's schema.

    Standalone (bench/, tests, a script with its own SQLite file) a journal
    makes its tables here. The service's database has an `alembic_version`
    table: its migrations (service/store/migrate.py) created the journal tables and
    upgrade them, and `create_all`, which never alters a table, stays out.
    deploy/ imports nothing from service/, so the rule is that table's name.
    """
    if not sa.inspect(engine).has_table("alembic_version"):
        tables.create_all(engine)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class SqlJournal:
    """`Journal` on SQLAlchemy; `url` like `sqlite:////var/lib/swapyard/swapyard.db`."""

    def __init__(self, url: str | sa.Engine = "sqlite:///swapyard.db"):
        self.engine = sa.create_engine(url) if isinstance(url, str) else url
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        create_tables(self.engine, metadata)

    def begin(self, record: SwapRecord) -> SwapRecord:
        """Store a new swap and take the instance's lock (`SwapInProgress` if held)."""
        now = _now()
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
            "state": RUNNING,
            "spec": record.spec,
            "created": now,
            "updated": now,
        }
        key = f"{record.project}/{record.name}"
        try:
            with self.engine.begin() as conn:
                inserted = conn.execute(swaps.insert().values(**values)).inserted_primary_key
                assert inserted is not None
                swap_id = inserted[0]
                conn.execute(locks.insert().values(key=key, swap_id=swap_id, acquired=now))
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

    def lease(self, key: str, holder: str) -> None:
        """Take the lock of instance `key` (`project/name`) for something else than a swap.

        The same lock row a swap takes, so a backup and a swap of one
        instance never overlap. Raises `SwapInProgress` when it is held.
        """
        try:
            with self.engine.begin() as conn:
                conn.execute(locks.insert().values(key=key, holder=holder, acquired=_now()))
        except IntegrityError:
            held_by, is_swap = self._holder(key)
            raise SwapInProgress(
                f"{key}: {held_by} holds the instance's lock; {holder} waits for it",
                held_by,
                is_swap=is_swap,
            ) from None

    def release(self, key: str, holder: str) -> None:
        """Give back a lock taken with `lease`; a no-op when `holder` does not hold it."""
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.key == key, locks.c.holder == holder))

    def update(self, swap_id: int, **fields: Any) -> None:
        """Change fields of a running swap (e.g. `new_instance` before creating it)."""
        with self.engine.begin() as conn:
            conn.execute(
                swaps.update().where(swaps.c.id == swap_id).values(**fields, updated=_now())
            )

    def step_started(self, swap_id: int, step: str) -> None:
        """Record that a step began."""
        with self.engine.begin() as conn:
            conn.execute(
                steps.insert().values(
                    swap_id=swap_id, step=step, status="started", started=_now(), detail=""
                )
            )

    def _finish_step(
        self, conn: sa.Connection, swap_id: int, step: str, status: str, detail: str
    ) -> None:
        last = conn.execute(
            sa.select(steps.c.id)
            .where(steps.c.swap_id == swap_id, steps.c.step == step, steps.c.status == "started")
            .order_by(steps.c.id.desc())
            .limit(1)
        ).scalar()
        if last is None:
            conn.execute(
                steps.insert().values(
                    swap_id=swap_id,
                    step=step,
                    status=status,
                    started=_now(),
                    finished=_now(),
                    detail=detail,
                )
            )
        else:
            conn.execute(
                steps.update()
                .where(steps.c.id == last)
                .values(status=status, finished=_now(), detail=detail)
            )
        conn.execute(swaps.update().where(swaps.c.id == swap_id).values(updated=_now()))

    def step_finished(self, swap_id: int, step: str, ok: bool, detail: str = "") -> None:
        """Record that a step ended, successfully or not."""
        with self.engine.begin() as conn:
            self._finish_step(conn, swap_id, step, "done" if ok else "failed", detail)

    def switched(self, swap_id: int, deployment: Deployment) -> None:
        """Atomically mark `switch_traffic` done and make `deployment` the live one."""
        with self.engine.begin() as conn:
            self._finish_step(conn, swap_id, "switch_traffic", "done", deployment.instance_id)
            self._set_current(conn, deployment)

    def _set_current(self, conn: sa.Connection, d: Deployment) -> None:
        conn.execute(
            deployments.delete().where(
                deployments.c.project == d.project, deployments.c.name == d.name
            )
        )
        conn.execute(
            deployments.insert().values(
                project=d.project,
                name=d.name,
                instance_id=d.instance_id,
                volume_id=d.volume_id,
                commit=d.commit,
                digest=d.digest,
                domains=list(d.domains),
                updated=_now(),
            )
        )

    def finish(self, swap_id: int, state: str, reason: str | None = None) -> None:
        """End a swap with a final state and release the instance's lock."""
        with self.engine.begin() as conn:
            conn.execute(
                swaps.update()
                .where(swaps.c.id == swap_id)
                .values(state=state, reason=reason, updated=_now())
            )
            conn.execute(locks.delete().where(locks.c.swap_id == swap_id))

    def get(self, swap_id: int) -> SwapRecord:
        """One swap with the names of its completed steps."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(swaps).where(swaps.c.id == swap_id)).mappings().one()
            done = (
                conn.execute(
                    sa.select(steps.c.step)
                    .where(steps.c.swap_id == swap_id, steps.c.status == "done")
                    .order_by(steps.c.id)
                )
                .scalars()
                .all()
            )
        fields = {k: row[k] for k in SwapRecord.__dataclass_fields__ if k in row and k != "done"}
        return SwapRecord(**fields, done=tuple(done))

    def unfinished(self) -> list[SwapRecord]:
        """Swaps still running (a worker died during them)."""
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    sa.select(swaps.c.id).where(swaps.c.state == RUNNING).order_by(swaps.c.id)
                )
                .scalars()
                .all()
            )
        return [self.get(i) for i in ids]

    def steps(self, swap_id: int) -> list[StepRecord]:
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
            StepRecord(
                r["swap_id"], r["step"], r["status"], r["started"], r["finished"], r["detail"]
            )
            for r in rows
        ]

    def current(self, project: str, name: str) -> Deployment | None:
        """The live deployment of an instance, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(deployments).where(
                        deployments.c.project == project, deployments.c.name == name
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _deployment(row)

    def live_apps(self, project: str, name: str) -> tuple[AppCheck, ...]:
        """The health checks of the live deployment: those of the swap that put it live.

        Empty when the instance is not deployed (or was put live by a swap
        that journaled no apps).
        """
        live = self.current(project, name)
        if live is None:
            return ()
        with self.engine.connect() as conn:
            spec = conn.execute(
                sa.select(swaps.c.spec)
                .where(
                    swaps.c.project == project,
                    swaps.c.name == name,
                    swaps.c.new_instance == live.instance_id,
                )
                .order_by(swaps.c.id.desc())
                .limit(1)
            ).scalar()
        return tuple(AppCheck(*app) for app in (spec or {}).get("apps", ()))

    def deployments(self) -> list[Deployment]:
        """Every live deployment (for reconciliation after a restart)."""
        with self.engine.connect() as conn:
            query = sa.select(deployments).order_by(deployments.c.project, deployments.c.name)
            rows = conn.execute(query).mappings().all()
        return [_deployment(r) for r in rows]

    def clear_current(self, project: str, name: str) -> None:
        """Forget the live deployment (after an explicit destroy)."""
        with self.engine.begin() as conn:
            conn.execute(
                deployments.delete().where(
                    deployments.c.project == project, deployments.c.name == name
                )
            )

    def locks(self) -> list[tuple[str, int | None]]:
        """Held locks as (instance key, swap id); the swap id is None for a `lease`."""
        with self.engine.connect() as conn:
            return [(k, s) for k, s in conn.execute(sa.select(locks.c.key, locks.c.swap_id))]
