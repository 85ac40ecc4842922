"""Schema migrations on real databases: SQLite files and Debian's PostgreSQL, started here."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from deploy.backup import journal as backupjournal
from deploy.swap import sqljournal
from deploy.swap.sqljournal import SqlJournal
from service.store import migrate
from service.store.db import Database, get_db, make_engine
from service.store.models import Base, Event
from service.web.app import create_app
from tests.conftest import run_cli
from tests.deploy.swap.test_journal import record
from tests.service.conftest import answers, free_port, make_settings, wait_for
from tests.service.postgres import postgres_server

OUR_TABLES = {t for metadata in migrate.TARGET_METADATA for t in metadata.tables}

# deploy_locks as swapyard made it before `lease` (commit 772debd): no holder, swap_id required
OLD_LOCKS = """CREATE TABLE deploy_locks (
    "key" VARCHAR(400) NOT NULL PRIMARY KEY,
    swap_id INTEGER NOT NULL REFERENCES deploy_swaps (id),
    acquired DATETIME NOT NULL
)"""

SECOND_REVISION = '''"""A column, and a type change SQLite makes only by copying the table."""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "HEAD"


def upgrade():
    with op.batch_alter_table("deploy_swaps") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.alter_column("old_commit", existing_type=sa.String(64), type_=sa.String(80))


def downgrade():
    with op.batch_alter_table("deploy_swaps") as batch:
        batch.drop_column("note")
'''


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def new_database(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A URL of a new, empty database: a SQLite file, or a database on the PostgreSQL server."""

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
        server = request.getfixturevalue("pg_server")
        name = f"t_{uuid.uuid4().hex[:12]}"
        with sa.create_engine(server, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        return server.rsplit("/", 1)[0] + f"/{name}"

    return make


BOTH = pytest.mark.parametrize("kind", ["sqlite", "postgresql"])


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


# columns the models gained through revisions after the baseline, which `create_all`
# of those days did not make
LATER_COLUMNS = {"leases": ["taken_at"]}
LATER_INDEXES = {"deployments": ["ix_deployments_latest", "ix_deployments_latest_status"]}


def create_all_before_migrations(url: str, metadatas: list[sa.MetaData]) -> sa.Engine:
    """What swapyard did before migrations: `create_all` of each table set."""
    engine = sa.create_engine(url)
    for metadata in metadatas:
        metadata.create_all(engine)
        with engine.begin() as conn:
            for table, columns in LATER_COLUMNS.items():
                for column in columns if table in metadata.tables else ():
                    conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
            for table, indexes in LATER_INDEXES.items():
                for index in indexes if table in metadata.tables else ():
                    conn.exec_driver_sql(f"DROP INDEX {index}")
    return engine


def differences(engine: sa.Engine) -> list[object]:
    """What Alembic's autogenerate finds between the database and the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": migrate.include_name, "compare_type": True}
        )
        return compare_metadata(context, migrate.TARGET_METADATA)


@BOTH
def test_models_and_migrations_agree(kind, new_database):
    engine = make_engine(new_database(kind))
    migrate.upgrade(engine)
    found = differences(engine)
    assert found == [], (
        f"on {kind}, the tables the migrations make differ from the models "
        "(service/store/models.py, deploy/swap/sqljournal.py, deploy/backup/journal.py): "
        "a model was "
        "changed without a migration. Write one with `swapyard db revision -m 'what changed'`, "
        f"review it, and run this test again. Differences: {found}"
    )


@BOTH
def test_an_empty_database_is_created_by_the_migrations(kind, new_database):
    url = new_database(kind)
    db = Database(url)
    assert migrate.current(db.engine) == migrate.head()
    assert tables(db.engine) == OUR_TABLES | {"alembic_version"}
    again = Database(url)  # the next start finds nothing to do
    assert migrate.upgrade(again.engine) == (migrate.head(), migrate.head())


def test_db_commands_upgrade_and_report_the_revision(tmp_path):
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    before = run_cli("db", "current", "--config", str(config))
    assert (before.returncode, before.stdout) == (
        0,
        f"none: the database is empty or from before migrations; newest is {migrate.head()}\n",
    )
    up = run_cli("db", "upgrade", "--config", str(config))
    assert up.returncode == 0, up.stderr
    assert f"upgraded from revision (none) to {migrate.head()}" in up.stdout
    after = run_cli("db", "current", "--config", str(config))
    assert after.stdout == f"{migrate.head()} (newest)\n"


@BOTH
@pytest.mark.parametrize("outbox_indexes", ["before 7edb272", "since"])
def test_a_database_from_before_migrations_is_adopted(kind, outbox_indexes, new_database, tmp_path):
    url = new_database(kind)
    # a service that deployed but never ran a backup: no backup_* tables yet
    old = create_all_before_migrations(url, [Base.metadata, sqljournal.metadata])
    if outbox_indexes == "before 7edb272":  # create_all never changed them afterwards
        with old.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_status_outbox_context")
            conn.exec_driver_sql("DROP INDEX ix_status_outbox_waiting")
            for column in ("sent_at", "next_attempt_at"):
                conn.exec_driver_sql(
                    f"CREATE INDEX ix_status_outbox_{column} ON status_outbox ({column})"
                )
    with old.begin() as conn:
        conn.execute(
            sa.insert(Event).values(
                forge="github",
                event_name="push",
                kind="push",
                delivery_id="d1",
                received_at=1.0,
                status="dispatched",
                attempts=1,
            )
        )
    SqlJournal(old).begin(record())
    old.dispose()

    app = create_app(make_settings(tmp_path, None, 8080, database_url=url))
    engine = get_db(app).engine
    assert migrate.current(engine) == migrate.head()
    assert tables(engine) == OUR_TABLES | {"alembic_version"}  # the missing ones created
    assert differences(engine) == []
    with get_db(app).session() as session:
        assert session.scalars(sa.select(Event.delivery_id)).all() == ["d1"]
    journal = SqlJournal(engine)
    (running,) = journal.unfinished()
    journal.finish(running.id, "succeeded")
    journal.lock("prod/blog", "backup:1")  # the lock table has today's shape
    assert journal.locks() == [("prod/blog", None)]


@BOTH
def test_a_database_from_before_migrations_with_an_older_table_is_refused(
    kind, new_database, tmp_path
):
    url = new_database(kind)
    old = create_all_before_migrations(url, [Base.metadata])
    sqljournal.swaps.create(old)
    with old.begin() as conn:
        conn.exec_driver_sql(OLD_LOCKS.replace("DATETIME", "TIMESTAMP"))
    old.dispose()
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump(make_settings(tmp_path, None, 8080, database_url=url)))

    for command in (["worker"], ["db", "upgrade"]):
        result = run_cli(*command, "--config", str(config))
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "Traceback" not in output
        assert "made by a swapyard from before schema migrations" in output
        assert "deploy_locks.holder is missing" in output
        assert "deploy_locks.swap_id is NOT NULL, expected nullable" in output
        assert "`DROP TABLE deploy_locks`" in output
        assert len(output.strip().splitlines()) == 1  # one paragraph
    assert "alembic_version" not in tables(sa.create_engine(url))  # nothing was changed


def test_a_database_from_a_newer_swapyard_is_refused(new_database):
    engine = make_engine(new_database("sqlite"))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(migrate.SchemaMismatch, match="revision 9999, which this swapyard does not"):
        migrate.upgrade(engine)


@BOTH
def test_a_new_revision_is_applied_without_losing_rows(kind, new_database, tmp_path):
    engine = make_engine(new_database(kind))
    migrate.upgrade(engine)
    journal = SqlJournal(engine)
    first = journal.begin(record("blog"))
    journal.step_started(first.id, "create_instance")
    journal.step_finished(first.id, "create_instance", ok=True)
    second = journal.begin(record("cloud"))  # holds its lock: a row referring to deploy_swaps

    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head()
    (scripts / "versions" / "9001_test_note.py").write_text(SECOND_REVISION.replace("HEAD", head))
    assert migrate.upgrade(engine, scripts) == (head, "9001")

    columns = {c["name"] for c in sa.inspect(engine).get_columns("deploy_swaps")}
    assert "note" in columns
    assert [s.name for s in journal.unfinished()] == ["blog", "cloud"]
    assert journal.get(first.id).done == ("create_instance",)
    assert journal.locks() == [("prod/blog", first.id), ("prod/cloud", second.id)]
    with engine.connect() as conn:
        if kind == "sqlite":  # foreign keys are enforced again after the copy
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        notes = conn.exec_driver_sql("SELECT note FROM deploy_swaps").scalars().all()
        assert notes == [None, None]


@BOTH
def test_threads_starting_together_migrate_once(kind, new_database):
    url = new_database(kind)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Database(url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert versions == [(migrate.head(),)]


def test_processes_starting_together_on_a_fresh_postgres_database_all_come_up(
    new_database,
    tmp_path,
    launch,
):
    url, port = new_database("postgresql"), free_port()
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump(make_settings(tmp_path, None, port, database_url=url)))
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker1", "worker2")}
    procs = [
        launch("web", "--config", str(config), "--port", str(port), log=logs["web"]),
        launch("worker", "--config", str(config), "--workers", "1", log=logs["worker1"]),
        launch("worker", "--config", str(config), "--workers", "1", log=logs["worker2"]),
    ]

    wait_for(lambda: answers(port), 60, f"swapyard web ({logs['web']})")
    for log in (logs["worker1"], logs["worker2"]):
        wait_for(lambda log=log: "worker running" in log.read_text(), 60, f"a worker ({log})")
    assert [p.poll() for p in procs] == [None, None, None]
    assert migrate.current(sa.create_engine(url)) == migrate.head()
    assert backupjournal.runs.name in tables(sa.create_engine(url))
