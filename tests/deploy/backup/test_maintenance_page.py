"""The maintenance page stays on until restarted apps answer: backup, restore, rollback.

The instance's writer starts slowly (busybox httpd behind a 2 s delay, see
tests/deploy/fixtures.py), so turning the page off with the writers'
start would show clients a 502. A request loop through the edge must see
only 200 and 503. When the writer never comes back (a `.hold` file in its
data), the page stays on, a `maintenance` alert is open and the journal
says which step kept it.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import pytest
import requests

from deploy.backup.journal import RunState
from deploy.backup.metrics import prometheus_text
from deploy.backup.restic import ResticRepo
from deploy.backup.restoreswap import restore_live
from deploy.backup.run import BackupRunner
from deploy.maintenance import ALERT
from renderers.layout import HEALTH_PASS_HEADER
from tests.deploy.backup.conftest import Deployed
from tests.deploy.fixtures import make_ignition, make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class RequestLoop(threading.Thread):
    """GETs both apps through the edge, a new connection each time, until stopped."""

    def __init__(self, d: Deployed):
        super().__init__(daemon=True)
        self.d = d
        self.seen: list[tuple[str, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for host, path in (("notes.test", "/cgi-bin/list"), ("web.test", "/")):
                try:
                    self.seen.append((host, self.d.get(host, path).status_code))
                except requests.RequestException as exc:
                    self.seen.append((host, exc))
            time.sleep(0.005)

    def __enter__(self) -> RequestLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()

    def statuses(self) -> set[Any]:
        return {code for _, code in self.seen}


class StartingProbe:
    """An `on_step` hook: right after the writers start, what the app itself answers.

    It admits its own health pass and asks `notes` behind the page: a 502
    proves the app was still starting, i.e. that turning the page off at
    that moment would have shown clients a 502.
    """

    def __init__(self, d: Deployed, step: str):
        self.d, self.step = d, step
        self.answers: list[int] = []

    def __call__(self, _id: int, step: str) -> None:
        if step != self.step:
            return
        inst = self.d.provider.get_instance(self.d.instance_id)
        assert inst is not None and inst.endpoint is not None
        token = secrets.token_hex(16)
        self.d.provider.set_health_pass(inst, token)
        try:
            host, port = inst.endpoint
            resp = requests.get(
                f"http://{host}:{port}/cgi-bin/list",
                headers={"Host": "notes.test", HEALTH_PASS_HEADER: token},
                timeout=5,
            )
            self.answers.append(resp.status_code)
        finally:
            self.d.provider.set_health_pass(inst, None)


def test_backup_restore_and_rollback_show_clients_only_200_and_503(
    deployed_slow: Deployed, local_repo: ResticRepo, test_image: str
) -> None:
    d = deployed_slow
    assert d.get("notes.test", "/cgi-bin/add?kept").status_code == 200
    probe = StartingProbe(d, "start_writers")
    runner = BackupRunner(d.provider, d.swaps, d.history, on_step=probe, health_interval=0.1)
    with RequestLoop(d) as loop:
        time.sleep(0.3)
        backup = runner.run(d.project, "demo", local_repo, mode="stop")
        time.sleep(0.3)
    assert backup.state == RunState.SUCCEEDED, backup.error
    assert probe.answers == [502]  # the writer was still starting when the page could go off
    assert backup.done[-5:] == (
        "restic_backup",
        "start_writers",
        "health_check",
        "maintenance_off",
        "verify",
    )
    assert loop.statuses() == {200, 503}, loop.statuses()
    assert backup.window is not None and backup.duration is not None
    assert backup.window > backup.duration  # the page was on for restic and the restarts

    apps = d.swaps.live_apps(d.project, "demo")
    assert {a.app for a in apps} == {"web", "notes"}
    with RequestLoop(d) as loop:
        time.sleep(0.3)
        restore = restore_live(d.provider, d.swaps, d.history, local_repo, d.project, "demo", apps)
        time.sleep(0.3)
    assert restore.state == RunState.SUCCEEDED, restore.error
    assert restore.done[-3:] == ("start_writers", "health_check", "maintenance_off")
    assert restore.window is not None and restore.window > 0
    assert loop.statuses() == {200, 503}, loop.statuses()
    assert d.get("notes.test", "/cgi-bin/list").text == "kept\n"

    d.engine.health_timeout = 4  # the broken instance fails its check after 4 s
    steps: list[str] = []
    d.engine.on_step = lambda _id, step: steps.append(step)
    with RequestLoop(d) as loop:
        time.sleep(0.3)
        out = d.engine.deploy(
            make_spec(d.project, make_ignition(test_image, "v3", healthy=False), "c" * 40)
        )
        time.sleep(0.3)
    assert out.status == "failure" and "rolled back" in out.summary, out.summary
    assert steps[-4:-1] == [
        "rollback:start_writers_old",
        "rollback:health_check_old",
        "rollback:maintenance_off_old",
    ]
    assert loop.statuses() == {200, 503}, loop.statuses()
    assert d.get("notes.test", "/cgi-bin/add?after").status_code == 200
    assert d.history.alerts() == []


def test_an_app_that_never_comes_back_keeps_the_page_on_with_an_alert(
    deployed_slow: Deployed, local_repo: ResticRepo
) -> None:
    d = deployed_slow
    hold = d.volume_path / "notes" / ".hold"
    hold.touch()  # the writer's next start never reaches httpd
    runner = BackupRunner(d.provider, d.swaps, d.history, health_timeout=3, health_interval=0.2)
    run = runner.run(d.project, "demo", local_repo, mode="stop")
    assert run.state == RunState.FAILED
    assert "health_check" in (run.error or "") and "maintenance page stays on" in (run.error or "")
    assert run.snapshot_id  # the backup itself is stored
    assert d.get("web.test").status_code == 503  # the page is on for every app
    assert d.get("notes.test", "/cgi-bin/list").status_code == 503
    assert run.window is None  # still open
    journaled = d.history.steps(run.id)
    assert ("health_check", "failed") in [(s, status) for s, status, _ in journaled]
    assert "maintenance_off" not in run.done
    (alert,) = [a for a in d.history.alerts(d.project, "demo") if a.kind == ALERT]
    assert "health check of notes timed out" in alert.message
    metrics = prometheus_text(d.history)
    assert f'swapyard_backup_alert{{instance="demo",kind="{ALERT}",project="{d.project}"}} 1' in (
        metrics
    )
    assert d.swaps.locks() == []  # the lock is released: a deploy can repair the instance

    hold.unlink()  # the app can start again: the next backup brings it back, closes the alert
    again = runner.run(d.project, "demo", local_repo, mode="stop")
    assert again.state == RunState.SUCCEEDED, again.error
    assert d.get("notes.test", "/cgi-bin/list").status_code == 200
    assert [a for a in d.history.alerts(d.project, "demo") if a.kind == ALERT] == []


def test_a_restore_whose_data_keeps_an_app_down_puts_the_previous_data_back(
    deployed_slow: Deployed, local_repo: ResticRepo
) -> None:
    d = deployed_slow
    hold = d.volume_path / "notes" / ".hold"
    runner = BackupRunner(d.provider, d.swaps, d.history, health_interval=0.2)
    hold.touch()  # a snapshot of data the writer cannot start with (the running one goes on)
    bad = local_repo.backup(d.volume_path, [f"project={d.project}", "instance=demo"])
    hold.unlink()
    assert (
        runner.run(d.project, "demo", local_repo).state == RunState.SUCCEEDED
    )  # the app waits 2 s
    assert d.get("notes.test", "/cgi-bin/add?current").status_code == 200
    apps = d.swaps.live_apps(d.project, "demo")
    with RequestLoop(d) as loop:
        run = restore_live(
            d.provider,
            d.swaps,
            d.history,
            local_repo,
            d.project,
            "demo",
            apps,
            snapshot_id=bad.snapshot_id,
            health_timeout=3,
        )
    assert run.state == RunState.FAILED and "previous data back" in (run.error or ""), run.error
    assert "undo:maintenance_off" in run.done
    assert loop.statuses() <= {200, 503}, loop.statuses()
    assert d.get("notes.test", "/cgi-bin/list").text.endswith("current\n")
    assert [a for a in d.history.alerts(d.project, "demo") if a.kind == ALERT] == []


def test_an_instance_rendered_before_the_health_pass_still_comes_back(
    provider: Any,
    tmp_path: Any,
    project: str,
    test_image: str,
    local_repo: ResticRepo,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = make_ignition(test_image, "v1", health_pass=False)  # deployed by an older swapyard
    d = Deployed(
        provider,
        f"sqlite:///{tmp_path / 'swapyard.db'}",
        project,
        make_spec(project, old, "a" * 40),
    )
    run = BackupRunner(d.provider, d.swaps, d.history, health_timeout=10).run(
        d.project, "demo", local_repo, mode="stop"
    )
    assert run.state == RunState.SUCCEEDED, run.error
    assert "ignores the health pass" in caplog.text  # and says to redeploy
    assert d.get("notes.test", "/cgi-bin/add?after").status_code == 200
    assert d.history.alerts() == []
