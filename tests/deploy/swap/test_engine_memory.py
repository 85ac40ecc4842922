"""The swap state machine on the memory provider: every path of `SwapEngine`, without Docker.

tests/deploy/swap/test_engine.py runs the same engine on the local provider
(real containers, loop devices, the edge Caddy); this file drives what is hard
to reach there: a failure inside every provider call, a crash after every step
and inside every call, rollbacks that cannot finish, the lock held by a swap
that is paused between steps. The memory provider's front proxies are real
loopback HTTP servers, so the health check is the engine's own, over HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from deploy.providers.memory.provider import MemoryApp, MemoryProvider
from deploy.providers.types import SwapInProgress
from deploy.spec import AppCheck, DeploySpec, VolumeSpec
from deploy.swap.engine import SwapEngine, SwapResult
from deploy.swap.journal import SwapState
from deploy.swap.sqljournal import SqlJournal

APPS = (MemoryApp("web", ("web.test",)), MemoryApp("notes", ("notes.test",), writer=True))
CHECKS = (AppCheck("web", "web.test", "/"), AppCheck("notes", "notes.test", "/"))
VOLUME = "sy-p-demo"

# each forward step of a `replace` and the provider method it calls
FORWARD = {
    "create_new": "create_instance",
    "wait_ready": "wait_until_ready",
    "maintenance_old": "set_maintenance",
    "stop_writers_old": "stop_writers",
    "detach_old": "detach_volume",
    "attach_new": "attach_volume",
    "start_writers_new": "start_writers",
    "health_check": None,  # the engine's own HTTP check, no provider call
    "switch_traffic": "switch_traffic",
    "destroy_old": "destroy_instance",
}
STEPS = list(FORWARD)
SWITCH = STEPS.index("switch_traffic")


class Crash(BaseException):
    """Stands for the worker being killed: not an Exception, so no rollback runs."""


def ignition(version: str) -> bytes:
    return json.dumps({"ignition": {"version": "3.4.0"}, "v": version}).encode()


def spec(version: str, commit: str) -> DeploySpec:
    return DeploySpec("p", "demo", commit, ignition(version), CHECKS, VolumeSpec(VOLUME, "d", 1))


class Harness:
    """An engine on a memory provider, its journal, and the checks every step must pass."""

    def __init__(self, provider: MemoryProvider, db: sa.Engine):
        self.provider = provider
        self.db = db
        self.journal = SqlJournal(db)
        self.steps: list[str] = []
        self.crash_after: str | None = None
        self.engine = self.restart()

    def restart(self) -> SwapEngine:
        """A new engine and journal on the same state: the worker after a crash."""
        self.journal = SqlJournal(self.db)
        self.engine = SwapEngine(
            self.provider,
            self.journal,
            health_timeout=0.3,
            health_interval=0.01,
            drain_seconds=0,
            on_step=self.on_step,
        )
        return self.engine

    def on_step(self, _swap_id: int, step: str) -> None:
        self.steps.append(step)
        holder = self.volume_holder()
        for inst in self.provider.list_instances():
            assert not inst.extra["writers"] or inst.id == holder, f"writers off-volume: {step}"
        if step == self.crash_after:
            raise Crash(step)

    def volume_holder(self) -> str | None:
        volume = self.provider.get_volume(VOLUME)
        return volume.attached_to if volume else None

    def served(self, host: str, path: str = "/") -> requests.Response:
        """What a client gets for `host`: through the route to the instance's front proxy."""
        (route,) = [r for r in self.provider.routes() if host in r.domains]
        ip, port = route.endpoint
        return requests.get(f"http://{ip}:{port}{path}", headers={"Host": host}, timeout=5)

    def live(self) -> str:
        current = self.journal.current("p", "demo")
        assert current is not None
        return current.instance_id

    def deploy(self, version: str, commit: str) -> SwapResult:
        return self.engine.deploy(spec(version, commit))

    def assert_serving(self, instance_id: str, notes: str) -> None:
        """`instance_id` is live, routed, holds the volume, serves, and its writers write."""
        assert self.live() == instance_id
        assert [r.instance_id for r in self.provider.routes()] == [instance_id]
        assert self.volume_holder() == instance_id
        web = self.served("web.test")
        assert web.status_code == 200 and web.text == f"web on {instance_id}\n"
        assert self.served("notes.test", "/list").text == notes
        assert self.served("notes.test", "/add?after").status_code == 200
        assert self.journal.locks() == [] and self.journal.unfinished() == []


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    """A memory provider and a journal in an in-memory SQLite database (no disk syncs).

    One connection (`StaticPool`) holds the database, so the journal of a
    "restarted worker" sees what the crashed one wrote.
    """
    provider = MemoryProvider(tmp_path / "state", ex_apps=APPS)
    db = sa.create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    try:
        yield Harness(provider, db)
    finally:
        provider.ex_close()
        db.dispose()


def first(h: Harness) -> str:
    """Deploy v1 and write a note the later swaps must keep."""
    out = h.deploy("v1", "a" * 40)
    assert out.status == "success", out.summary
    assert out.instance_id is not None
    assert h.served("notes.test", "/add?precious").status_code == 200
    h.steps.clear()
    return out.instance_id


def test_first_deploy_creates_the_volume_and_goes_live(h: Harness) -> None:
    out = h.deploy("v1", "a" * 40)
    assert (out.status, out.action) == ("success", "create"), out.summary
    assert out.instance_id is not None
    assert h.steps == [
        "create_volume",
        "create_new",
        "wait_ready",
        "attach_new",
        "start_writers_new",
        "health_check",
        "switch_traffic",
    ]
    h.assert_serving(out.instance_id, "")
    assert h.journal.get(out.swap_id).state == SwapState.SUCCEEDED  # type: ignore[arg-type]


def test_replace_moves_the_volume_and_destroys_the_old_instance(h: Harness) -> None:
    old = first(h)
    out = h.deploy("v2", "b" * 40)
    assert (out.status, out.action) == ("success", "replace"), out.summary
    assert out.instance_id not in (None, old)
    assert h.steps == STEPS
    assert h.provider.get_instance(old) is None
    assert [i.id for i in h.provider.list_instances()] == [out.instance_id]
    h.assert_serving(out.instance_id, "precious\n")  # type: ignore[arg-type]


def test_the_same_config_again_is_a_noop_that_changes_nothing(h: Harness) -> None:
    iid = first(h)
    calls = len(h.provider.ex_calls)
    out = h.deploy("v1", "f" * 40)
    assert (out.status, out.swap_id, out.instance_id) == ("noop", None, iid)
    assert h.provider.ex_calls[calls:] == [("get_instance", iid)] and h.steps == []


def test_a_failing_health_check_rolls_back_and_keeps_the_old_instance(h: Harness) -> None:
    old = first(h)
    h.provider.ex_set_status("web", 500)  # instances created from now on answer 500
    out = h.deploy("v2", "c" * 40)
    assert (out.status, out.instance_id) == ("failure", old), out.summary
    assert "health check of web timed out after 0.3 s (GET / for web.test: HTTP 500)" in out.summary
    assert f"rolled back to {'a' * 12}" in out.summary
    assert h.steps[h.steps.index("start_writers_new") + 1 :] == [
        "rollback:stop_writers_new",
        "rollback:restore_traffic",
        "rollback:detach_new",
        "rollback:attach_old",
        "rollback:start_writers_old",
        "rollback:health_check_old",
        "rollback:maintenance_off_old",
        "rollback:destroy_new",
    ]
    assert [i.id for i in h.provider.list_instances()] == [old]
    h.assert_serving(old, "precious\n")  # maintenance off, writers back
    record = h.journal.get(out.swap_id)  # type: ignore[arg-type]
    assert record.state == SwapState.ROLLED_BACK and "health check of web" in (record.reason or "")


@pytest.mark.parametrize("step", [s for s, m in FORWARD.items() if m])
def test_a_failing_provider_call_rolls_back_or_completes(h: Harness, step: str) -> None:
    old = first(h)
    method = FORWARD[step]
    assert method is not None
    h.provider.ex_fail(method)
    out = h.deploy("v2", "d" * 40)
    failed = f"{method}: injected failure (memory provider)"
    if STEPS.index(step) < SWITCH:
        assert out.status == "failure", out.summary
        assert out.summary.startswith(f"failure: {failed}; rolled back to {'a' * 12}")
        assert [i.id for i in h.provider.list_instances()] == [old]
        h.assert_serving(old, "precious\n")
        assert h.journal.get(out.swap_id).state == SwapState.ROLLED_BACK  # type: ignore[arg-type]
    elif step == "switch_traffic":  # the switch itself failed: traffic never moved
        assert out.status == "failure", out.summary
        h.assert_serving(old, "precious\n")
    else:  # past the switch there is no way back: success, with a note
        assert out.status == "success", out.summary
        assert f"the old instance {old} was not destroyed: {failed}" in out.summary
        assert out.instance_id is not None
        h.assert_serving(out.instance_id, "precious\n")
        assert h.engine.reconcile().orphans == (old,)
    steps = h.journal.steps(out.swap_id)  # type: ignore[arg-type]
    assert [(s.status, s.detail) for s in steps if s.step == step] == [("failed", failed)]


FIRST = {
    "create_volume": "create_volume",
    "create_new": "create_instance",
    "attach_new": "attach_volume",
}


@pytest.mark.parametrize("step", [*FIRST, "health_check"])
def test_a_failed_first_deploy_leaves_nothing_live(h: Harness, step: str) -> None:
    if step in FIRST:
        h.provider.ex_fail(FIRST[step])
    else:
        h.provider.ex_set_status("notes", 503)
    out = h.deploy("v1", "a" * 40)
    assert out.status == "failure", out.summary
    assert "nothing was live before, the new instance was removed" in out.summary
    assert h.provider.list_instances() == [] and h.provider.routes() == []
    assert h.journal.current("p", "demo") is None and h.journal.locks() == []
    if step != "create_volume":  # the volume stays, detached, for the next attempt
        assert h.volume_holder() is None


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_after_any_step_is_recovered_on_restart(h: Harness, step: str) -> None:
    old = first(h)
    h.crash_after = step
    with pytest.raises(Crash):
        h.deploy("v2", "d" * 40)
    assert h.journal.locks() != []
    h.crash_after = None
    (out,) = h.restart().recover()
    switched = STEPS.index(step) >= SWITCH
    assert out.status == ("success" if switched else "failure"), out.summary
    if not switched:
        assert f"the worker stopped after {step}" in out.summary
    (live,) = h.provider.list_instances()
    assert (live.id == old) != switched
    h.assert_serving(live.id, "precious\n")


@pytest.mark.parametrize("step", [s for s, m in FORWARD.items() if m])
def test_a_crash_inside_any_provider_call_is_recovered_on_restart(h: Harness, step: str) -> None:
    """The worker dies in the middle of a call: the step is journaled started, never done."""
    old = first(h)
    method = FORWARD[step]
    assert method is not None
    h.provider.ex_fail(method, Crash(method))
    with pytest.raises(Crash):
        h.deploy("v2", "d" * 40)
    (out,) = h.restart().recover()
    completes = step == "destroy_old"  # the switch is done: recover() completes it
    assert out.status == ("success" if completes else "failure"), out.summary
    (live,) = h.provider.list_instances()
    assert (live.id == old) != completes
    h.assert_serving(live.id, "precious\n")


def test_a_crash_during_a_rollback_is_resumed_with_its_reason(h: Harness) -> None:
    old = first(h)
    h.provider.ex_set_status("web", 500)
    h.crash_after = "rollback:detach_new"
    with pytest.raises(Crash):
        h.deploy("v2", "c" * 40)
    h.crash_after = None
    (out,) = h.restart().recover()
    assert out.status == "failure" and "health check of web timed out" in out.summary
    assert [i.id for i in h.provider.list_instances()] == [old]
    h.assert_serving(old, "precious\n")


def test_a_rollback_that_cannot_bring_the_old_apps_back_keeps_the_page_on(h: Harness) -> None:
    old = first(h)
    h.provider.ex_set_status("web", 500)
    h.provider.ex_set_status("web", 500, instance_id=old)  # the old app broke meanwhile
    out = h.deploy("v2", "c" * 40)
    assert out.status == "error", out.summary
    assert "rollback incomplete: rollback:health_check_old" in out.summary
    assert "the maintenance page stays on" in out.summary
    assert h.journal.get(out.swap_id).state == SwapState.FAILED  # type: ignore[arg-type]
    assert h.served("web.test").status_code == 503  # the page, not a broken app
    assert h.volume_holder() == old and [i.id for i in h.provider.list_instances()] == [old]


def test_a_failing_rollback_step_is_an_error_that_needs_a_human(h: Harness) -> None:
    old = first(h)
    h.provider.ex_fail("attach_volume", times=2)  # attach_new, then rollback:attach_old
    out = h.deploy("v2", "c" * 40)
    assert out.status == "error", out.summary
    assert "rollback incomplete: attach_old: attach_volume: injected failure" in out.summary
    assert "rollback:start_writers_old" in out.summary  # no volume: the page stays on
    assert h.journal.get(out.swap_id).state == SwapState.FAILED  # type: ignore[arg-type]
    assert h.journal.locks() == [] and h.volume_holder() is None
    assert [i.id for i in h.provider.list_instances()] == [old]
    assert h.served("web.test").status_code == 503
    report = h.engine.reconcile()  # what a restart does: the volume goes back to the live one
    assert f"p/demo: volume {VOLUME} re-attached to {old}" in report.notes


def test_a_second_swap_is_refused_while_one_runs(h: Harness) -> None:
    old = first(h)
    pause = h.provider.ex_pause("wait_until_ready")
    results: list[SwapResult] = []
    swap = threading.Thread(target=lambda: results.append(h.deploy("v2", "b" * 40)))
    swap.start()
    try:
        pause.wait_reached(10)
        with pytest.raises(SwapInProgress, match=r"p/demo: swap \d+ is still running") as refused:
            h.deploy("v3", "c" * 40)
        assert refused.value.is_swap
        assert h.live() == old  # the refused deploy touched nothing
    finally:
        pause.release()
        swap.join(10)
    (out,) = results
    assert out.status == "success", out.summary
    h.assert_serving(out.instance_id, "precious\n")  # type: ignore[arg-type]


def test_a_backup_lock_is_waited_for_then_the_deploy_runs(h: Harness) -> None:
    first(h)
    h.journal.lock("p/demo", "backup:7")
    h.engine.lock_wait, h.engine.lock_poll = 0.05, 0.01
    with pytest.raises(SwapInProgress, match="busy with a backup"):
        h.deploy("v2", "b" * 40)
    h.journal.unlock("p/demo", "backup:7")
    out = h.deploy("v2", "b" * 40)
    assert out.status == "success", out.summary


def test_destroy_keeps_the_volume_unless_asked(h: Harness) -> None:
    iid = first(h)
    out = h.engine.destroy("p", "demo")
    assert (out.status, out.action) == ("success", "destroy"), out.summary
    assert h.steps == ["remove_traffic", "stop_writers_old", "detach_old", "destroy_old"]
    assert h.provider.get_instance(iid) is None and h.provider.routes() == []
    assert h.volume_holder() is None and h.journal.current("p", "demo") is None
    again = h.deploy("v1", "a" * 40)  # a first deploy again, on the kept volume
    assert again.status == "success", again.summary
    h.assert_serving(again.instance_id, "precious\n")  # type: ignore[arg-type]
    assert h.engine.destroy("p", "demo", delete_volume=True).status == "success"
    assert h.provider.get_volume(VOLUME) is None
    assert h.engine.destroy("p", "demo").status == "noop"


def test_a_failing_destroy_is_an_error_and_recover_finishes_a_crashed_one(h: Harness) -> None:
    iid = first(h)
    h.provider.ex_fail("detach_volume")
    out = h.engine.destroy("p", "demo")
    assert out.status == "error" and "detach_volume: injected failure" in out.summary
    assert h.live() == iid  # still recorded live: a human looks at it
    h.provider.ex_fail("destroy_instance", Crash("killed"))
    with pytest.raises(Crash):
        h.engine.destroy("p", "demo")
    (done,) = h.restart().recover()
    assert done.status == "success", done.summary
    assert h.provider.list_instances() == [] and h.journal.current("p", "demo") is None


def test_reconcile_after_a_reboot_reattaches_and_reroutes(h: Harness) -> None:
    iid = first(h)
    stray = h.provider.create_instance("p", "demo", ignition("x"), shortid="stray")
    h.provider.ex_reboot()
    report = h.engine.reconcile()
    assert f"p/demo: volume {VOLUME} re-attached to {iid}" in report.notes
    assert any("traffic re-pointed" in n for n in report.notes)
    assert report.orphans == (stray.id,)
    h.assert_serving(iid, "precious\n")


def test_an_invalid_ignition_config_rolls_back(h: Harness) -> None:
    old = first(h)
    broken = DeploySpec(
        "p", "demo", "9" * 40, b'{"ignition": {}}', CHECKS, VolumeSpec(VOLUME, "d", 1)
    )
    out = h.engine.deploy(broken)
    assert out.status == "failure" and "only Ignition 3.x is read" in out.summary
    h.assert_serving(old, "precious\n")
