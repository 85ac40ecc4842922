"""Scheduled backups run once per scheduled time, whatever mix of processes shares the database.

Real `swapyard serve`, `web` and `worker` processes, Debian's PostgreSQL
started here (and the SQLite default), the local provider on the Docker
engine and restic. The instance is deployed by the real swap engine into the
test's database; its backup job is the real one (`schedule_instance`) with a
trigger of PERIOD seconds instead of a crontab minute, written into the
shared job table while the processes run (APScheduler triggers take seconds;
the property under test, one run per fire time, does not depend on the unit).

Each run's start falls in the period after its fire time, so `slots` maps
runs to fire times: exactly one run per slot, each with its snapshot in the
repository and its one maintenance window, is "exactly once".
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from apscheduler.triggers.interval import IntervalTrigger

from deploy.backup.jobs import BackupJob
from deploy.backup.journal import BackupJournal, BackupRun, RunState
from deploy.backup.schedule import BackupScheduler
from deploy.providers.local.provider import LocalProvider
from deploy.swap.sqljournal import SqlJournal
from service.store.db import Database
from service.worker.leader import Holder, holder
from tests.deploy.backup.conftest import Deployed
from tests.deploy.backup.test_schedule import instance
from tests.deploy.fixtures import make_spec
from tests.service.conftest import (
    TOKEN,
    answers,
    free_port,
    launch,  # noqa: F401  (fixture)
    make_settings,
    wait_for,
)
from tests.service.postgres import postgres_server

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PERIOD = 20  # seconds between fire times; a backup of the fixture instance takes a few
LEASE = 4  # LEASE_SECONDS: a dead holder is replaced well within one PERIOD
PASSWORD = "pw-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def fresh_database(server_url: str) -> str:
    """A new, empty database on the test server (each test starts from nothing)."""
    import psycopg

    name = "sched_" + uuid.uuid4().hex[:10]
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


class Setup:
    """The deployed instance, the service's config for it, and the checks on its backups."""

    def __init__(self, tmp_path: Path, provider: LocalProvider, project: str, ignition: bytes):
        self.tmp_path = tmp_path
        self.provider = provider
        self.project = project
        self.ignition = ignition
        self.repos = tmp_path / "repos"
        self.start: dt.datetime | None = None
        self.period = PERIOD

    def deploy(self, url: str) -> Deployed:
        Database(url).dispose()  # migrated first, as the service would, so the journals agree
        return Deployed(
            self.provider, url, self.project, make_spec(self.project, self.ignition, "a" * 40)
        )

    def config(self, url: str, port: int) -> Path:
        secrets = self.tmp_path / "secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / "restic").write_text(PASSWORD + "\n")
        settings = make_settings(
            self.tmp_path,
            None,
            port,
            deploy=True,
            database_url=url,
            state_dir=str(self.provider.state_dir),
            edge_listen=list(self.provider.edge.listen),
            edge_admin=self.provider.edge.admin,
            secrets_dir=str(secrets),
            lease_seconds=LEASE,
            workers=1,
        )
        path = self.tmp_path / f"swapyard-{port}.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    def schedule(self, url: str) -> None:
        """The instance's real jobs, its backup firing every `period` s from a few seconds on."""
        journal = SqlJournal(url)
        sched = BackupScheduler(
            journal.engine, self.provider, journal, {"restic": PASSWORD}.__getitem__, jitter=0
        )
        sched.start(paused=True)  # stores jobs; runs none in the test process
        try:
            sched.schedule_instance(instance(self.project, "demo", str(self.repos)))
            self.start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=6)
            trigger = IntervalTrigger(seconds=self.period, start_date=self.start, timezone=dt.UTC)
            sched.scheduler.reschedule_job(f"backup:{self.project}/demo", trigger=trigger)
        finally:
            sched.shutdown(wait=False)

    def fire_time(self, slot: int) -> float:
        assert self.start is not None
        return self.start.timestamp() + slot * self.period

    def runs(self, url: str) -> list[BackupRun]:
        history = BackupJournal(url)
        try:
            return history.runs(self.project, "demo", "backup")[::-1]
        finally:
            history.engine.dispose()

    def slots(self, runs: list[BackupRun]) -> list[int]:
        """The fire time each run belongs to (the period its start falls in)."""
        assert self.start is not None
        return [
            math.floor(
                (r.started.replace(tzinfo=dt.UTC) - self.start).total_seconds() / self.period  # type: ignore[union-attr]
            )
            for r in runs
        ]

    def after_slots(self, url: str, count: int, first: int = 0) -> list[BackupRun]:
        """Wait until `count` fire times have passed (not the next) and the runs of those
        from `first` on ended."""
        time.sleep(max(0.0, self.fire_time(count - 1) + self.period / 2 - time.time()))
        try:
            return self._ended(url, count, first)
        except AssertionError as exc:
            runs = self.runs(url)
            found = [
                (s, r.state, r.done, r.error) for s, r in zip(self.slots(runs), runs, strict=True)
            ]
            logs = {p.name: p.read_text()[-2000:] for p in self.tmp_path.glob("*.log")}
            raise AssertionError(f"{exc}: runs by fire time {found}; logs {logs}") from None

    def _ended(self, url: str, count: int, first: int) -> list[BackupRun]:
        return wait_for(
            lambda: (
                (runs := self.runs(url))
                # forget --prune follows the verdict, holding the repository's exclusive lock
                and all(r.finished and ("forget_prune" in r.done or r.error) for r in runs)
                and len(runs) >= count - first
                and runs
            ),
            self.period / 2 - 1,
            f"the runs of {count} fire times",
        )

    def assert_once_per_slot(self, runs: list[BackupRun], count: int, first: int = 0) -> None:
        """One successful run for each fire time from `first` to `count - 1`, and no other."""
        assert self.slots(runs) == list(range(first, count)), [(r.id, r.started) for r in runs]
        count -= first
        assert [r.state for r in runs] == [RunState.SUCCEEDED] * count, [r.error for r in runs]
        assert all(r.window is not None and r.window > 0 for r in runs)  # one window each
        # each run made its own snapshot, which it saw listed in the repository (`verify`);
        # the retention (daily=3) then prunes all but the newest of the day
        assert len({r.snapshot_id for r in runs}) == count and all("verify" in r.done for r in runs)
        journal = SqlJournal("sqlite://")
        sched = BackupScheduler(
            journal.engine, self.provider, journal, {"restic": PASSWORD}.__getitem__
        )
        snapshots = sched.snapshots(BackupJob.of(instance(self.project, "demo", str(self.repos))))
        sched.engine.dispose()
        assert runs[-1].snapshot_id in [s.id for s in snapshots]


def schedule_holder(url: str) -> Holder | None:
    db = Database(url)
    try:
        with db.session() as session:
            return holder(session)
    finally:
        db.dispose()


def process_group_of(held: Holder) -> int:
    pid = int(held.owner.split()[2])  # "<role> pid <pid> <unique> on <host>"
    return os.getpgid(pid)


@pytest.fixture
def setup(tmp_path: Path, provider: LocalProvider, project: str, ignition_v1: bytes) -> Setup:
    return Setup(tmp_path, provider, project, ignition_v1)


Launch = Callable[..., Any]


def test_two_serve_on_postgresql_back_up_once_per_fire_time_and_survive_a_kill(
    setup: Setup,
    pg_server: str,
    launch: Launch,  # noqa: F811
) -> None:
    url = fresh_database(pg_server)
    setup.deploy(url)
    logs, procs = [], []
    for n in range(2):
        port = free_port()
        logs.append(setup.tmp_path / f"serve-{n}.log")
        procs.append(
            launch(
                "serve", "--config", str(setup.config(url, port)), "--port", str(port), log=logs[-1]
            )
        )
        wait_for(lambda port=port: answers(port), 60, f"swapyard serve {n} ({logs[-1]})")
    said = [log.read_text() for log in logs]
    assert sum("schedule: runs in this process" in s for s in said) == 1, said
    assert sum("schedule: standing by to take it over; run by serve pid" in s for s in said) == 1

    setup.schedule(url)
    runs = setup.after_slots(url, 3)
    setup.assert_once_per_slot(runs, 3)

    first = schedule_holder(url)
    assert first is not None and first.owner.startswith("serve pid ")
    os.killpg(process_group_of(first), signal.SIGKILL)  # between two runs
    runs = setup.after_slots(url, 5)
    setup.assert_once_per_slot(runs, 5)  # the next two fire times ran, once each
    second = schedule_holder(url)
    assert second is not None and second.owner != first.owner
    assert second.since is not None and second.since > first.since  # type: ignore[operator]


def test_web_and_two_workers_on_postgresql_run_the_schedule_once(
    setup: Setup,
    pg_server: str,
    launch: Launch,  # noqa: F811
) -> None:
    url = fresh_database(pg_server)
    setup.deploy(url)
    # a worker takes ~10 s to start: the run of the missed fire times must end before the next
    setup.period = 30
    port = free_port()
    config = str(setup.config(url, port))
    web_log = setup.tmp_path / "web.log"
    launch("web", "--config", config, "--port", str(port), log=web_log)
    wait_for(lambda: answers(port), 60, f"swapyard web ({web_log})")
    assert "schedule: not run by this process (web only); no process runs it now" in (
        web_log.read_text()
    )

    # two fire times pass with no process to run them: the workers run them once, coalesced
    setup.schedule(url)
    time.sleep(max(0.0, setup.fire_time(1) + 2 - time.time()))
    assert setup.runs(url) == []
    workers = {}
    for n in range(2):
        log = setup.tmp_path / f"worker-{n}.log"
        workers[log] = launch("worker", "--config", config, log=log)
    for log in workers:
        wait_for(lambda log=log: "schedule: " in log.read_text(), 60, f"a worker ({log})")
    said = [log.read_text() for log in workers]
    assert sum("schedule: runs in this process (worker pid" in s for s in said) == 1, said
    assert sum("schedule: standing by to take it over; run by worker pid" in s for s in said) == 1

    runs = setup.after_slots(url, 4, first=1)
    setup.assert_once_per_slot(runs, 4, first=1)  # fire times 0 and 1 ran once, in slot 1

    held = schedule_holder(url)
    assert held is not None and held.since is not None
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "swapyard_schedule_held 1" in metrics
    since = f'swapyard_schedule_holder_since_seconds{{process="{held.owner}"}} {held.since!r}'
    assert since in metrics
    overview = requests.get(
        f"http://127.0.0.1:{port}/api/instances/{setup.project}/demo/backups",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    assert overview["schedule"]["process"] == held.owner
    browser = requests.Session()
    browser.post(f"http://127.0.0.1:{port}/login", data={"token": TOKEN}, timeout=10)
    page = browser.get(f"http://127.0.0.1:{port}/", timeout=10).text
    assert f'Scheduled jobs run in <code>{held.owner}</code> since <time datetime="20' in page

    # a clean stop of the holder hands the schedule to the other worker
    os.killpg(process_group_of(held), signal.SIGTERM)
    runs = setup.after_slots(url, 5, first=1)
    setup.assert_once_per_slot(runs, 5, first=1)
    after = schedule_holder(url)
    assert after is not None and after.owner != held.owner and after.owner.startswith("worker")


def test_one_serve_on_sqlite_runs_the_schedule_as_before(
    setup: Setup,
    launch: Launch,  # noqa: F811
) -> None:
    url = f"sqlite:///{setup.tmp_path / 'data' / 'swapyard.db'}"
    setup.deploy(url)
    port = free_port()
    log = setup.tmp_path / "serve.log"
    launch("serve", "--config", str(setup.config(url, port)), "--port", str(port), log=log)
    wait_for(lambda: answers(port), 60, f"swapyard serve ({log})")
    assert "schedule: runs in this process (serve pid" in log.read_text()
    setup.schedule(url)
    runs = setup.after_slots(url, 2)
    setup.assert_once_per_slot(runs, 2)
