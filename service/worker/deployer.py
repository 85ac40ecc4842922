"""The deploy side of the worker: a validated instance becomes a running one.

`Deployer` is the pipeline's executor. It renders the instance *resolved*
(secret values from the store; the only render that ever holds them, handed
straight to the provider and never stored), builds the `DeploySpec` and lets
the swap engine decide between noop, create and replace; `state: absent`
destroys. The engine journals every step in its own tables of the service's
database, so `recover()` at start-up finishes or rolls back whatever a dead
worker left.

A deploy that meets a backup or a restore of the instance waits for it (up
to DEPLOY_LOCK_WAIT_SECONDS): its `on_wait` hears it at once (the worker
shows it on the running deployment), and the wait becomes a `wait_lock`
step of the deployment's history. A swap whose DNS records moved keeps the
old instance until the old records' TTL has passed: `on_wait` hears that
too, with the time it will be destroyed. Meanwhile the worker keeps renewing its
lease on the deployment, as for any long step. `on_live` and
`on_destroyed` hear of an instance deployed or destroyed (the backup
schedule follows them).

The provider and the secret store are opened apart (`open_provider`,
`open_secrets`) and handed in, because the backup scheduler works on the
same ones and the deployer tells it about deploys: the build
(service.worker.build) opens them once and hands each part what it needs.

Settings (service.settings): PROVIDER, STATE_DIR, SECRETS_DIR, IMAGE_MAP,
RENDER_HTTPS, READY_TIMEOUT, HEALTH_TIMEOUT, DEPLOY_LOCK_WAIT_SECONDS, and the
options the provider's driver declares (`Settings.provider_options`), which
are handed to it as they are: this module knows no driver's options.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from deploy.backup.journal import BackupJournal
from deploy.dns.base import DnsDriver
from deploy.dns.records import DnsSpec
from deploy.dns.registry import open_zone, zone_access
from deploy.providers.base import Provider, option_arguments
from deploy.providers.registry import get_driver
from deploy.providers.types import SwapInProgress
from deploy.spec import DeploySpec, dns_spec
from deploy.steps.sql import epoch
from deploy.swap.engine import SwapEngine, SwapResult
from deploy.swap.journal import Journal
from deploy.swap.sqljournal import SqlJournal
from handlers.gitops.pipeline import DeploymentStatus, Execution, HistoryStep, StepStatus
from renderers import RenderOptions, render_instance
from schemas import Instance
from service.secrets import DirectorySecretStore
from service.settings import Settings

log = logging.getLogger(__name__)


def open_provider(settings: Settings) -> Provider:
    """The provider named by PROVIDER, its state under STATE_DIR (default DATA_DIR/state),
    given the options its driver declares (`Settings.provider_options`) as they are."""
    driver: Any = get_driver(settings.provider)
    provider: Provider = driver(
        settings.state_dir or settings.data_dir / "state",
        **option_arguments(settings.provider_options),
    )
    return provider


def open_secrets(settings: Settings) -> DirectorySecretStore:
    """The secret store under SECRETS_DIR (default DATA_DIR/secrets)."""
    return DirectorySecretStore(settings.secrets_dir or settings.data_dir / "secrets")


def journaled_steps(journal: Journal, swap_id: int) -> tuple[HistoryStep, ...]:
    """A swap's journaled steps as a deployment's history keeps them (a timeline draws them)."""
    return tuple(
        HistoryStep(
            s.step,
            StepStatus(s.status),
            epoch(s.started),
            epoch(s.finished or s.started),
            s.detail,
        )
        for s in journal.steps(swap_id)
    )


class _Wait:
    """The engine's `on_wait` for one deploy: tells the deployer's `on_wait`, remembers for
    the history."""

    def __init__(self, instance: Instance, tell: Callable[[Instance, str], None] | None):
        self.instance = instance
        self.tell = tell
        self.since: float | None = None
        self.until: float | None = None
        self.notes: list[str] = []

    def __call__(self, text: str, waiting: bool) -> None:
        now = time.time()
        self.since = self.since or now
        self.until = None if waiting else now
        self.notes.append(text)
        log.info("%s", text)
        if self.tell is not None:
            self.tell(self.instance, text)

    def steps(self, gave_up: str | None = None) -> tuple[HistoryStep, ...]:
        """The `wait_lock` step when the deploy waited (`gave_up`: why it stopped waiting)."""
        if self.since is None:
            return ()
        log_text = "\n".join([*self.notes, gave_up] if gave_up else self.notes)
        status = StepStatus.FAILED if gave_up else StepStatus.DONE
        return (HistoryStep("wait_lock", status, self.since, self.until or time.time(), log_text),)


class Deployer:
    """Runs deploys and destroys through one provider and the swap engine."""

    def __init__(
        self,
        settings: Settings,
        database: str | sa.Engine,
        provider: Provider,
        secrets: DirectorySecretStore,
        journal: SqlJournal,
        *,
        # shown on the running deployment: waiting for the lock, or for the old records' TTL
        on_wait: Callable[[Instance, str], None] | None = None,
        on_live: Callable[[Instance], None] | None = None,  # after a deploy succeeds
        on_destroyed: Callable[[Instance], None] | None = None,
    ):
        self.settings = settings
        self.database = database
        self.secrets = secrets
        self.provider = provider
        self.on_wait = on_wait
        self.on_live = on_live
        self.on_destroyed = on_destroyed
        # the swap journal, also where backups read what is live and take the instance's lock
        self.journal = journal
        self.engine = SwapEngine(
            self.provider,
            self.journal,
            ready_timeout=settings.ready_timeout,
            health_timeout=settings.health_timeout,
            lock_wait=settings.deploy_lock_wait_seconds,
            alerts=BackupJournal(database),  # an old instance left behind its page
            open_dns=self.open_dns,
        )

    def open_dns(self, dns: DnsSpec) -> DnsDriver:
        """The DNS driver of a deploy's zone, its `secret:NAME` settings read from the store."""
        return open_zone(zone_access(dns.settings, self.secrets.get))

    def render_options(self) -> RenderOptions:
        """The resolved render a provider receives (secrets in, https as configured)."""
        return RenderOptions(
            mode="resolved",
            secrets=self.secrets.get,
            image_map=dict(self.settings.image_map),
            https=self.settings.render_https,
            volume_at_boot=False,
        )

    def __call__(self, instance: Instance, commit: str) -> Execution:
        """Deploy (or destroy, for `state: absent`) one instance at one commit."""
        steps: tuple[HistoryStep, ...] = ()
        wanted = instance.provider
        if wanted is not None and wanted != self.settings.provider:
            return Execution(
                DeploymentStatus.FAILURE,
                "noop",
                f"{instance.source}: instance.provider is {wanted!r}, but this service deploys "
                f"with {self.settings.provider!r} (PROVIDER); nothing was changed. Remove the "
                "setting to use the service's provider, or deploy it with a service of its own",
            )
        if instance.state == "absent":
            result = self.engine.destroy(
                instance.project,
                instance.name,
                delete_volume=instance.volume.delete_on_destroy,
                commit=commit,
                dns=dns_spec(instance, self.settings.dns_owner),
            )
        else:
            artifacts = render_instance(instance, self.render_options())
            spec = DeploySpec.from_instance(
                instance, artifacts["ignition.json"], commit, dns_owner=self.settings.dns_owner
            )
            wait = _Wait(instance, self.on_wait)
            try:
                result = self.engine.deploy(
                    spec, on_wait=wait, on_drain=lambda text: self._tell(instance, text)
                )
            except SwapInProgress as exc:
                return Execution(DeploymentStatus.ERROR, "busy", str(exc), wait.steps(str(exc)))
            steps = wait.steps()
        if result.swap_id is not None:  # the swap's own steps, as the journal timed them
            steps += journaled_steps(self.engine.journal, result.swap_id)
        noop = result.status == "noop"  # nothing to do is a success for the deployment
        status = DeploymentStatus.SUCCESS if noop else DeploymentStatus(result.status)
        if status == DeploymentStatus.SUCCESS:
            tell = self.on_destroyed if instance.state == "absent" else self.on_live
            if tell is not None:
                tell(instance)
        return Execution(status, result.action, result.summary, steps)

    def _tell(self, instance: Instance, text: str) -> None:
        """Show `text` on the instance's running deployment (and its pending status)."""
        log.info("%s: %s", instance.key, text)
        if self.on_wait is not None:
            self.on_wait(instance, text)

    def recover(self) -> list[Recovery]:
        """Finish or roll back what a dead worker left, then put volumes and routes back.

        Returns what was recovered, so the worker can show it on the deployments the
        dead worker was running (history, pages, commit statuses), not only in the log.
        """
        recovered = []
        for result in self.engine.recover(wait_drain=False):  # start-up must not wait a TTL
            log.warning("recovered: %s", result.summary)
            if result.swap_id is not None:
                recovered.append(self._recovery(result))
        report = self.engine.reconcile()
        for note in report.notes:
            log.info("reconciled: %s", note)
        for orphan in report.orphans:
            log.warning("orphan instance %s: not referenced by any deployment", orphan)
        return recovered

    def _recovery(self, result: SwapResult) -> Recovery:
        assert result.swap_id is not None
        record = self.engine.journal.get(result.swap_id)
        steps = journaled_steps(self.engine.journal, result.swap_id)
        return Recovery(record.project, record.name, record.commit, result, steps)


@dataclass(frozen=True)
class Recovery:
    """A swap a dead worker left, finished or rolled back at start-up.

    `result.summary` says which (e.g. "failure: the worker stopped after detach_old;
    rolled back to 1a2b3c4d5e6f"); `steps` are the swap's journaled steps, the
    interrupted attempt's and the recovery's, as the deployment's history shows them.
    """

    project: str
    name: str
    commit: str
    result: SwapResult
    steps: tuple[HistoryStep, ...]

    @property
    def key(self) -> str:
        return f"{self.project}/{self.name}"
