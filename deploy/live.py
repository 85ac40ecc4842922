"""What is live for an instance, and the per-instance lock: shared by swaps and backups.

A swap makes a `LiveRecord` (the provider instance serving a project's
instance, its volume, commit and config digest); a backup, a restore and a
drill read it to know what to stop and copy. Both take the instance's lock
(one row per instance key, `project/name`), so a backup and a swap of one
instance never overlap: a swap takes it in the same transaction as its own
journal row, anything else takes it with `lock` and gives it back with
`unlock`, under a holder name such as `backup:12`.

The swap journal (`deploy.swap.sqljournal.SqlJournal`) is the store: the
live record is written by the swap's traffic switch, atomically with its
journal. Backups are handed that store as a `LiveStore` and never import
the swap engine. It is a "lock", not a "lease": an instance lock is held
until given back (or until `recover()` at startup releases it), while the
service's work leases (service/store/leases.py) expire by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deploy.spec import AppCheck


@dataclass(frozen=True)
class LiveRecord:
    """What is live for one instance: the provider instance, its volume, commit and digest."""

    project: str
    name: str
    instance_id: str
    volume_id: str
    commit: str
    digest: str
    domains: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """`project/name`, the instance's lock key."""
        return f"{self.project}/{self.name}"


class LiveStore(Protocol):
    """What backups need of what is live: the live record, its health checks, the lock."""

    def current(self, project: str, name: str) -> LiveRecord | None:
        """The live record of an instance, or None when it is not deployed."""
        ...

    def live_apps(self, project: str, name: str) -> tuple[AppCheck, ...]:
        """The health checks of the live record's apps (empty when nothing is live)."""
        ...

    def lock(self, key: str, holder: str) -> None:
        """Take the lock of instance `key` for `holder` (`SwapInProgress` when held)."""
        ...

    def unlock(self, key: str, holder: str) -> None:
        """Give back a lock taken with `lock`; a no-op when `holder` does not hold it."""
        ...
