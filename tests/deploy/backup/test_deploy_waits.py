"""A deploy that meets a real backup of its instance waits for it, then swaps (or gives up)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from deploy.backup.journal import BackupRun, RunState
from deploy.backup.restic import ResticRepo
from deploy.backup.run import BackupRunner
from deploy.providers.types import SwapInProgress
from deploy.swap.engine import SwapEngine
from tests.deploy.backup.conftest import Deployed
from tests.deploy.fixtures import make_ignition, make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class HeldBackup:
    """A real backup run in a thread, held after `stop_writers` (maintenance on, lock taken)."""

    def __init__(self, d: Deployed, repo: ResticRepo, events: list[str]):
        self.events = events
        self.in_window = threading.Event()
        self.go_on = threading.Event()
        self.run: BackupRun | None = None
        self.runner = BackupRunner(d.provider, d.swaps, d.history, on_step=self._step)
        self.thread = threading.Thread(target=self._run, args=(d, repo), daemon=True)

    def _step(self, _run_id: int, step: str) -> None:
        self.events.append(f"backup:{step}")
        if step == "stop_writers":
            self.in_window.set()
            assert self.go_on.wait(300), "the test never let the backup go on"

    def _run(self, d: Deployed, repo: ResticRepo) -> None:
        self.run = self.runner.run(d.project, "demo", repo)
        self.events.append("backup:ended")


@contextmanager
def held_backup(d: Deployed, repo: ResticRepo, events: list[str]) -> Iterator[HeldBackup]:
    """The backup is in its window inside the block; it always finishes afterwards."""
    held = HeldBackup(d, repo, events)
    held.thread.start()
    try:
        assert held.in_window.wait(120), "the backup never reached its window"
        yield held
    finally:
        held.go_on.set()
        held.thread.join(300)


def engine(d: Deployed, lock_wait: float) -> SwapEngine:
    return SwapEngine(
        d.provider, d.swaps, ready_timeout=60, health_timeout=20, lock_wait=lock_wait, lock_poll=0.1
    )


def test_a_deploy_waits_for_the_backup_then_swaps(
    deployed: Deployed, local_repo: ResticRepo, test_image: str
) -> None:
    d = deployed
    assert d.get("notes.test", "/cgi-bin/add?before-the-backup").status_code == 200
    events: list[str] = []
    told: list[str] = []
    with held_backup(d, local_repo, events) as held:
        assert d.get("notes.test", "/cgi-bin/list").status_code == 503  # maintenance

        def on_wait(text: str, waiting: bool) -> None:
            events.append("deploy:waiting" if waiting else "deploy:lock_taken")
            told.append(text)
            held.go_on.set()  # the backup goes on once the deploy is seen waiting

        spec = make_spec(d.project, make_ignition(test_image, "v2"), "b" * 40)
        out = engine(d, lock_wait=300).deploy(spec, on_wait=on_wait)
    run = held.run
    assert run is not None and run.state == RunState.SUCCEEDED, run
    assert (out.status, out.action) == ("success", "replace"), out.summary
    # the order: the backup's window, the deploy waiting, the whole backup, then the swap
    assert events.index("backup:stop_writers") < events.index("deploy:waiting")
    assert events.index("deploy:waiting") < events.index("backup:restic_backup")
    assert events.index("backup:maintenance_off") < events.index("deploy:lock_taken")
    assert events.index("backup:verify") < events.index("deploy:lock_taken")
    assert told[0] == f"waiting for backup {run.id} of {d.project}/demo to end (up to 300 s)"
    assert told[-1].startswith(f"{d.project}/demo: the lock is free after ")
    # the swap started from what was live after the backup, and moved its data along
    swap = d.swaps.get(out.swap_id or 0)
    assert swap.old_commit == "a" * 40 and swap.old_instance == d.instance_id
    assert d.get("web.test").text == "web v2\n"
    assert "before-the-backup" in d.get("notes.test", "/cgi-bin/list").text
    assert d.swaps.locks() == []
    # and the snapshot holds the data as it was before the swap
    (snap,) = local_repo.snapshots([f"project={d.project}", "instance=demo"])
    assert snap.id == run.snapshot_id


def test_a_deploy_gives_up_when_the_backup_outlasts_the_wait(
    deployed: Deployed, local_repo: ResticRepo, test_image: str
) -> None:
    d = deployed
    events: list[str] = []
    told: list[str] = []
    with held_backup(d, local_repo, events) as held:
        spec = make_spec(d.project, make_ignition(test_image, "v2"), "b" * 40)
        with pytest.raises(SwapInProgress) as exc:
            engine(d, lock_wait=0.5).deploy(spec, on_wait=lambda text, _w: told.append(text))
        events.append("deploy:gave_up")
    run = held.run
    assert run is not None and run.state == RunState.SUCCEEDED, run
    assert str(exc.value).startswith(
        f"{d.project}/demo: instance busy with a backup for 0.5 s (backup {run.id} holds its lock)"
    )
    assert told == [f"waiting for backup {run.id} of {d.project}/demo to end (up to 0.5 s)"]
    assert events.index("deploy:gave_up") < events.index("backup:restic_backup")
    # nothing was swapped: the old instance is live and serves again after the backup
    live = d.swaps.current(d.project, "demo")
    assert live is not None and live.commit == "a" * 40 and live.instance_id == d.instance_id
    assert d.swaps.unfinished() == [] and d.swaps.locks() == []
    assert d.get("web.test").text == "web v1\n"
    assert d.get("notes.test", "/cgi-bin/list").status_code == 200
