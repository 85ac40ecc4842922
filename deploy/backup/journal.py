"""`BackupJournal`: backup runs, their steps and staleness alerts in their own `backup_*` tables.

SQLAlchemy, SQLite in WAL mode by default, PostgreSQL unchanged; the engine,
the step rows and the times are `deploy.steps.sql`, which the swap journal
uses too (each keeps its own tables). A run row is written before anything
happens to the instance and each step is journaled, so a process that dies
mid-run leaves a `running` row that `BackupRunner.recover()` finishes
(writers started, maintenance off). No secret is ever stored: restic's
messages are scrubbed before they get here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from deploy.steps import sql
from deploy.steps.runner import StepStatus


class RunState(StrEnum):
    """Where a backup (check, drill, restore) run is; the values `backup_runs.state` stores."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # the instance was busy (a swap held its lock) or not deployed


metadata = sa.MetaData()

runs = sa.Table(
    "backup_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # backup | check | drill | restore
    sa.Column("mode", sa.String(20), nullable=False),  # stop | snapshot | ""
    sa.Column("instance_id", sa.String(200)),
    sa.Column("volume_id", sa.String(200)),
    sa.Column("commit", sa.String(64)),
    sa.Column("repository", sa.Text),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("snapshot_id", sa.String(80)),
    sa.Column("files", sa.BigInteger),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("duration", sa.Float),  # restic's own figure
    sa.Column("window", sa.Float),  # seconds from maintenance on to off, from the steps
    sa.Column("error", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("started", sa.DateTime, nullable=False),
    sa.Column("finished", sa.DateTime),
)

steps = sql.step_table("backup_steps", metadata, "run_id", "backup_runs")

alerts = sa.Table(
    "backup_alerts",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(40), primary_key=True),  # stale | failed | check
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("since", sa.DateTime, nullable=False),
)


@dataclass(frozen=True)
class BackupRun:
    """One backup (or check, drill, restore) of one instance, as journaled."""

    id: int
    project: str
    name: str
    kind: str
    mode: str
    state: RunState
    instance_id: str | None = None
    volume_id: str | None = None
    commit: str | None = None
    repository: str | None = None
    snapshot_id: str | None = None
    files: int | None = None
    bytes: int | None = None
    duration: float | None = None
    window: float | None = None
    error: str | None = None
    note: str | None = None
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    done: tuple[str, ...] = ()  # steps completed, in order

    @property
    def key(self) -> str:
        """`project/name`, the lock key of the instance."""
        return f"{self.project}/{self.name}"


@dataclass(frozen=True)
class Alert:
    """An open alert about an instance's backups (stale, failed, check)."""

    project: str
    name: str
    kind: str
    message: str
    since: dt.datetime


class BackupJournal:
    """Backup history on SQLAlchemy; `url` or an engine shared with the swap journal."""

    def __init__(self, url: str | sa.Engine = "sqlite:///swapyard.db"):
        self.engine = sql.open_engine(url)
        sql.create_tables(self.engine, metadata)

    def begin(self, project: str, name: str, kind: str, mode: str = "", **fields: Any) -> int:
        """Store a new running run; returns its id."""
        with self.engine.begin() as conn:
            key = conn.execute(
                runs.insert().values(
                    project=project,
                    name=name,
                    kind=kind,
                    mode=mode,
                    state=RunState.RUNNING,
                    started=sql.now(),
                    **fields,
                )
            ).inserted_primary_key
        assert key is not None
        return int(key[0])

    def update(self, run_id: int, **fields: Any) -> None:
        """Change fields of a run (snapshot id, figures, mode)."""
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**fields))

    def step_started(self, run_id: int, step: str) -> None:
        """Record that a step began."""
        with self.engine.begin() as conn:
            sql.start_step(conn, steps, run_id, step)

    def step_finished(self, run_id: int, step: str, ok: bool, detail: str = "") -> None:
        """Record that the last started step of that name ended."""
        status = StepStatus.DONE if ok else StepStatus.FAILED
        with self.engine.begin() as conn:
            sql.finish_step(conn, steps, run_id, step, status, detail)

    def finish(self, run_id: int, state: RunState, **fields: Any) -> None:
        """End a run with its final state (and figures, error, note)."""
        self.update(run_id, state=state, finished=sql.now(), **fields)

    def get(self, run_id: int) -> BackupRun:
        """One run with the names of its completed steps."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().one()
            done = sql.done_steps(conn, steps, run_id)
        return BackupRun(**{**dict(row), "state": RunState(row["state"])}, done=done)

    def steps(self, run_id: int) -> list[tuple[str, str, str]]:
        """Every step of a run as (step, status, detail), in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(steps.c.step, steps.c.status, steps.c.detail)
                .where(steps.c.run_id == run_id)
                .order_by(steps.c.id)
            )
            return [(r.step, r.status, r.detail) for r in rows]

    def window(self, run_id: int) -> float | None:
        """Seconds the maintenance page was on: `maintenance_on` started to `maintenance_off` done.

        None while the page is still on (or never went on). What a client
        sees, unlike restic's own `duration`.
        """
        with self.engine.connect() as conn:
            on = conn.execute(
                sa.select(sa.func.min(steps.c.started)).where(
                    steps.c.run_id == run_id, steps.c.step == "maintenance_on"
                )
            ).scalar()
            off = conn.execute(
                sa.select(sa.func.max(steps.c.finished)).where(
                    steps.c.run_id == run_id,
                    steps.c.step.in_(("maintenance_off", "undo:maintenance_off")),
                    steps.c.status == StepStatus.DONE,
                )
            ).scalar()
        if on is None or off is None or off < on:
            return None
        return (off - on).total_seconds()

    def unfinished(self) -> list[BackupRun]:
        """Runs still `running`: the process died during them."""
        with self.engine.connect() as conn:
            ids = conn.execute(
                sa.select(runs.c.id).where(runs.c.state == RunState.RUNNING).order_by(runs.c.id)
            ).scalars()
            id_list = list(ids)
        return [self.get(i) for i in id_list]

    def runs(self, project: str, name: str, kind: str | None = None) -> list[BackupRun]:
        """The history of an instance, newest first."""
        query = sa.select(runs.c.id).where(runs.c.project == project, runs.c.name == name)
        if kind:
            query = query.where(runs.c.kind == kind)
        with self.engine.connect() as conn:
            id_list = list(conn.execute(query.order_by(runs.c.id.desc())).scalars())
        return [self.get(i) for i in id_list]

    # -- alerts --------------------------------------------------------------
    def raise_alert(self, project: str, name: str, kind: str, message: str) -> None:
        """Open (or update the message of) an alert; `since` keeps its first time."""
        with self.engine.begin() as conn:
            where = (alerts.c.project == project, alerts.c.name == name, alerts.c.kind == kind)
            if conn.execute(sa.select(alerts.c.kind).where(*where)).first():
                conn.execute(alerts.update().where(*where).values(message=message))
            else:
                conn.execute(
                    alerts.insert().values(
                        project=project, name=name, kind=kind, message=message, since=sql.now()
                    )
                )

    def clear_alert(self, project: str, name: str, kind: str) -> None:
        """Close an alert; a no-op when none is open."""
        with self.engine.begin() as conn:
            conn.execute(
                alerts.delete().where(
                    alerts.c.project == project, alerts.c.name == name, alerts.c.kind == kind
                )
            )

    def alerts(self, project: str | None = None, name: str | None = None) -> list[Alert]:
        """Open alerts, of one instance or of all."""
        query = sa.select(alerts)
        if project is not None:
            query = query.where(alerts.c.project == project)
        if name is not None:
            query = query.where(alerts.c.name == name)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(alerts.c.project, alerts.c.name)).mappings()
            return [Alert(**dict(r)) for r in rows]
