"""The deploy side of the worker: a validated instance becomes a running one.

`Deployer` is the pipeline's executor. It renders the instance *resolved*
(secret values from the store; the only render that ever holds them, handed
straight to the provider and never stored), builds the `DeploySpec` and lets
the swap engine decide between noop, create and replace; `state: absent`
destroys. The engine journals every step in its own tables of the service's
database, so `recover()` at start-up finishes or rolls back whatever a dead
worker left.

Settings (service.config): PROVIDER, STATE_DIR, EDGE_LISTEN, EDGE_ADMIN,
SECRETS_DIR, IMAGE_MAP, RENDER_HTTPS, READY_TIMEOUT, HEALTH_TIMEOUT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from deploy.providers import get_driver
from deploy.spec import DeploySpec
from deploy.sqljournal import SqlJournal
from deploy.swap import SwapEngine
from deploy.types import SwapInProgress
from handlers.pipeline import Execution
from renderers import RenderOptions, render_instance
from schemas import Instance

from .secrets import DirectorySecretStore

log = logging.getLogger(__name__)


def _listen(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


class Deployer:
    """Runs deploys and destroys through one provider and the swap engine."""

    def __init__(self, settings: dict[str, Any], database: str | sa.Engine):
        data = Path(settings["DATA_DIR"])
        self.settings = settings
        self.database = database
        self.secrets = DirectorySecretStore(settings["SECRETS_DIR"] or data / "secrets")
        driver: Any = get_driver(settings["PROVIDER"])
        options: dict[str, Any] = {}
        if settings["PROVIDER"] == "local":
            options = {
                "ex_edge_listen": _listen(settings["EDGE_LISTEN"]),
                "ex_edge_admin": settings["EDGE_ADMIN"],
            }
        self.provider = driver(settings["STATE_DIR"] or data / "state", **options)
        self.on_live: list[Callable[[Instance], None]] = []  # after a deploy succeeds
        self.on_destroyed: list[Callable[[Instance], None]] = []
        self.engine = SwapEngine(
            self.provider,
            SqlJournal(database),
            ready_timeout=float(settings["READY_TIMEOUT"]),
            health_timeout=float(settings["HEALTH_TIMEOUT"]),
        )

    def render_options(self) -> RenderOptions:
        """The resolved render a provider receives (secrets in, https as configured)."""
        https = self.settings["RENDER_HTTPS"]
        return RenderOptions(
            mode="resolved",
            secrets=self.secrets.get,
            image_map=dict(self.settings["IMAGE_MAP"] or {}),
            https=None if https is None else bool(https),
            volume_at_boot=False,
        )

    def __call__(self, instance: Instance, commit: str) -> Execution:
        """Deploy (or destroy, for `state: absent`) one instance at one commit."""
        if instance.state == "absent":
            outcome = self.engine.destroy(
                instance.project,
                instance.name,
                delete_volume=instance.volume.delete_on_destroy,
                commit=commit,
            )
        else:
            artifacts = render_instance(instance, self.render_options())
            spec = DeploySpec.from_instance(instance, artifacts["ignition.json"], commit)
            try:
                outcome = self.engine.deploy(spec)
            except SwapInProgress as exc:
                return Execution("error", "busy", str(exc))
        state = "success" if outcome.status in ("success", "noop") else outcome.status
        if state == "success":
            for hook in self.on_destroyed if instance.state == "absent" else self.on_live:
                hook(instance)
        return Execution(state, outcome.kind, outcome.message)

    def recover(self) -> None:
        """Finish or roll back what a dead worker left, then put volumes and routes back."""
        for outcome in self.engine.recover():
            log.warning("recovered: %s", outcome.message)
        report = self.engine.reconcile()
        for note in report.notes:
            log.info("reconciled: %s", note)
        for orphan in report.orphans:
            log.warning("orphan instance %s: not referenced by any deployment", orphan)
