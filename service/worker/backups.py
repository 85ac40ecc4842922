"""Backups in the service: the scheduler's lifecycle, and what the API and CLI show.

The scheduler (deploy.backup.schedule.BackupScheduler, APScheduler with its jobs in
the service's database) exists wherever a deployer does, and every process
starts it paused, so the jobs its deploys create are stored. Exactly one
process on a database runs the jobs: the one holding the `schedule` lease
(service.worker.leader). `swapyard serve` and `swapyard worker` stand for it,
`swapyard web` does not (it serves HTTP only). On taking the lease a process
first brings back the apps of backups the previous holder left in
maintenance, then resumes its scheduler; on losing it, it pauses. After a
deploy the instance's jobs are created or changed; after a destroy they are
removed (the build hands `instance_live` and `instance_destroyed` to the
deployer). A scheduling failure is logged and never fails a deploy.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict
from typing import Any

from flask import Flask

from deploy.backup.schedule import BackupScheduler
from schemas import Instance
from service.store.db import Database
from service.worker.leader import Holder, Leader, holder, process_name

log = logging.getLogger(__name__)
KEY = "swapyard.backups"


class Backups:
    """The scheduler of one process, its candidacy for the schedule, what deploys tell it."""

    def __init__(self, scheduler: BackupScheduler, db: Database, lease_seconds: float):
        self.scheduler = scheduler
        self.db = db
        self.lease_seconds = lease_seconds
        self.leader: Leader | None = None

    def start(self, role: str | None) -> None:
        """Start the scheduler paused; with a `role` (serve, worker), stand for the schedule.

        The candidate tries for the lease once before this returns, so
        `leads` already tells whether this process runs the schedule.
        """
        self.scheduler.start(paused=True)
        if role is None:
            return
        self.leader = Leader(
            self.db,
            process_name(role),
            self.lease_seconds,
            lead=self._lead,
            follow=self.scheduler.pause,
            wake=self.scheduler.wakeup,
        )
        self.scheduler.may_run = self.leader.holds
        self.leader.start()

    def _lead(self) -> None:
        """Bring back apps the previous holder's backups left in maintenance, then run jobs."""
        for run in self.scheduler.recover():
            log.warning("recovered backup run %s of %s/%s", run.id, run.project, run.name)
        self.scheduler.resume()

    @property
    def leads(self) -> bool:
        return self.leader is not None and self.leader.leading

    def holder(self) -> Holder | None:
        """The process that runs the schedule now (any process on the database), or None."""
        with self.db.session() as session:
            return holder(session)

    def schedule_holder(self) -> dict[str, Any] | None:
        """Which process runs the schedule and since when (UTC, ISO 8601), for the API and pages."""
        current = self.holder()
        if current is None:
            return None
        since = dt.datetime.fromtimestamp(current.since, dt.UTC) if current.since else None
        return {"process": current.owner, "since": since.isoformat() if since else None}

    def shutdown(self) -> None:
        """Run no new job, let running ones finish, then give the lease to the next process.

        The lease is kept (renewed) while a backup finishes: a successor's
        start-up recovery would otherwise end that backup under it.
        """
        self.scheduler.pause()
        self.scheduler.shutdown(wait=True)
        if self.leader is not None:
            self.leader.stop()

    def instance_live(self, instance: Instance) -> None:
        try:
            self.scheduler.schedule_instance(instance)
        except Exception:  # a backup schedule must never fail a deploy
            log.exception("%s: backup jobs not scheduled", instance.key)

    def instance_destroyed(self, instance: Instance) -> None:
        self.scheduler.remove_instance(instance.project, instance.name)

    def overview(self, project: str, name: str) -> dict[str, Any]:
        """Runs, open alerts and the next run of one instance, for the API and pages."""
        next_run = self.scheduler.next_run(project, name)
        return {
            "instance": f"{project}/{name}",
            "next_run": next_run.isoformat() if next_run else None,
            "schedule": self.schedule_holder(),
            "alerts": [asdict(a) for a in self.scheduler.history.alerts(project, name)],
            "runs": [asdict(r) for r in self.scheduler.history.runs(project, name)[:50]],
        }


def schedule_line(backups: Backups | None) -> str:
    """What a process says at start about the schedule: whether it runs it, and who does."""
    if backups is None:
        return "schedule: none in this process (backups off: settings DEPLOY, BACKUPS)"
    leader = backups.leader
    if leader is not None and leader.leading:
        return f"schedule: runs in this process ({leader.owner})"
    current = backups.schedule_holder()
    where = (
        f"run by {current['process']} since {current['since']}"
        if current
        else "no process runs it now"
    )
    if backups.leader is None:
        return f"schedule: not run by this process (web only); {where}"
    return f"schedule: standing by to take it over; {where}"


def get_backups(app: Flask) -> Backups | None:
    return app.extensions.get(KEY)
