"""The SQL journal on SQLite: records, steps, the per-instance lock, the live deployment."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from deploy.live import LiveRecord
from deploy.providers.types import SwapInProgress
from deploy.swap.journal import SwapRecord, SwapState
from deploy.swap.lockwait import wait_for_lock
from deploy.swap.sqljournal import SqlJournal


def record(name: str = "blog") -> SwapRecord:
    return SwapRecord(
        id=0,
        project="prod",
        name=name,
        kind="create",
        commit="c" * 40,
        digest="sha256:x",
        volume_id="sy-prod-blog",
        spec={"apps": []},
    )


def test_lock_keeps_two_swaps_of_one_instance_apart(tmp_path: Path) -> None:
    journal = SqlJournal(f"sqlite:///{tmp_path / 'j.db'}")
    first = journal.begin(record())
    assert first.state == SwapState.RUNNING
    with pytest.raises(SwapInProgress, match=f"swap {first.id} is still running"):
        journal.begin(record())
    journal.begin(record("other"))  # another instance is independent
    journal.finish(first.id, SwapState.SUCCEEDED)
    assert ("prod/blog", first.id) not in journal.locks()
    journal.begin(record())


def test_steps_and_switch_survive_a_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    journal = SqlJournal(url)
    swap = journal.begin(record())
    journal.update(swap.id, new_instance="sy-prod-blog-abc")
    journal.step_started(swap.id, "create_new")
    journal.step_finished(swap.id, "create_new", True)
    journal.step_started(swap.id, "wait_ready")
    journal.step_finished(swap.id, "wait_ready", False, "not ready after 5 s")
    journal.step_started(swap.id, "switch_traffic")
    live = LiveRecord(
        "prod",
        "blog",
        "sy-prod-blog-abc",
        "sy-prod-blog",
        "c" * 40,
        "sha256:x",
        ("blog.example.org",),
    )
    journal.switched(swap.id, live)
    reopened = SqlJournal(url)
    again = reopened.get(swap.id)
    assert again.new_instance == "sy-prod-blog-abc"
    assert again.done == ("create_new", "switch_traffic")
    assert [s.status for s in reopened.steps(swap.id)] == ["done", "failed", "done"]
    assert reopened.steps(swap.id)[1].detail == "not ready after 5 s"
    assert reopened.current("prod", "blog") == live
    assert reopened.live_records() == [live]
    assert [r.id for r in reopened.unfinished()] == [swap.id]
    reopened.clear_current("prod", "blog")
    assert reopened.current("prod", "blog") is None


def test_a_lock_held_by_a_backup_is_waited_for_one_held_by_a_swap_is_not(
    tmp_path: Path,
) -> None:
    journal = SqlJournal(f"sqlite:///{tmp_path / 'j.db'}")
    journal.lock("prod/blog", "backup:7")
    told: list[tuple[str, bool]] = []

    def on_wait(text: str, waiting: bool) -> None:
        told.append((text, waiting))
        if waiting:  # the backup ends once the deploy is seen waiting
            threading.Thread(target=journal.unlock, args=("prod/blog", "backup:7")).start()

    swap = wait_for_lock(lambda: journal.begin(record()), "prod/blog", 60, 0.05, on_wait)
    assert journal.locks() == [("prod/blog", swap.id)]
    assert [waiting for _, waiting in told] == [True, False]
    assert told[0][0] == "waiting for backup 7 of prod/blog to end (up to 60 s)"
    # a swap holding the lock (its worker died) is not waited for: only recover() ends it
    told.clear()
    with pytest.raises(SwapInProgress, match=f"swap {swap.id} is still running") as exc:
        wait_for_lock(lambda: journal.begin(record()), "prod/blog", 60, 0.05, on_wait)
    assert exc.value.is_swap and told == []


def test_waiting_for_a_backup_gives_up_after_the_timeout(tmp_path: Path) -> None:
    journal = SqlJournal(f"sqlite:///{tmp_path / 'j.db'}")
    journal.lock("prod/blog", "backup:7")
    with pytest.raises(SwapInProgress) as exc:
        wait_for_lock(lambda: journal.begin(record()), "prod/blog", 0.3, 0.05)
    message = str(exc.value)
    assert message.startswith("prod/blog: instance busy with a backup for 0.3 s (backup 7 holds")
    assert exc.value.holder == "backup:7" and not exc.value.is_swap
    assert journal.unfinished() == []  # no swap was journaled
    # without a wait, the journal's own message
    with pytest.raises(SwapInProgress, match="backup:7 holds the instance's lock; deploy after"):
        wait_for_lock(lambda: journal.begin(record()), "prod/blog", 0)
