"""The swap tests' harness: an engine on a real provider, with the volume invariant checked
after every step (the local provider's loop devices here; the lxd tests read LXD instead)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import requests

from deploy.providers.local.volumes import loop_devices_of, mountpoints_of
from deploy.spec import DeploySpec
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.fixtures import make_spec


class Crash(BaseException):
    """Stands for the worker being killed: not an Exception, so no rollback runs."""


def spec(project: str, ignition: bytes, commit: str) -> DeploySpec:
    return make_spec(project, ignition, commit)


class Harness:
    """An engine plus helpers to talk through the edge and to check the volume invariants."""

    ready_timeout, health_timeout = 60.0, 20.0

    def __init__(self, provider: Any, db: str, project: str):
        self.provider = provider
        self.db = db
        self.project = project
        self.journal = SqlJournal(db)
        self.crash_after: str | None = None
        self.steps: list[str] = []
        self.engine = self.make_engine()

    def make_engine(self, **kw: Any) -> SwapEngine:
        return SwapEngine(
            self.provider,
            self.journal,
            ready_timeout=self.ready_timeout,
            health_timeout=self.health_timeout,
            health_interval=0.2,
            drain_seconds=0.3,
            on_step=self.on_step,
            **kw,
        )

    @property
    def image(self) -> Path:
        return self.provider.volumes.image(f"sy-{self.project}-demo")

    def mounts(self) -> list[Path]:
        return [p for d in loop_devices_of(self.image) for p in mountpoints_of(d)]

    def on_step(self, swap_id: int, step: str) -> None:
        self.steps.append(step)
        assert len(loop_devices_of(self.image)) <= 1, f"two loop devices after {step}"
        assert len(self.mounts()) <= 1, f"volume mounted twice after {step}"
        if step == self.crash_after:
            raise Crash(step)

    def get(self, host: str, path: str = "/", session: Any = requests) -> requests.Response:
        edge = self.provider.edge.listen[0]
        return session.get(f"http://{edge}{path}", headers={"Host": host}, timeout=5)

    def containers(self, instance_id: str) -> list[Any]:
        return self.provider.projects.containers(instance_id)


def request_loop(
    h: Harness, stop: threading.Event, log: list[tuple[str, Any]], pause: float = 0.01
) -> None:
    """Writes over a new connection each; reads over one keep-alive connection.

    Neither is retried: a swap loads nothing into the edge Caddy, so even
    the reused connection, idle between requests, must survive it.
    """
    n, keepalive = 0, requests.Session()
    while not stop.is_set():
        n += 1
        for host, path, session in (
            ("web.test", "/", keepalive),
            ("notes.test", f"/cgi-bin/add?w{n}", requests),
        ):
            try:
                log.append((path, h.get(host, path, session).status_code))
            except requests.RequestException as exc:
                log.append((path, exc))
        time.sleep(pause)
