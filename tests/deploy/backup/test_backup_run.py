"""A backup run against a real instance: maintenance 503, writers stopped, apps back after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.backup.journal import RunState
from deploy.backup.restic import ResticRepo
from deploy.backup.run import BackupRunner
from deploy.providers.types import SwapInProgress
from schemas.model import Retention
from tests.deploy.backup.conftest import S3, Deployed, port_closed, tree
from tests.deploy.fixtures import make_ignition, make_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Probe:
    """An `on_step` hook that looks at the instance from outside after each step."""

    def __init__(self, d: Deployed):
        self.d = d
        self.seen: dict[str, tuple[int, list[str]]] = {}

    def __call__(self, _run_id: int, step: str) -> None:
        status = self.d.get("notes.test", "/cgi-bin/list").status_code
        self.seen[step] = (status, self.d.writers_running())


def assert_apps_serve(d: Deployed) -> None:
    assert d.get("web.test").text == "web v1\n"
    assert d.get("notes.test", "/cgi-bin/add?after").status_code == 200
    assert d.writers_running() == ["notes"]


def test_backup_shows_maintenance_stops_writers_and_stores_the_volume(
    deployed: Deployed, local_repo: ResticRepo, moto_s3: S3, password: str, tmp_path: Path
) -> None:
    d = deployed
    for word in ("one", "two", "three"):
        assert d.get("notes.test", f"/cgi-bin/add?{word}").status_code == 200
    probe = Probe(d)
    runner = BackupRunner(d.provider, d.swaps, d.history, on_step=probe)
    run = runner.run(d.project, "demo", local_repo, retention=Retention(daily=7))
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.mode == "stop" and run.commit == "a" * 40
    # during the backup: the maintenance page, writers stopped; after: both back
    assert probe.seen["maintenance_on"][0] == 503
    assert probe.seen["stop_writers"] == (503, [])
    assert probe.seen["restic_backup"] == (503, [])
    assert probe.seen["start_writers"][1] == ["notes"]
    assert probe.seen["health_check"][0] == 503  # the page stays on while the apps are checked
    assert probe.seen["maintenance_off"][0] == 200
    assert run.done[-3:] == ("maintenance_off", "verify", "forget_prune")
    assert run.window is not None and run.window > 0 and run.files and run.bytes
    # the snapshot's content is the volume's content, byte for byte
    (snap,) = local_repo.snapshots([f"project={d.project}", "instance=demo"])
    assert snap.id == run.snapshot_id
    assert any(t.startswith(f"run={run.id}.") for t in snap.tags)
    local_repo.restore(snap.id, tmp_path / "restored")
    assert tree(tmp_path / "restored") == tree(d.volume_path)
    assert (tmp_path / "restored" / "notes" / "notes.txt").read_text() == "one\ntwo\nthree\n"
    assert_apps_serve(d)
    # the same instance into an S3 repository (moto)
    s3 = ResticRepo(moto_s3.url(f"/{d.project}/demo"), {"RESTIC_PASSWORD": password, **moto_s3.env})
    s3.init_if_missing()
    run = runner.run(d.project, "demo", s3)
    assert run.state == RunState.SUCCEEDED, run.error
    assert [s.id for s in s3.snapshots()] == [run.snapshot_id]
    assert d.swaps.locks() == [] and d.history.alerts() == []
    assert_apps_serve(d)


def test_failing_restic_brings_the_apps_back_and_records_why(
    deployed: Deployed, local_repo: ResticRepo, moto_s3: S3
) -> None:
    d = deployed
    runner = BackupRunner(d.provider, d.swaps, d.history)
    wrong = ResticRepo(local_repo.repository, {"RESTIC_PASSWORD": "wrong-password-42"})
    run = runner.run(d.project, "demo", wrong)
    assert run.state == RunState.FAILED and "wrong password" in (run.error or "")
    assert "wrong-password-42" not in (run.error or "")
    assert run.done[-3:] == ("start_writers", "health_check", "maintenance_off")
    assert_apps_serve(d)
    unreachable = ResticRepo(
        f"s3:http://127.0.0.1:{port_closed()}/nowhere",
        {"RESTIC_PASSWORD": "x", **moto_s3.env},
        timeout=4,
    )
    run = runner.run(d.project, "demo", unreachable)
    assert run.state == RunState.FAILED and "timed out" in (run.error or "")
    assert_apps_serve(d)
    alerts = d.history.alerts(d.project, "demo")
    assert [a.kind for a in alerts] == ["failed"]
    assert [r.state for r in d.history.runs(d.project, "demo")] == [
        RunState.FAILED,
        RunState.FAILED,
    ]
    assert d.swaps.locks() == []
    # the next good backup clears the alert
    assert runner.run(d.project, "demo", local_repo).state == RunState.SUCCEEDED
    assert d.history.alerts() == []


def test_backup_and_swap_of_one_instance_never_overlap(
    deployed: Deployed, local_repo: ResticRepo, test_image: str
) -> None:
    d = deployed
    d.swaps.lock(f"{d.project}/demo", "swap-standing-in")
    run = BackupRunner(d.provider, d.swaps, d.history).run(d.project, "demo", local_repo)
    assert run.state == RunState.SKIPPED and "swap-standing-in" in (run.error or "")
    assert d.get("notes.test", "/cgi-bin/list").status_code == 200  # never touched
    d.swaps.unlock(f"{d.project}/demo", "swap-standing-in")
    refused: list[str] = []

    def swap_during_backup(run_id: int, step: str) -> None:
        if step == "stop_writers":
            try:
                d.engine.deploy(make_spec(d.project, make_ignition(test_image, "v2"), "b" * 40))
            except SwapInProgress as exc:
                refused.append(str(exc))

    run = BackupRunner(d.provider, d.swaps, d.history, on_step=swap_during_backup).run(
        d.project, "demo", local_repo
    )
    assert run.state == RunState.SUCCEEDED
    assert refused and f"backup:{run.id}" in refused[0]


def test_a_process_killed_mid_backup_is_recovered_at_startup(
    deployed: Deployed, local_repo: ResticRepo, password: str
) -> None:
    d = deployed
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.deploy.backup.killed_backup",
            str(d.provider.state_dir),
            d.provider.edge.listen[0],
            d.provider.edge.admin,
            d.db,
            d.project,
            local_repo.repository,
            "stop_writers",
        ],
        env={"RESTIC_PASSWORD": password, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == -9, worker.stderr
    assert d.get("notes.test", "/cgi-bin/list").status_code == 503  # left in maintenance
    assert d.writers_running() == []
    (stuck,) = d.history.unfinished()
    assert stuck.state == RunState.RUNNING and d.swaps.locks() == [(f"{d.project}/demo", None)]
    (recovered,) = BackupRunner(d.provider, d.swaps, d.history).recover()
    assert recovered.state == RunState.FAILED and "stopped after stop_writers" in (
        recovered.error or ""
    )
    assert_apps_serve(d)
    assert d.swaps.locks() == [] and d.history.unfinished() == []
