"""What the swap and backup journals share on SQL: the engine, their step tables, times.

Each journal keeps its own tables (`deploy_*`, `backup_*`) and records;
they share the code. SQLite runs in WAL mode with foreign keys and a busy
timeout, so the web process reads the history while a worker writes it;
PostgreSQL works unchanged. Times are stored as naive UTC datetimes (SQLite
has no time zone type), so `epoch` reads them back as UTC.

A step table has the same shape in both journals; only the column naming
its swap or run differs (`swap_id`, `run_id`), which `step_table` records
so `start_step` and `finish_step` need no other argument.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from deploy.steps.runner import StepStatus


def now() -> dt.datetime:
    """The current time as the journals store it: naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def epoch(when: dt.datetime) -> float:
    """Unix time of a journaled time (the journals store naive UTC datetimes)."""
    return when.replace(tzinfo=dt.UTC).timestamp()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def open_engine(url: str | sa.Engine) -> sa.Engine:
    """An engine for a journal: from a URL, or one shared with another journal.

    On SQLite every connection gets WAL, foreign keys and a busy timeout;
    an engine that two journals share gets the listener once.
    """
    engine = sa.create_engine(url) if isinstance(url, str) else url
    if engine.dialect.name == "sqlite" and not sa.event.contains(
        engine, "connect", _sqlite_pragmas
    ):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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


def step_table(name: str, metadata: sa.MetaData, owner: str, owner_table: str) -> sa.Table:
    """A journal's step table: one row per step of a swap or run (`owner` names its column)."""
    table = sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            owner, sa.Integer, sa.ForeignKey(f"{owner_table}.id"), nullable=False, index=True
        ),
        sa.Column("step", sa.String(60), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime),
        sa.Column("detail", sa.Text, nullable=False, default=""),
    )
    table.info["owner"] = owner
    return table


def _owner(table: sa.Table) -> sa.ColumnElement[Any]:
    return table.c[table.info["owner"]]


def start_step(conn: sa.Connection, table: sa.Table, owner_id: int, step: str) -> None:
    """Insert the `started` row of a step."""
    owner = {table.info["owner"]: owner_id}
    conn.execute(
        table.insert().values(
            **owner, step=step, status=StepStatus.STARTED, started=now(), detail=""
        )
    )


def finish_step(
    conn: sa.Connection,
    table: sa.Table,
    owner_id: int,
    step: str,
    status: StepStatus,
    detail: str = "",
) -> None:
    """End the last `started` row of that step; without one, insert the step already ended."""
    last = conn.execute(
        sa.select(table.c.id)
        .where(
            _owner(table) == owner_id, table.c.step == step, table.c.status == StepStatus.STARTED
        )
        .order_by(table.c.id.desc())
        .limit(1)
    ).scalar()
    values = {"status": status, "finished": now(), "detail": detail}
    if last is None:
        owner = {table.info["owner"]: owner_id}
        conn.execute(table.insert().values(**owner, step=step, started=now(), **values))
    else:
        conn.execute(table.update().where(table.c.id == last).values(**values))


def done_steps(conn: sa.Connection, table: sa.Table, owner_id: int) -> tuple[str, ...]:
    """The names of the steps of a swap or run that ended well, in order."""
    rows = conn.execute(
        sa.select(table.c.step)
        .where(_owner(table) == owner_id, table.c.status == StepStatus.DONE)
        .order_by(table.c.id)
    ).scalars()
    return tuple(rows)
