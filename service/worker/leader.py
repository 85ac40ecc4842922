"""The schedule leader: the one process, among all on a database, that runs scheduled jobs.

Every `swapyard serve` and `swapyard worker` with backups on is a candidate;
the one holding the `schedule` lease (service.store.leases, a row in `leases`) runs
the APScheduler scheduler, the others keep theirs paused, which still lets
them store the jobs their deploys create. A candidate tries to take or renew
the lease every third of its length (LEASE_SECONDS): the leader that stops
renewing (killed, hung, cut off from the database) is replaced within one
lease length by another candidate, and one that finds it lost the lease, or
cannot reach the database to renew it, pauses its scheduler at once. A clean
stop releases the lease, so another candidate takes over within a third of a
lease length.

Why one leader rather than each process claiming due jobs: APScheduler 3
allows one scheduler per job store (its user guide: a job store must never
be shared between schedulers), and its due-job loop reads, submits and only
then advances a job without any lock, so two running schedulers on one table
run each job twice. A leader keeps APScheduler's semantics whole: misfires
coalesce into one run, `max_instances` holds, the next run time is advanced
once. The same row works on SQLite and PostgreSQL, as the deployment leases
do.

Two guards close the gaps of a lease: the job entry point asks `holds()`
(one read of the row) before a job runs, so a paused-then-woken former
leader whose lease expired runs nothing; and the leader wakes its scheduler
at every renewal, so a job another process added or changed is seen within
a third of a lease length instead of at the leader's next planned wake-up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from service.store import leases
from service.store.db import Database
from service.store.models import Lease

log = logging.getLogger(__name__)
KEY = "schedule"


@dataclass(frozen=True)
class Holder:
    """Who runs the schedule now, as the `schedule` lease says."""

    owner: str
    since: float | None
    expires_at: float


def holder(session: Session, now: float | None = None) -> Holder | None:
    """The process holding an unexpired `schedule` lease, or None."""
    row = session.get(Lease, KEY)
    if row is None or row.expires_at < (time.time() if now is None else now):
        return None
    return Holder(row.owner, row.taken_at, row.expires_at)


def process_name(role: str) -> str:
    """A lease owner that says which process it is: role, pid and host (64 characters)."""
    unique = uuid.uuid4().hex[:6]  # a pid is reused across hosts and restarts
    return f"{role} pid {os.getpid()} {unique} on {socket.gethostname()}"[:64]


class Leader:
    """Takes and renews the `schedule` lease; calls `lead` on taking it, `follow` on losing it.

    `lead` and `follow` run on the election thread, one at a time; `lead`
    may take long (start-up recovery) and the lease is renewed before and
    after it, so it must take less than a lease length.
    """

    def __init__(
        self,
        db: Database,
        owner: str,
        seconds: float,
        lead: Callable[[], None],
        follow: Callable[[], None],
        wake: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.owner = owner
        self.seconds = seconds
        self._lead, self._follow, self._wake = lead, follow, wake
        self.leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Try once now (so a lone process leads at once), then keep trying in a thread."""
        self._stop.clear()
        self.round()
        self._thread = threading.Thread(target=self._loop, name="swapyard-leader", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            self.round()

    def round(self) -> None:
        """Take or renew the lease; start or stop leading when that changed."""
        try:
            with self.db.session() as session:
                won = leases.take(session, KEY, self.owner, self.seconds)
        except Exception as exc:  # the database is unreachable: a leader cannot know it leads
            log.warning("schedule lease: database unreachable (%s)", exc)
            won = False
        if won and not self.leading:
            log.warning("swapyard: this process (%s) now runs the schedule", self.owner)
            self.leading = True
            try:
                self._lead()
            except Exception:
                log.exception("schedule: taking over failed; giving the lease back")
                self._give_up()
                self._release()
        elif won:
            self._wake()
        elif self.leading:
            log.warning("swapyard: this process (%s) lost the schedule lease", self.owner)
            self._give_up()

    def _give_up(self) -> None:
        self.leading = False
        self._follow()

    def holds(self) -> bool:
        """Whether this process holds the lease now (read from the database, not remembered)."""
        if not self.leading:
            return False
        try:
            with self.db.session() as session:
                current = holder(session)
        except Exception:
            return False
        return current is not None and current.owner == self.owner

    def stop(self) -> None:
        """Stop trying; a leader stops leading and releases the lease for the next one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.leading:
            self._give_up()
        self._release()

    def _release(self) -> None:
        try:
            with self.db.session() as session:
                leases.release(session, KEY, self.owner)
        except Exception as exc:
            log.warning("schedule lease not released (%s): it expires by itself", exc)
