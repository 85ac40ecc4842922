"""`BackupScheduler`: APScheduler 3.x jobs for every instance's backups, persisted in SQL.

One background scheduler per process, its jobs in the `backup_jobs` table
of the service's database (APScheduler's SQLAlchemy job store), so they and
their next run times survive a restart. Of the processes sharing a database
only one runs its scheduler; the others keep theirs paused to store jobs
(the service picks which: service.worker.leader). Per instance with backups enabled:

- `backup:<project>/<name>` — cron from `backup.schedule` in the instance's
  timezone (default 03:00), with jitter so instances do not start together;
  missed runs coalesce into one;
- `check:<project>/<name>` — `backup.check_schedule` (weekly by default):
  `restic check` and the staleness check;
- `drill:<project>/<name>` — only with `backup.drill_schedule`: a restore
  drill of the latest snapshot into a scratch volume.

Plus `staleness` every `stale_every` seconds over all instances. Jobs are
created, changed and removed by `sync_instances` (on deploy) and
`remove_instance` (on destroy). A job is a `deploy.backup.jobs.BackupJob`,
stored as plain values (names of secrets, never their values); it reaches
this object through a registry
keyed by the scheduler's `name`, because APScheduler stores a textual
reference to a module-level function, not a bound method (so `run_job`
stays here: stored jobs name `deploy.backup.schedule:run_job`). What a job is
and its cron trigger are `deploy.backup.jobs`. What is live and the
instance's lock come from the caller (`live`, a `deploy.live.LiveStore`:
the swap journal in the service), never from the swap engine itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from deploy.backup.check import check_repository, check_staleness
from deploy.backup.jobs import BackupJob, cron_trigger
from deploy.backup.journal import BackupJournal, BackupRun, RunState
from deploy.backup.restic import ResticRepo, SecretLookup, Snapshot, repository_for
from deploy.backup.restore import RestoreReport, drill
from deploy.backup.restoreswap import restore_live
from deploy.backup.run import BackupRunner, tags_of
from deploy.live import LiveStore
from deploy.providers.base import Provider
from deploy.providers.types import BackupError
from schemas.model import Instance

log = logging.getLogger(__name__)
__all__ = ["BackupScheduler", "run_job"]

_ACTIVE: weakref.WeakValueDictionary[str, BackupScheduler] = weakref.WeakValueDictionary()


def run_job(scheduler_name: str, kind: str, stored: dict[str, Any]) -> None:
    """Entry point APScheduler calls (by textual reference); dispatches to the live scheduler.

    `stored` is `BackupJob.stored()` (empty for the `staleness` job).
    """
    owner = _ACTIVE.get(scheduler_name)
    if owner is None:
        log.error(
            "backup job %s for %s: scheduler %r is gone", kind, stored.get("name"), scheduler_name
        )
        return
    if not owner.may_run():
        log.warning(
            "backup job %s for %s not run: this process no longer runs the schedule",
            kind,
            stored.get("name"),
        )
        return
    owner.run_now(kind, BackupJob.from_stored(stored) if stored else None)


class BackupScheduler:
    """Scheduled backups, checks and staleness alerts for the instances of one provider.

    `url` is a SQLAlchemy URL or engine (the service's database); `live` is
    where the live records and the instances' locks are (the swap journal);
    `secrets`
    resolves a secret's name to its value; `health_timeout` bounds the wait
    for restarted apps before the maintenance page goes off (the deploys'
    HEALTH_TIMEOUT in the service). Call `recover()` and `start()` at
    startup, `sync_instances()` after each deploy, `remove_instance()` after
    a destroy, `shutdown()` on exit. Several processes on one database each
    have one, and only one may run jobs (APScheduler 3 allows one running
    scheduler per job store): the others `start(paused=True)`, which still
    stores jobs; `resume()` and `pause()` hand the running over, and
    `may_run`, asked before every scheduled job, is how the caller confirms
    this process still holds that right.
    """

    def __init__(
        self,
        url: str | sa.Engine,
        provider: Provider,
        live: LiveStore,
        secrets: SecretLookup,
        *,
        name: str = "default",
        jitter: int = 900,
        stale_every: int = 3600,
        retry_after: int = 600,
        misfire_grace: int = 6 * 3600,
        restic_options: dict[str, Any] | None = None,
        health_timeout: float = 60,
    ):
        self.engine = sa.create_engine(url) if isinstance(url, str) else url
        self.provider = provider
        self.secrets = secrets
        self.name = name
        self.jitter = jitter
        self.stale_every = stale_every
        self.retry_after = retry_after
        self.restic_options = restic_options or {}
        self.may_run: Callable[[], bool] = lambda: True
        self._repo_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.live = live
        self.history = BackupJournal(self.engine)
        self.health_timeout = health_timeout
        self.runner = BackupRunner(provider, live, self.history, health_timeout=health_timeout)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename="backup_jobs")},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace,
            },
            timezone=dt.UTC,
        )

    # -- lifecycle -------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        """Start the background scheduler (jobs from the database resume their schedule)."""
        _ACTIVE[self.name] = self
        self.scheduler.start(paused=paused)
        self._ensure_staleness()

    def _ensure_staleness(self) -> None:
        """Add the staleness job, or change it when its interval differs; never reset it.

        Every process on a database starts a scheduler: re-adding the job at
        each start would push its next run back every time one starts.
        """
        job = self.scheduler.get_job("staleness")
        every = dt.timedelta(seconds=self.stale_every)
        if job is not None and getattr(job.trigger, "interval", None) == every:
            return
        self.scheduler.add_job(
            run_job,
            "interval",
            seconds=self.stale_every,
            id="staleness",
            args=[self.name, "staleness", {}],
            replace_existing=True,
        )

    def resume(self) -> None:
        """Run jobs from now on (missed runs coalesce into one, within the misfire grace)."""
        self.scheduler.resume()

    def pause(self) -> None:
        """Run no more jobs (running ones finish); jobs can still be stored."""
        if self.scheduler.running:
            self.scheduler.pause()

    def wakeup(self) -> None:
        """Look at the job store now: a job another process added or changed may be due."""
        if self.scheduler.running:
            self.scheduler.wakeup()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler; `wait` lets running jobs finish (their `finally` restarts apps)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        if _ACTIVE.get(self.name) is self:
            del _ACTIVE[self.name]

    def recover(self) -> list[BackupRun]:
        """Bring back the apps of backups a dead process left running (call before `start`)."""
        return self.runner.recover()

    # -- jobs ------------------------------------------------------------------
    def sync_instances(
        self,
        instances: Iterable[Instance],
        *,
        project: str | None = None,
        init_repositories: bool = True,
    ) -> list[str]:
        """Create, change or remove jobs to match `instances`; returns the job ids touched.

        Instances absent from the list lose their jobs (only those of
        `project` when given). An unchanged job keeps its next run time.
        A new repository is initialized (`init_repositories`); one
        instance's failure is logged and the others carry on.
        """
        wanted: dict[str, BackupJob] = {}
        for inst in instances:
            if inst.backup.enabled and inst.state == "present" and inst.backup.repository:
                wanted[inst.key] = BackupJob.of(inst)
        touched = []
        for job in self.scheduler.get_jobs():
            kind, _, key = job.id.partition(":")
            if kind not in ("backup", "check", "drill"):
                continue
            if key not in wanted and (project is None or key.startswith(f"{project}/")):
                self.scheduler.remove_job(job.id)
                touched.append(job.id)
        for key, job in wanted.items():
            try:
                touched += self._ensure_jobs(job, init_repositories)
            except Exception:
                log.exception("%s: backup jobs not scheduled", key)
        return touched

    def _ensure_jobs(self, job: BackupJob, init: bool) -> list[str]:
        key = job.key
        current = self.scheduler.get_job(f"backup:{key}")
        stored = job.stored()
        if current is not None and current.args[2] == {**stored, "since": current.args[2]["since"]}:
            return []
        if init:
            self._init_repository(job)
        since = current.args[2]["since"] if current else dt.datetime.now(dt.UTC).isoformat()
        stored["since"] = since
        kinds = [("backup", job.backup.schedule), ("check", job.backup.check_schedule)]
        if job.backup.drill_schedule:
            kinds.append(("drill", job.backup.drill_schedule))
        elif self.scheduler.get_job(f"drill:{key}"):
            self.scheduler.remove_job(f"drill:{key}")
        for kind, cron in kinds:
            self.scheduler.add_job(
                run_job,
                cron_trigger(cron, job.timezone, self.jitter),
                id=f"{kind}:{key}",
                name=f"{kind} {key}",
                args=[self.name, kind, stored],
                replace_existing=True,
            )
        return [f"{kind}:{key}" for kind, _ in kinds]

    def _init_repository(self, job: BackupJob) -> bool:
        """Create the repository if missing; a failure is an alert, never a missing schedule.

        A repository that cannot be reached at deploy time (network, credentials)
        must not leave the instance without backup jobs: the jobs are scheduled
        anyway, and each run tries again.
        """
        try:
            created = self.repo(job).init_if_missing()
        except Exception as exc:
            log.error("%s: restic repository %s not ready: %s", job.key, job.backup.repository, exc)
            self.history.raise_alert(
                job.project, job.name, "failed", f"repository not ready: {exc}"
            )
            return False
        if created:
            log.info("%s: restic repository %s initialized", job.key, job.backup.repository)
        return True

    def schedule_instance(self, instance: Instance) -> list[str]:
        """Create or change the jobs of one deployed instance (remove them if it has none).

        What the worker calls after each successful deploy; other instances'
        jobs are untouched (unlike `sync_instances`, which mirrors a whole list).
        """
        if not (
            instance.backup.enabled and instance.state == "present" and instance.backup.repository
        ):
            self.remove_instance(instance.project, instance.name)
            return []
        return self._ensure_jobs(BackupJob.of(instance), True)

    def job_of(self, key: str) -> BackupJob:
        """The scheduled backup job of `project/name`; `BackupError` naming the known ones."""
        jobs = self.jobs()
        if key not in jobs:
            known = ", ".join(sorted(jobs)) or "none"
            raise BackupError(f"no backup is scheduled for {key!r} (scheduled: {known})")
        return jobs[key]

    def jobs(self) -> dict[str, BackupJob]:
        """The backup job of every scheduled instance, by `project/name`."""
        out = {}
        for job in self.scheduler.get_jobs():
            kind, _, key = job.id.partition(":")
            if kind == "backup":
                out[key] = BackupJob.from_stored(job.args[2])
        return out

    def remove_instance(self, project: str, name: str) -> None:
        """Remove the jobs of a destroyed instance (its snapshots stay in the repository)."""
        for kind in ("backup", "check", "drill", "retry"):
            job_id = f"{kind}:{project}/{name}"
            if self.scheduler.get_job(job_id):
                self.scheduler.remove_job(job_id)

    def next_run(self, project: str, name: str) -> dt.datetime | None:
        """When the next backup of an instance is due, or None."""
        job = self.scheduler.get_job(f"backup:{project}/{name}")
        return job.next_run_time if job else None

    # -- on demand (what `swapyard backup now|list|drill|restore` calls) -------------
    def backup_now(self, instance: Instance) -> BackupRun | None:
        """Back up one instance now (its schedule is untouched)."""
        return self.run_now("backup", BackupJob.of(instance))

    def snapshots(self, job: BackupJob) -> list[Snapshot]:
        """The instance's snapshots in its repository, oldest first."""
        return self.repo(job).snapshots(tags_of(job.project, job.name))

    def drill(self, job: BackupJob, snapshot_id: str | None = None) -> RestoreReport:
        """Restore drill of the latest (or a given) snapshot into a scratch volume."""
        return drill(
            self.provider,
            self.repo(job),
            self.history,
            job.project,
            job.name,
            size_bytes=job.size_bytes,
            filesystem=job.filesystem,
            snapshot_id=snapshot_id,
        )

    def restore(self, job: BackupJob, snapshot_id: str | None = None) -> BackupRun:
        """Restore a snapshot (default: the latest) and swap it in as the live data."""
        return restore_live(
            self.provider,
            self.live,
            self.history,
            self.repo(job),
            job.project,
            job.name,
            job.apps,
            snapshot_id=snapshot_id,
            health_timeout=self.health_timeout,
        )

    # -- running -----------------------------------------------------------------
    def repo(self, job: BackupJob) -> ResticRepo:
        """The restic repository of a job, its secrets resolved now."""
        return repository_for(
            job.project, job.name, job.backup, self.secrets, **self.restic_options
        )

    def run_now(self, kind: str, job: BackupJob | None = None) -> BackupRun | None:
        """Run a job body now: `backup`, `check`, `drill` (of `job`) or `staleness` (of all).

        Failures are journaled.
        """
        if job is None:
            if kind != "staleness":
                raise ValueError(f"a {kind} job needs the instance's BackupJob")
            self._staleness_all()
            return None
        with self._locks_guard:  # restic check and prune lock the repository exclusively
            lock = self._repo_locks.setdefault(job.key, threading.Lock())
        with lock:
            return self._run_locked(kind, job)

    def _run_locked(self, kind: str, job: BackupJob) -> BackupRun | None:
        try:
            repo = self.repo(job)
            if kind == "check":
                check_repository(self.history, repo, job.project, job.name)
                self._staleness(job, repo)
                return None
            if kind == "drill":
                self.drill(job)  # journaled; a failed drill raises a `drill` alert
                return None
            repo.init_if_missing()  # it may not have been reachable when it was scheduled
            run = self.runner.run(job.project, job.name, repo, retention=job.backup.retention)
        except Exception as exc:
            log.error("%s: %s job failed: %s", job.key, kind, exc)
            self.history.raise_alert(job.project, job.name, "failed", f"{kind}: {exc}")
            return None
        if run.state == RunState.SKIPPED and run.instance_id and self.scheduler.running:
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.retry_after)
            self.scheduler.add_job(
                run_job,
                "date",
                run_date=when,
                id=f"retry:{job.key}",
                args=[self.name, "backup", job.stored()],
                replace_existing=True,
            )
        return run

    def _staleness(self, job: BackupJob, repo: ResticRepo) -> None:
        since = dt.datetime.fromisoformat(job.since) if job.since else None
        check_staleness(
            self.history,
            repo,
            job.project,
            job.name,
            schedule=job.backup.schedule,
            timezone=job.timezone,
            jitter=self.jitter,
            since=since,
        )

    def _staleness_all(self) -> None:
        for key, job in self.jobs().items():
            try:
                self._staleness(job, self.repo(job))
            except Exception as exc:
                log.error("backup:%s: staleness check failed: %s", key, exc)
