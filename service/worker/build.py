"""The build: every part of the work constructed once, each handed its collaborators.

The parts know one another only through their constructors, so this is the
one place that says who talks to whom:

- the provider and the secret store are opened once; the deployer deploys
  through them and the backup scheduler backs up through the same ones;
- the deployer tells the backups (`instance_live`, `instance_destroyed`) when
  an instance is deployed or destroyed, and the wait notice when a deploy
  waits for a backup;
- the pipeline has the deployer as its executor (none with DEPLOY off: plan
  only); the deployment runner runs it;
- the event dispatcher and the deployment runner share one workspace (the
  lease identity, the mirrors, the scratch directory);
- the worker drives them all in threads; its doorbell is what the inbox
  rings (`Worker.wake`, handed to the inbox by the app factory).

Nothing here opens a socket, starts a thread or touches the provider's
instances: that waits for `Worker.start`.
"""

from __future__ import annotations

from deploy.backup.schedule import BackupScheduler
from deploy.swap.sqljournal import SqlJournal
from handlers.gitops.mirror import MirrorCache
from handlers.gitops.pipeline import Pipeline
from service.forge.statuses import StatusSender
from service.settings import Settings
from service.store.db import Database
from service.worker.backups import Backups
from service.worker.deployer import Deployer, open_provider, open_secrets
from service.worker.deployments import DeploymentRunner, WaitNotice
from service.worker.doorbell import Doorbell
from service.worker.events import EventDispatcher
from service.worker.missedpushes import MissedPushCheck
from service.worker.threads import Worker
from service.worker.workspace import Workspace


def build_worker(db: Database, settings: Settings) -> Worker:
    """The worker of one process and its parts, wired; started later by `Worker.start`."""
    limits = settings.limits
    mirrors = MirrorCache(settings.data_dir / "mirrors")
    deployer: Deployer | None = None
    backups: Backups | None = None
    if settings.deploy:
        provider, secrets = open_provider(settings), open_secrets(settings)
        journal = SqlJournal(db.engine)  # the swap's, and what backups read of the live state
        if settings.backups:
            scheduler = BackupScheduler(
                db.engine,
                provider,
                journal,
                secrets.require,
                health_timeout=settings.health_timeout,
            )
            backups = Backups(scheduler, db, settings.lease_seconds)
        deployer = Deployer(
            settings,
            db.engine,
            provider,
            secrets,
            journal,
            on_wait=WaitNotice(db, settings.public_url),
            on_live=backups.instance_live if backups else None,
            on_destroyed=backups.instance_destroyed if backups else None,
        )
    workspace = Workspace(
        mirrors,
        settings.data_dir / "work",
        limits,
        settings.lease_seconds,
        settings.repositories,
    )
    pipeline = Pipeline(executor=deployer, limits=limits)
    return Worker(
        settings,
        events=EventDispatcher(db, settings, workspace),
        deployments=DeploymentRunner(db, settings, workspace, pipeline),
        sender=StatusSender(db, settings),
        missed_pushes=MissedPushCheck(db, settings, mirrors),
        doorbell=Doorbell(),
        deployer=deployer,
        backups=backups,
    )
