"""The swap engine end to end: local provider, real containers, loop devices and edge Caddy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from deploy.providers.local.provider import LocalProvider
from deploy.providers.local.volumes import loop_devices_of
from deploy.spec import AppCheck
from deploy.swap.journal import SwapState
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.swap.harness import Crash, Harness, request_loop, spec

pytestmark = pytest.mark.docker

APPS = (AppCheck("web", "web.test", "/"), AppCheck("notes", "notes.test", "/"))


@pytest.fixture
def h(provider: LocalProvider, tmp_path: Path, project: str) -> Harness:
    return Harness(provider, f"sqlite:///{tmp_path / 'journal.db'}", project)


def first_deploy(h: Harness, ignition: bytes) -> str:
    out = h.engine.deploy(spec(h.project, ignition, "a" * 40))
    assert out.status == "success", out.summary
    assert out.instance_id is not None
    return out.instance_id


def test_first_deploy_serves_apps_and_writes_data(h: Harness, ignition_v1: bytes) -> None:
    iid = first_deploy(h, ignition_v1)
    assert h.get("web.test").text == "web v1\n"
    assert h.get("notes.test", "/cgi-bin/add?first").status_code == 200
    assert h.get("notes.test", "/cgi-bin/list").text == "first\n"
    assert h.mounts() == [Path(h.provider.instances_dir / iid / "data")]
    current = h.journal.current(h.project, "demo")
    assert current is not None and current.instance_id == iid
    assert h.steps[0] == "create_volume" and "detach_old" not in h.steps


def test_swap_moves_the_data_and_removes_the_old_instance(
    h: Harness, ignition_v1: bytes, ignition_v2: bytes
) -> None:
    old = first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?before-swap")
    out = h.engine.deploy(spec(h.project, ignition_v2, "b" * 40))
    assert out.status == "success", out.summary
    assert out.instance_id != old
    assert h.get("web.test").text == "web v2\n"
    assert h.get("notes.test", "/cgi-bin/list").text == "before-swap\n"
    assert h.containers(old) == []
    assert h.provider.get_instance(old) is None
    assert len(loop_devices_of(h.image)) == 1
    assert h.mounts() == [h.provider.instances_dir / out.instance_id / "data"]
    assert h.steps[-6:] == [
        "detach_old",
        "attach_new",
        "start_writers_new",
        "health_check",
        "switch_traffic",
        "destroy_old",
    ]
    assert h.journal.get(out.swap_id).state == SwapState.SUCCEEDED  # type: ignore[arg-type]


def test_failing_health_check_rolls_back(
    h: Harness, ignition_v1: bytes, ignition_broken: bytes
) -> None:
    old = first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?kept")
    h.engine.health_timeout = 2
    out = h.engine.deploy(spec(h.project, ignition_broken, "c" * 40))
    assert out.status == "failure"
    assert "health check of web timed out after 2 s" in out.summary
    assert f"rolled back to {'a' * 12}" in out.summary
    assert h.get("web.test").text == "web v1\n"  # old instance serves again, maintenance off
    assert h.get("notes.test", "/cgi-bin/list").text == "kept\n"
    assert h.get("notes.test", "/cgi-bin/add?after").status_code == 200  # writers back
    assert [i.id for i in h.provider.list_instances()] == [old]
    record = h.journal.get(out.swap_id)  # type: ignore[arg-type]
    assert record.state == SwapState.ROLLED_BACK and "health check of web" in (record.reason or "")
    assert h.journal.locks() == []


FORWARD = [
    "create_new",
    "wait_ready",
    "maintenance_old",
    "stop_writers_old",
    "detach_old",
    "attach_new",
    "start_writers_new",
    "health_check",
    "switch_traffic",
    "destroy_old",
]


@pytest.mark.parametrize("crash_after", FORWARD)
def test_crash_after_any_step_then_restart_recovers(
    h: Harness, ignition_v1: bytes, ignition_v2: bytes, crash_after: str
) -> None:
    old = first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?precious")
    h.crash_after = crash_after
    with pytest.raises(Crash):
        h.engine.deploy(spec(h.project, ignition_v2, "d" * 40))
    if crash_after == "detach_old":
        assert h.mounts() == []  # between detach and attach: mounted nowhere
    assert h.journal.locks() != []
    # the restarted worker: a new provider object and journal on the same state
    h.crash_after = None
    h.provider = LocalProvider(
        h.provider.state_dir,
        ex_edge_listen=h.provider.edge.listen,
        ex_edge_admin=h.provider.edge.admin,
        ex_stop_timeout=5,
    )
    h.journal = SqlJournal(h.db)
    (out,) = h.make_engine().recover()
    switched = FORWARD.index(crash_after) >= FORWARD.index("switch_traffic")
    assert out.status == ("success" if switched else "failure"), out.summary
    assert h.get("web.test").text == ("web v2\n" if switched else "web v1\n")
    assert h.get("notes.test", "/cgi-bin/list").text == "precious\n"
    assert h.get("notes.test", "/cgi-bin/add?after").status_code == 200  # writers run
    assert h.journal.locks() == [] and h.journal.unfinished() == []
    (live,) = h.provider.list_instances()
    assert (live.id == old) != switched
    assert len(h.mounts()) == 1 and len(loop_devices_of(h.image)) == 1
    if not switched:
        assert f"the worker stopped after {crash_after}" in out.summary


class Boom(RuntimeError):
    """A step that fails (an Exception: the engine rolls back)."""


@pytest.mark.parametrize("fail_after", ["stop_writers_old", "attach_new", "switch_traffic"])
def test_failure_after_a_step_rolls_back_or_completes(
    h: Harness, ignition_v1: bytes, ignition_v2: bytes, fail_after: str
) -> None:
    first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?precious")
    original = h.on_step

    def failing(swap_id: int, step: str) -> None:
        original(swap_id, step)
        if step == fail_after:
            raise Boom(f"injected after {step}")

    h.engine.on_step = failing
    out = h.engine.deploy(spec(h.project, ignition_v2, "d" * 40))
    switched = fail_after == "switch_traffic"
    assert out.status == ("success" if switched else "failure"), out.summary
    if not switched:
        assert f"Boom: injected after {fail_after}; rolled back to" in out.summary
    assert h.get("web.test").text == ("web v2\n" if switched else "web v1\n")
    assert h.get("notes.test", "/cgi-bin/list").text == "precious\n"
    assert len(h.provider.list_instances()) == 1 and h.journal.locks() == []


def test_worker_killed_after_detach_then_restart_rolls_back(
    h: Harness, ignition_v1: bytes, test_image: str
) -> None:
    old = first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?precious")
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.deploy.swap.killed_worker",
            "local",
            str(h.provider.state_dir),
            json.dumps(
                {
                    "ex_edge_listen": [h.provider.edge.listen[0]],
                    "ex_edge_admin": h.provider.edge.admin,
                    "ex_stop_timeout": 5,
                }
            ),
            h.db,
            test_image,
            h.project,
            "detach_old",
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr
    assert h.mounts() == [] and h.journal.locks() != []
    (out,) = h.make_engine().recover()
    assert out.status == "failure" and "stopped after detach_old" in out.summary
    assert [i.id for i in h.provider.list_instances()] == [old]
    assert h.get("web.test").text == "web v1\n"
    assert h.get("notes.test", "/cgi-bin/list").text == "precious\n"
    assert h.journal.locks() == [] and h.journal.unfinished() == []


def test_invalid_ignition_rolls_back(h: Harness, ignition_v1: bytes) -> None:
    first_deploy(h, ignition_v1)
    broken = json.dumps({"ignition": {"version": "3.4.0"}}).encode()
    out = h.engine.deploy(spec(h.project, broken, "9" * 40))
    assert out.status == "failure" and "compose.yaml" in out.summary
    assert h.get("web.test").text == "web v1\n"
    assert len(h.provider.list_instances()) == 1


def test_request_loop_sees_no_connection_error(
    h: Harness, ignition_v1: bytes, ignition_v2: bytes
) -> None:
    first_deploy(h, ignition_v1)
    stop, log = threading.Event(), []
    thread = threading.Thread(target=request_loop, args=(h, stop, log))
    thread.start()
    try:
        time.sleep(0.5)
        out = h.engine.deploy(spec(h.project, ignition_v2, "e" * 40))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert out.status == "success", out.summary
    errors = [entry for entry in log if not isinstance(entry[1], int)]
    assert errors == []
    statuses = {code for _, code in log}
    assert statuses <= {200, 503} and 200 in statuses
    acked = {path.split("?")[1] for path, code in log if "add" in path and code == 200}
    stored = set(h.get("notes.test", "/cgi-bin/list").text.split())
    assert acked and acked <= stored


def test_noop_touches_no_container(h: Harness, ignition_v1: bytes, docker_client: Any) -> None:
    iid = first_deploy(h, ignition_v1)
    before = {c.id: c.attrs["State"]["StartedAt"] for c in h.containers(iid)}
    steps = len(h.steps)
    out = h.engine.deploy(spec(h.project, ignition_v1, "f" * 40))
    assert out.status == "noop" and out.swap_id is None
    after = {c.id: c.attrs["State"]["StartedAt"] for c in h.containers(iid)}
    assert after == before and len(h.steps) == steps


def test_destroy_keeps_the_volume_unless_asked(h: Harness, ignition_v1: bytes) -> None:
    iid = first_deploy(h, ignition_v1)
    out = h.engine.destroy(h.project, "demo")
    assert out.status == "success", out.summary
    assert h.provider.get_instance(iid) is None
    assert h.provider.get_volume(f"sy-{h.project}-demo") is not None
    assert h.provider.routes() == [] and h.journal.current(h.project, "demo") is None


def test_reconcile_after_a_reboot_reattaches_and_reroutes(h: Harness, ignition_v1: bytes) -> None:
    iid = first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?survives")
    inst = h.provider.get_instance(iid)
    assert inst is not None
    # a reboot loses the mounts, the loop devices and the edge process
    h.provider.stop_writers(inst)
    h.provider.volumes.detach(f"sy-{h.project}-demo")
    h.provider.ex_stop_edge()
    report = h.engine.reconcile()
    assert any("re-attached" in n for n in report.notes)
    assert iid not in report.orphans
    assert h.get("notes.test", "/cgi-bin/list").text == "survives\n"


def test_destroy_deletes_the_volume_only_when_told(h: Harness, ignition_v1: bytes) -> None:
    first_deploy(h, ignition_v1)
    image = h.image
    out = h.engine.destroy(h.project, "demo", delete_volume=True)
    assert out.status == "success", out.summary
    assert h.provider.get_volume(f"sy-{h.project}-demo") is None and not image.exists()
    assert h.engine.destroy(h.project, "demo").status == "noop"


def test_crash_during_a_rollback_is_resumed_with_its_reason(
    h: Harness, ignition_v1: bytes, ignition_broken: bytes
) -> None:
    old = first_deploy(h, ignition_v1)
    h.get("notes.test", "/cgi-bin/add?kept")
    h.engine.health_timeout = 1
    h.crash_after = "rollback:detach_new"
    with pytest.raises(Crash):
        h.engine.deploy(spec(h.project, ignition_broken, "c" * 40))
    h.crash_after = None
    (out,) = h.make_engine().recover()
    assert out.status == "failure" and "health check of web timed out" in out.summary
    assert [i.id for i in h.provider.list_instances()] == [old]
    assert h.get("notes.test", "/cgi-bin/list").text == "kept\n"
    assert h.journal.locks() == [] and len(h.mounts()) == 1
