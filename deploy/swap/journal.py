"""The swap journal: what the engine records so a restarted worker can resume or roll back.

`Journal` is the interface the swap engine is handed (the service passes its
own store; nothing here imports the service). `deploy.swap.sqljournal.SqlJournal`
implements it on SQLAlchemy with its own tables (`deploy_*`), SQLite by default. Recorded:
one row per swap (kind, commit, old and new instance, volume, state, reason),
one row per step with timings, the live record of each instance
(`deploy.live.LiveRecord`), and one lock row per instance while a swap
runs. Resolved secrets (the Ignition config) are never stored, only its
digest. The journal is also the `deploy.live.LiveStore` backups are handed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from deploy.live import LiveRecord
from deploy.spec import AppCheck
from deploy.steps.runner import StepStatus


class SwapState(StrEnum):
    """Where a swap is; the values are what `deploy_swaps.state` stores."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # the rollback itself failed: needs a human


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
    state: SwapState = SwapState.RUNNING
    reason: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)  # health checks, volume, domains
    done: tuple[str, ...] = ()  # names of the steps completed, in order


@dataclass(frozen=True)
class SwapStep:
    """One journaled step of a swap, with its timings (naive UTC) and detail."""

    swap_id: int
    step: str
    status: StepStatus
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

    def switched(self, swap_id: int, live: LiveRecord) -> None:
        """Atomically mark `switch_traffic` done and make `live` the instance's live record."""
        ...

    def finish(self, swap_id: int, state: SwapState, reason: str | None = None) -> None:
        """End a swap with a final state and release the instance's lock."""
        ...

    def get(self, swap_id: int) -> SwapRecord:
        """One swap with the names of its completed steps."""
        ...

    def unfinished(self) -> list[SwapRecord]:
        """Swaps still running (a worker died during them)."""
        ...

    def steps(self, swap_id: int) -> list[SwapStep]:
        """Every step of a swap, in order."""
        ...

    def current(self, project: str, name: str) -> LiveRecord | None:
        """The live record of an instance, or None."""
        ...

    def live_apps(self, project: str, name: str) -> tuple[AppCheck, ...]:
        """The health checks of the live record's apps (empty when nothing is live)."""
        ...

    def clear_current(self, project: str, name: str) -> None:
        """Forget the live record (after an explicit destroy)."""
        ...

    def live_records(self) -> list[LiveRecord]:
        """Every live record (for reconciliation after a restart)."""
        ...

    def locks(self) -> list[tuple[str, int | None]]:
        """Held locks as (instance key, swap id); the swap id is None for a backup's lock."""
        ...
