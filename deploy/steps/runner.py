"""Run one journaled step: record that it started, run it, record how it ended.

The swap engine, a backup run, a restore put live and the end of a
maintenance window all do their work as named steps, and each step is in
the journal before the next begins: that is what lets `recover()` after a
crash know how far a swap or a run got. `Steps` is that runner, bound to
one journal and one swap or run id, so it can be handed on as a plain
`step(name, fn)` callable (`deploy.maintenance.end_maintenance` takes one).

Only an `Exception` is journaled as `failed`; a `BaseException` (the
worker being killed, a test's simulated crash) leaves the step `started`,
exactly as a dead process would, for `recover()` to find. A step whose end
must be written together with something else (the swap's traffic switch
and the new live record) passes `done`, which then records the end
instead of the plain `step_finished`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from deploy.providers.types import DeployError

T = TypeVar("T")

# (swap or run id, step name): told after each step that ended well
StepHook = Callable[[int, str], None]
# what a multi-step procedure is handed to run its steps: step(name, fn) -> fn's result
StepRunner = Callable[[str, Callable[[], Any]], Any]


class StepStatus(StrEnum):
    """Where a journaled step is; the values are what the journals store."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"


def describe(exc: BaseException) -> str:
    """An exception in one line: a deploy error's own message, else its type and message."""
    return str(exc) if isinstance(exc, DeployError) else f"{type(exc).__name__}: {exc}"


class StepJournal(Protocol):
    """Where steps are recorded (the swap journal and the backup journal both are one)."""

    def step_started(self, run_id: int, step: str) -> None:
        """Record that a step began."""
        ...

    def step_finished(self, run_id: int, step: str, ok: bool, detail: str = "") -> None:
        """Record that the last started step of that name ended, well or not."""
        ...


@dataclass(frozen=True)
class Steps:
    """The journaled steps of one swap or run: `steps(name, fn)` runs and records one."""

    journal: StepJournal
    run_id: int
    on_step: StepHook | None = None

    def __call__(
        self,
        name: str,
        fn: Callable[[], T],
        *,
        done: Callable[[], None] | None = None,
        detail: Callable[[T], str] | None = None,
    ) -> T:
        """Run `fn` as step `name`; its failure is journaled with `describe` and raised again.

        `done`, when given, records the successful end instead of
        `step_finished` (so it can be one transaction with another write).
        `detail` makes the journaled detail of a successful end from `fn`'s
        result (what a DNS step wrote). `on_step` is told after the end is
        recorded.
        """
        self.journal.step_started(self.run_id, name)
        try:
            result = fn()
        except Exception as exc:
            self.journal.step_finished(self.run_id, name, False, describe(exc))
            raise
        if done is None:
            self.journal.step_finished(
                self.run_id, name, True, detail(result) if detail is not None else ""
            )
        else:
            done()
        if self.on_step is not None:
            self.on_step(self.run_id, name)
        return result
