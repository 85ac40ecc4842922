"""The swap journal: what the engine records so a restarted worker can resume or roll back.

`Journal` is the interface the swap engine is handed (the service passes its
own store; nothing here imports the service). `deploy.swap.sqljournal.SqlJournal`
implements it on SQLAlchemy with its own tables (`deploy_*`), SQLite by default. Recorded:
one row per swap (kind, commit, old and new instance, volume, state, reason),
one row per step with timings, the live deployment of each instance, and one
lock row per instance while a swap runs. Resolved secrets (the Ignition
config) are never stored, only its digest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from deploy.spec import AppCheck


def epoch(when: dt.datetime) -> float:
    """Unix time of a journaled time (the journals store naive UTC datetimes)."""
    return when.replace(tzinfo=dt.UTC).timestamp()


RUNNING = "running"
SUCCEEDED = "succeeded"
ROLLED_BACK = "rolled_back"
FAILED = "failed"  # the rollback itself failed: needs a human


@dataclass(frozen=True)
class Deployment:
    """What is live for one instance: the provider instance, its volume, commit and digest."""

    project: str
    name: str
    instance_id: str
    volume_id: str
    commit: str
    digest: str
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class SwapRecord:
    """One swap (or first deploy, or destroy) as journaled."""

    id: int
    project: str
    name: str
    kind: str  # "create" | "replace" | "destroy"
    commit: str
    digest: str
    volume_id: str
    old_instance: str | None = None
    new_instance: str | None = None
    old_commit: str | None = None
    state: str = RUNNING
    reason: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # health checks, volume, domains
    done: tuple[str, ...] = ()  # names of the steps completed, in order


@dataclass(frozen=True)
class StepRecord:
    swap_id: int
    step: str
    status: str  # "started" | "done" | "failed"
    started: dt.datetime
    finished: dt.datetime | None
    detail: str


class Journal(Protocol):
    """What the swap engine needs from persistent storage."""

    def begin(self, record: SwapRecord) -> SwapRecord:
        """Store a new swap and take the instance's lock (`SwapInProgress` if held)."""
        ...

    def update(self, swap_id: int, **fields: Any) -> None:
        """Change fields of a running swap (e.g. `new_instance` before creating it)."""
        ...

    def step_started(self, swap_id: int, step: str) -> None:
        """Record that a step began."""
        ...

    def step_finished(self, swap_id: int, step: str, ok: bool, detail: str = "") -> None:
        """Record that a step ended, successfully or not."""
        ...

    def switched(self, swap_id: int, deployment: Deployment) -> None:
        """Atomically mark `switch_traffic` done and make `deployment` the live one."""
        ...

    def finish(self, swap_id: int, state: str, reason: str | None = None) -> None:
        """End a swap with a final state and release the instance's lock."""
        ...

    def get(self, swap_id: int) -> SwapRecord:
        """One swap with the names of its completed steps."""
        ...

    def unfinished(self) -> list[SwapRecord]:
        """Swaps still running (a worker died during them)."""
        ...

    def steps(self, swap_id: int) -> list[StepRecord]:
        """Every step of a swap, in order."""
        ...

    def current(self, project: str, name: str) -> Deployment | None:
        """The live deployment of an instance, or None."""
        ...

    def live_apps(self, project: str, name: str) -> tuple[AppCheck, ...]:
        """The health checks of the live deployment (empty when nothing is live)."""
        ...

    def clear_current(self, project: str, name: str) -> None:
        """Forget the live deployment (after an explicit destroy)."""
        ...

    def deployments(self) -> list[Deployment]:
        """Every live deployment (for reconciliation after a restart)."""
        ...

    def locks(self) -> list[tuple[str, int | None]]:
        """Held locks as (instance key, swap id); the swap id is None for a backup's lease."""
        ...
