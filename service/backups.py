"""Backups in the service: the scheduler's lifecycle, and what the API and CLI show.

The scheduler (deploy.schedule.BackupScheduler, APScheduler with its jobs in
the service's database) exists wherever a deployer does. `swapyard serve`
runs it; a separate `swapyard worker` starts it paused, so the jobs its
deploys create are stored for the serving process to run. After a deploy the
instance's jobs are created or changed; after a destroy they are removed. A
scheduling failure is logged and never fails a deploy.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from flask import Flask

from deploy.schedule import BackupScheduler
from schemas import Instance

from .deployer import Deployer

log = logging.getLogger(__name__)
KEY = "swapyard.backups"


class Backups:
    """The scheduler of one process, and the hooks the deployer calls."""

    def __init__(self, deployer: Deployer):
        self.scheduler = BackupScheduler(
            deployer.database,
            deployer.provider,
            deployer.secrets.require,
            health_timeout=float(deployer.settings["HEALTH_TIMEOUT"]),
        )
        deployer.on_live.append(self.instance_live)
        deployer.on_destroyed.append(self.instance_destroyed)

    def start(self, run_jobs: bool) -> None:
        """Bring back apps a dead backup left in maintenance, then start (or store only)."""
        for run in self.scheduler.recover():
            log.warning("recovered backup run %s of %s/%s", run.id, run.project, run.name)
        self.scheduler.start(paused=not run_jobs)

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=True)

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
            "alerts": [asdict(a) for a in self.scheduler.history.alerts(project, name)],
            "runs": [asdict(r) for r in self.scheduler.history.runs(project, name)[:50]],
        }


def init_app(app: Flask, deployer: Deployer | None) -> Backups | None:
    """Create (not start) the app's backup scheduler when it deploys and backups are on."""
    backups = Backups(deployer) if deployer is not None and app.config["BACKUPS"] else None
    app.extensions[KEY] = backups
    return backups


def get_backups(app: Flask) -> Backups | None:
    return app.extensions.get(KEY)
