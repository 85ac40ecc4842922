"""A push that meets a running backup of its instance: the deployment waits, then goes live.

The whole service for real (see test_push_to_live): the backup is the
service's own scheduler running a real restic backup, held in its
maintenance window until the test has seen the deployment waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.test_push_to_live import TOKEN, World, push_with_backups, world
from tests.service.conftest import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
__all__ = ["world"]  # the fixture, shared with test_push_to_live

LEASE = 3  # seconds: short, so the wait outlasts several leases


@contextmanager
def held_backup(world: World, key: str, runs: list[Any]) -> Iterator[threading.Event]:
    """A backup of `key` by the service's scheduler, held after stop_writers until released."""
    from service.worker.threads import get_worker

    scheduler = get_worker(world.app).backups.scheduler
    in_window, go_on = threading.Event(), threading.Event()

    def hold(_run_id: int, step: str) -> None:
        if step == "stop_writers":
            in_window.set()
            go_on.wait(300)

    scheduler.runner.on_step = hold
    thread = threading.Thread(
        target=lambda: runs.append(scheduler.run_now("backup", scheduler.job_of(key))),
        daemon=True,
    )
    thread.start()
    try:
        assert in_window.wait(120), "the backup never reached its window"
        yield go_on
    finally:
        go_on.set()
        thread.join(300)
        scheduler.runner.on_step = None


@pytest.mark.parametrize("world", [{"lease_seconds": LEASE}], indirect=True)
def test_a_push_during_a_backup_waits_for_it_then_deploys(world: World) -> None:
    from service.quickstart.steps import api, wait_for_push
    from service.settings import settings_of
    from service.store.db import get_db
    from service.store.models import Lease
    from service.worker.build import build_worker

    sha, _ = push_with_backups(world)
    [first] = wait_for_push(world.url, TOKEN, sha, timeout=120)
    assert first["status"] == "success", first
    assert world.get("notes.test", "/cgi-bin/add?before-the-backup").text.strip() == "ok"
    key, db, runs = f"{world.project}/notes", get_db(world.app), []

    def waiting(sha: str) -> dict[str, Any] | None:
        for d in api(world.url, TOKEN, "/deployments?limit=50"):
            if d["sha"] == sha and d["status"] == "running" and "waiting" in (d["summary"] or ""):
                return dict(d)
        return None

    def lease() -> tuple[str, float]:
        with db.session() as session:
            row = session.get(Lease, key)
            assert row is not None, "the deployment's lease is gone"
            return row.owner, row.expires_at

    with held_backup(world, key, runs) as go_on:
        world.commit("change the site", {"instances/notes/files/site/index.html": "<h1>v2</h1>\n"})
        sha2, _ = world.push()
        dep = wait_for(lambda: waiting(sha2), timeout=120, what="the deployment waiting")
        assert dep["summary"].startswith("waiting for backup ")
        assert dep["summary"].endswith(f" of {key} to end (up to 1800 s)")
        # the wait outlasts the lease: it is renewed, no other worker can take the deployment
        owner, expires = lease()
        wait_for(lambda: time.time() > expires + 1, timeout=LEASE * 3, what="a lease length")
        assert lease()[0] == owner and lease()[1] > time.time()
        assert build_worker(db, settings_of(world.app)).deployments.claim() is None
        assert waiting(sha2) is not None  # still waiting: the backup holds the lock
        go_on.set()
        [second] = wait_for_push(world.url, TOKEN, sha2, timeout=180)

    [run] = runs
    assert run.state == "succeeded", run
    assert (second["status"], second["action"]) == ("success", "replace"), second
    assert "v2" in world.get("site.test").text
    assert "before-the-backup" in world.get("notes.test", "/cgi-bin/list").text
    steps = api(world.url, TOKEN, f"/deployments/{second['id']}")["steps"]
    names = [s["name"] for s in steps]
    # the wait, then the swap's own journaled steps, then the deploy step that held them
    assert names[-1] == "deploy" and names[names.index("wait_lock") + 1] == "create_new"
    wait_step = steps[names.index("wait_lock")]
    assert wait_step["status"] == "done"
    assert wait_step["log"].startswith(f"waiting for backup {run.id} of {key} to end")
    assert f"{key}: the lock is free after " in wait_step["log"]


@pytest.mark.parametrize("world", [{"deploy_lock_wait_seconds": 1}], indirect=True)
def test_a_push_gives_up_when_the_backup_outlasts_the_wait(world: World) -> None:
    from service.quickstart.steps import api, wait_for_push

    sha, _ = push_with_backups(world)
    [first] = wait_for_push(world.url, TOKEN, sha, timeout=120)
    assert first["status"] == "success", first
    key, runs = f"{world.project}/notes", []
    with held_backup(world, key, runs):
        world.commit("change the site", {"instances/notes/files/site/index.html": "<h1>v2</h1>\n"})
        sha2, _ = world.push()
        [second] = wait_for_push(world.url, TOKEN, sha2, timeout=120)
    [run] = runs
    assert run.state == "succeeded", run
    assert (second["status"], second["action"]) == ("error", "busy"), second
    assert second["summary"].startswith(f"{key}: instance busy with a backup for 1 s")
    steps = api(world.url, TOKEN, f"/deployments/{second['id']}")["steps"]
    assert [(s["name"], s["status"]) for s in steps][-2:] == [
        ("wait_lock", "failed"),
        ("deploy", "failed"),
    ]
    assert world.get("site.test").status_code == 200  # v1 still live, back from maintenance
    assert "hello site v1" in world.get("site.test").text
