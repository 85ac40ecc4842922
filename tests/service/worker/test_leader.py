"""The schedule leader on a real SQLite database: one holder, takeover, loss, handover.

The rounds are driven by hand (`round()`), so each step is decided, not timed;
tests/deploy/backup/test_schedule_processes.py runs the same through real processes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.store.db import Database
from service.store.models import Lease
from service.worker.leader import KEY, Leader, holder, process_name


class Candidate:
    """A Leader whose `lead`/`follow` calls are recorded."""

    def __init__(self, db: Database, role: str, seconds: float = 30.0, fail: bool = False):
        self.calls: list[str] = []
        self.fail = fail
        self.leader = Leader(db, process_name(role), seconds, self.lead, self.follow, self.wake)

    def lead(self) -> None:
        self.calls.append("lead")
        if self.fail:
            raise RuntimeError("recovery failed")

    def follow(self) -> None:
        self.calls.append("follow")

    def wake(self) -> None:
        self.calls.append("wake")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'swapyard.db'}")


def current(db: Database):
    with db.session() as session:
        return holder(session)


def test_one_candidate_leads_the_other_waits_then_takes_over(db: Database) -> None:
    first, second = Candidate(db, "serve"), Candidate(db, "worker")
    first.leader.round()
    second.leader.round()
    assert (first.calls, second.calls) == (["lead"], [])
    held = current(db)
    assert held is not None and held.owner == first.leader.owner
    assert held.owner.startswith("serve pid ") and held.since is not None
    assert first.leader.holds() and not second.leader.holds()

    first.leader.round()  # a renewal keeps the time it was taken and wakes the scheduler
    assert first.calls == ["lead", "wake"]
    renewed = current(db)
    assert renewed is not None and renewed.since == held.since
    assert renewed.expires_at >= held.expires_at

    first.leader.stop()  # a clean stop hands over at the other's next round
    assert first.calls[-1] == "follow" and current(db) is None
    second.leader.round()
    assert second.calls == ["lead"]
    taken = current(db)
    assert taken is not None and taken.owner == second.leader.owner
    assert taken.since is not None and taken.since >= held.since  # type: ignore[operator]
    second.leader.stop()


def test_a_holder_that_stops_renewing_loses_the_schedule(db: Database) -> None:
    hung, other = Candidate(db, "serve", seconds=0.3), Candidate(db, "serve", seconds=0.3)
    hung.leader.round()
    other.leader.round()
    assert other.calls == []  # the lease is still good
    time.sleep(0.4)  # the holder missed its renewals (SIGSTOP, a long GC, a lost network)
    assert not hung.leader.holds()  # what a job asks before it runs: nothing runs twice
    other.leader.round()
    assert other.calls == ["lead"]
    hung.leader.round()  # it wakes up: it finds the lease taken and stops running jobs
    assert hung.calls == ["lead", "follow"] and not hung.leader.leading
    assert other.leader.holds()


def test_a_takeover_that_fails_gives_the_lease_back(db: Database) -> None:
    broken, healthy = Candidate(db, "worker", fail=True), Candidate(db, "worker")
    broken.leader.round()
    assert broken.calls == ["lead", "follow"] and not broken.leader.leading
    assert current(db) is None
    healthy.leader.round()
    assert healthy.calls == ["lead"]


def test_an_unreachable_database_stops_the_leader(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'swapyard.db'}")
    alone = Candidate(db, "serve")
    alone.leader.round()
    with db.session() as session:  # as if the tables were gone: every renewal fails
        session.query(Lease).filter(Lease.key == KEY).delete()
    db.engine.dispose()
    (tmp_path / "swapyard.db").unlink()
    (tmp_path / "swapyard.db").mkdir()  # not a database any more
    alone.leader.round()
    assert alone.calls == ["lead", "follow"] and not alone.leader.holds()
