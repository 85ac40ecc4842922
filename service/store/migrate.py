"""Schema migrations: the database is brought to the newest revision whenever swapyard starts.

Alembic, with its environment in service/store/migrations/ (env.py, versions/). One
schema covers the three table sets that share the database: the service's
models (service.store.models), the swap journal (deploy.swap.sqljournal) and the backup
journal (deploy.backup.journal). APScheduler's `backup_jobs` belongs to
APScheduler, which creates it itself; migrations leave it out.

`upgrade(engine)` runs at every start (service.store.db) and from `swapyard db
upgrade`:

- an empty database gets every table from the revisions;
- a database at an older revision is upgraded;
- a database made before migrations existed (swapyard's tables, no
  `alembic_version`) is compared with the baseline revision, column by column
  in every table it has. If they match, it is adopted: the baseline creates
  only the tables it lacks (a service that never deployed has no journal
  tables), and later revisions follow. If one differs, `SchemaMismatch` names
  the differences and nothing is changed.

It all happens in one transaction that holds a lock, so processes and
threads that start together take turns and the later ones find the work
done: a PostgreSQL advisory lock (`pg_advisory_xact_lock`), on SQLite the
write lock (`BEGIN IMMEDIATE`, which the engines of service.store.db emit, so pass
one of those). DDL is transactional on both, so a failing migration leaves
the database as it was.

Layering: deploy/ must not import service/, so the journals do not call
this. They create their own tables only in a database without
`alembic_version` (standalone use: bench/, tests, scripts with their own
SQLite file); in the service's database, migrated here before any journal
is built, they leave the schema to the migrations
(deploy.steps.sql.create_tables).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from deploy.backup import journal as backupjournal
from deploy.swap import sqljournal
from schemas.errors import SwapyardError
from service.store.models import Base

SCRIPTS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema swapyard made before it had migrations
TARGET_METADATA = [Base.metadata, sqljournal.metadata, backupjournal.metadata]
NOT_OURS = frozenset({"backup_jobs"})  # APScheduler's job store creates and versions it
# Tables that hold only short-lived rows: dropping one (when nothing runs) loses nothing.
TRANSIENT = {"deploy_locks": "no swap or backup runs", "leases": "no deployment runs"}
_LOCK_ID = 0x73776170  # "swap": the advisory lock of migrations on PostgreSQL


class SchemaMismatch(SwapyardError, RuntimeError):
    """The database is not in a shape these migrations can take over; nothing was changed."""


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's filter: leave out the tables swapyard does not own."""
    return not (type_ == "table" and name in NOT_OURS)


def alembic_config(connection: sa.Connection | None = None, scripts: Path = SCRIPTS) -> Config:
    """An Alembic config for `scripts`, handing env.py an open `connection`."""
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["connection"] = connection
    return config


def head(scripts: Path = SCRIPTS) -> str:
    """The newest revision of the migrations in `scripts`."""
    newest = ScriptDirectory.from_config(alembic_config(scripts=scripts)).get_current_head()
    assert newest is not None, f"{scripts}: no revisions"
    return newest


def current(engine: sa.Engine) -> str | None:
    """The database's revision; None when empty or made before migrations."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, scripts: Path = SCRIPTS) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns (revision before, revision now).

    Raises `SchemaMismatch` for a database made before migrations whose
    tables differ from the baseline, or one at a revision this swapyard does
    not know (a newer swapyard upgraded it).
    """
    script = ScriptDirectory.from_config(alembic_config(scripts=scripts))
    target = head(scripts)
    with _locked(engine) as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        if before == target:
            return before, target
        if before is None:
            _check_premigration(conn)
        elif before not in {s.revision for s in script.walk_revisions()}:
            raise SchemaMismatch(
                f"{_where(engine)}: the database is at schema revision {before}, which this "
                f"swapyard does not know (its newest is {target}): a newer swapyard upgraded it. "
                "Run that version again, or restore the backup taken before the upgrade."
            )
        command.upgrade(alembic_config(conn, scripts), "head")
    return before, target


@contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that only one migrating process holds at a time."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # batch migrations copy tables that others reference; checked before commit
            _sqlite_pragma(conn, "foreign_keys=OFF")
        try:
            with conn.begin():  # SQLite: BEGIN IMMEDIATE, the database's write lock
                if not sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
                yield conn
                if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise SchemaMismatch(
                        f"a migration left rows whose foreign key points nowhere: {broken[:5]}; "
                        "nothing was changed, please report it"
                    )
        finally:
            if sqlite:
                _sqlite_pragma(conn, "foreign_keys=ON")


def _sqlite_pragma(conn: sa.Connection, pragma: str) -> None:
    # on the DBAPI connection: through SQLAlchemy it would open a transaction, where
    # SQLite ignores `foreign_keys`
    conn.connection.dbapi_connection.execute(f"PRAGMA {pragma}")  # type: ignore[union-attr]


def _where(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@functools.cache
def baseline_shape() -> dict[str, dict[str, bool]]:
    """Table -> column -> nullable, as the baseline revision creates them."""
    scratch = sa.create_engine("sqlite://")
    with scratch.begin() as conn:
        command.upgrade(alembic_config(conn), BASELINE)
        inspector = sa.inspect(conn)
        return {
            table: _columns(inspector, table)
            for table in inspector.get_table_names()
            if table != "alembic_version"
        }


def _columns(inspector: sa.Inspector, table: str) -> dict[str, bool]:
    """Column -> nullable; a primary key column counts as NOT NULL (SQLite may omit it)."""
    key = set(inspector.get_pk_constraint(table)["constrained_columns"])
    return {c["name"]: c["nullable"] and c["name"] not in key for c in inspector.get_columns(table)}


def premigration_differences(conn: sa.Connection) -> list[str]:
    """How the baseline's tables that the database has differ from the baseline."""
    inspector = sa.inspect(conn)
    expected = baseline_shape()
    problems = []
    for table in sorted(set(inspector.get_table_names()) & expected.keys()):
        have = _columns(inspector, table)
        want = expected[table]
        problems += [f"{table}.{c} is missing" for c in sorted(want.keys() - have.keys())]
        problems += [f"{table}.{c} is not expected" for c in sorted(have.keys() - want.keys())]
        problems += [
            f"{table}.{c} is {_null(have[c])}, expected {_null(want[c])}"
            for c in sorted(want.keys() & have.keys())
            if have[c] != want[c]
        ]
    return problems


def _null(nullable: bool) -> str:
    return "nullable" if nullable else "NOT NULL"


def _check_premigration(conn: sa.Connection) -> None:
    problems = premigration_differences(conn)
    if not problems:
        return
    tables = sorted({p.split(".", 1)[0] for p in problems})
    fix = (
        "change those columns by hand to match, or move the database aside and let swapyard "
        "create a new one (the history and the record of deployed instances stay in the old "
        "file)"
    )
    dropping = [
        f"`DROP TABLE {t}` is enough for {t} (while {TRANSIENT[t]}): it holds nothing lasting "
        "and swapyard creates it again"
        for t in tables
        if t in TRANSIENT
    ]
    if dropping:
        fix = f"{'; '.join(dropping)}; otherwise {fix}"
    raise SchemaMismatch(
        f"{_where(conn.engine)}: this database was made by a swapyard from before schema "
        f"migrations and its tables differ from that version's schema: {'; '.join(problems)}. "
        f"Nothing was changed. Back up the database, then: {fix}. Then start swapyard again, "
        "or run `swapyard db upgrade`."
    )
