"""The BackupScheduler: persistent jobs per instance, synced from the config model."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from deploy.backup.jobs import BackupJob, cron_trigger
from deploy.backup.journal import RunState
from deploy.backup.restic import SecretLookup
from deploy.backup.schedule import BackupScheduler
from deploy.providers.base import Provider
from deploy.swap.sqljournal import SqlJournal
from schemas.model import Backup, Dns, Instance, Retention, SecretRef, Volume
from tests.deploy.backup.conftest import Deployed

BERLIN = ZoneInfo("Europe/Berlin")


def instance(project: str, name: str, repository: str, **backup: object) -> Instance:
    return Instance(
        project=project,
        name=name,
        source=f"instances/{name}/apps.config",
        provider="local",
        size="small",
        region="local",
        channel="stable",
        timezone="Europe/Berlin",
        https=False,
        acme_email=None,
        volume=Volume("64M", 64 << 20, "ext4", "sydata"),
        apps=(),
        dns=Dns("none"),
        backup=Backup(
            enabled=True,
            schedule=str(backup.get("schedule", "0 3 * * *")),
            drill_schedule=backup.get("drill_schedule"),  # type: ignore[arg-type]
            repository=repository,
            password=SecretRef("restic"),
            retention=Retention(daily=3),
        ),
    )


def scheduler(
    url: str, provider: Provider, secrets: SecretLookup, **options: int
) -> BackupScheduler:
    """A scheduler on the database at `url`, its live records and locks in the same one."""
    journal = SqlJournal(url)
    return BackupScheduler(journal.engine, provider, journal, secrets, **options)


def test_cron_weekdays_are_crontab_ones() -> None:
    sunday = cron_trigger("0 5 * * 0", "UTC")
    after = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # a Monday
    assert sunday.get_next_fire_time(None, after) == dt.datetime(2026, 11, 29, 5, tzinfo=dt.UTC)
    weekdays = cron_trigger("0 5 * * 1-5", "UTC")
    assert weekdays.get_next_fire_time(None, after).weekday() == 0  # Monday


def test_jobs_follow_the_instances_and_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'swapyard.db'}"
    secrets = {"restic": "pw-schedule"}.__getitem__
    blog = instance("p", "blog", str(tmp_path / "repos"), schedule="30 2 * * *")
    first = scheduler(url, Provider(), secrets, jitter=600)
    first.start()
    try:
        assert first.sync_instances([blog]) == ["backup:p/blog", "check:p/blog"]
        assert (tmp_path / "repos" / "p" / "blog" / "config").exists()  # initialized
        due = first.next_run("p", "blog")
        assert due is not None
        local = due.astimezone(BERLIN)
        assert (local.hour, local.minute // 10) == (2, 3)  # 02:30 Berlin + up to 10 min jitter
        assert first.sync_instances([blog]) == []  # unchanged: the next run stays
        assert first.next_run("p", "blog") == due
    finally:
        first.shutdown()
    second = scheduler(url, Provider(), secrets, jitter=600)
    second.start(paused=True)
    try:
        assert second.next_run("p", "blog") == due  # the same job, the same next run
        job = second.scheduler.get_job("backup:p/blog")
        assert job.coalesce and str(job.trigger.timezone) == "Europe/Berlin"
        later = replace(blog, backup=replace(blog.backup, schedule="0 4 * * *"))
        assert second.sync_instances([later]) == ["backup:p/blog", "check:p/blog"]
        assert second.next_run("p", "blog").astimezone(BERLIN).hour == 4  # type: ignore[union-attr]
        other = instance("q", "shop", str(tmp_path / "repos"))
        second.sync_instances([other], project="q")  # p's jobs are not q's business
        assert {j.id for j in second.scheduler.get_jobs()} == {
            "backup:p/blog",
            "check:p/blog",
            "backup:q/shop",
            "check:q/shop",
            "staleness",
        }
        drilled = replace(later, backup=replace(later.backup, drill_schedule="0 6 1 * *"))
        assert second.sync_instances([drilled, other], project=None) == [
            "backup:p/blog",
            "check:p/blog",
            "drill:p/blog",
        ]
        drill_job = second.scheduler.get_job("drill:p/blog")
        assert drill_job.args[1] == "drill" and drill_job.args[2]["drill_schedule"] == "0 6 1 * *"
        second.sync_instances([later, other])  # the drill schedule removed: its job goes
        assert second.scheduler.get_job("drill:p/blog") is None
        second.remove_instance("q", "shop")
        second.sync_instances([])
        assert [j.id for j in second.scheduler.get_jobs()] == ["staleness"]
    finally:
        second.shutdown()


@pytest.mark.docker
@pytest.mark.slow
def test_a_scheduled_job_backs_up_the_live_instance(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    secrets = {"restic": "pw-scheduled"}.__getitem__
    sched = BackupScheduler(d.swaps.engine, d.provider, d.swaps, secrets, jitter=0)
    sched.start()
    try:
        sched.sync_instances([instance(d.project, "demo", str(tmp_path / "repos"))])
        key = f"{d.project}/demo"
        sched.scheduler.modify_job(f"backup:{key}", next_run_time=dt.datetime.now(dt.UTC))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = d.history.runs(d.project, "demo", "backup")
            if runs and (runs[0].state == "failed" or "forget_prune" in runs[0].done):
                break  # forget --prune follows the verdict
            time.sleep(0.2)
        assert runs and runs[0].state == RunState.SUCCEEDED, runs and runs[0].error
        assert "forget_prune" in runs[0].done
        assert sched.next_run(d.project, "demo") > dt.datetime.now(dt.UTC)  # type: ignore[operator]
        sched.run_now(
            "check", BackupJob.from_stored(sched.scheduler.get_job(f"check:{key}").args[2])
        )
        assert d.history.runs(d.project, "demo", "check")[0].state == RunState.SUCCEEDED
        assert d.history.alerts() == []  # fresh snapshot: not stale
        job = BackupJob.of(instance(d.project, "demo", str(tmp_path / "repos")))
        assert [s.id for s in sched.snapshots(job)] == [runs[0].snapshot_id]
        assert sched.drill(job).comparison.ok
    finally:
        sched.shutdown()
    assert d.get("notes.test", "/cgi-bin/add?after").status_code == 200


def test_an_unreachable_repository_still_gets_its_jobs_and_an_alert(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'swapyard.db'}"
    secrets = {"restic": "pw-schedule"}.__getitem__
    closed = instance("p", "blog", "rest:http://127.0.0.1:9/")  # nothing listens on port 9
    sched = scheduler(url, Provider(), secrets, jitter=0)
    sched.start(paused=True)
    try:
        assert sched.schedule_instance(closed) == ["backup:p/blog", "check:p/blog"]
        [alert] = sched.history.alerts("p", "blog")
        assert alert.kind == "failed" and "repository not ready" in alert.message
        assert "pw-schedule" not in alert.message
    finally:
        sched.shutdown()
