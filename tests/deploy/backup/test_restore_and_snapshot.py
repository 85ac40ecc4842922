"""Restore into a new volume (byte for byte), the drill, and btrfs snapshot mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.backup.journal import RunState
from deploy.backup.restic import ResticRepo
from deploy.backup.restore import RestoreError, drill, resolve_snapshot, restore_to_new_volume
from deploy.backup.restoreswap import restore_live
from deploy.backup.run import BackupRunner
from deploy.providers.types import SNAPSHOT_DIR
from deploy.spec import AppCheck
from tests.deploy.backup.conftest import Deployed, tree

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def fill(d: Deployed, megabytes: int) -> None:
    """Data written as the app would, plus a bulk file straight onto the volume."""
    assert d.get("notes.test", "/cgi-bin/add?hello").status_code == 200
    bulk = d.volume_path / "notes" / "bulk"
    bulk.mkdir(parents=True, exist_ok=True)
    for i in range(megabytes):
        (bulk / f"part{i:03d}").write_bytes(os.urandom(1 << 20))
    os.symlink("part000", bulk / "link")


def test_restore_into_a_new_volume_reproduces_the_data(
    deployed: Deployed, local_repo: ResticRepo, tmp_path: Path
) -> None:
    d = deployed
    fill(d, 4)
    run = BackupRunner(d.provider, d.swaps, d.history).run(d.project, "demo", local_repo)
    assert run.state == RunState.SUCCEEDED and run.snapshot_id
    expected = tree(d.volume_path)
    volume, result = restore_to_new_volume(
        d.provider, local_repo, run.snapshot_id, "restored", size_bytes=64 << 20, label="sydata"
    )
    assert result.ok and result.files >= 5 and result.bytes >= 4 << 20
    assert volume.attached_to is None  # left detached, ready to attach or swap in
    root = d.provider.mount_on_host(volume)
    try:
        assert tree(root) == expected  # byte for byte, symlink followed to the same bytes
        assert os.readlink(root / "notes" / "bulk" / "link") == "part000"
    finally:
        d.provider.detach_volume(volume)
    with pytest.raises(RestoreError, match="already exists"):
        restore_to_new_volume(
            d.provider, local_repo, run.snapshot_id, "restored", size_bytes=64 << 20, label="x"
        )
    report = drill(d.provider, local_repo, d.history, d.project, "demo", size_bytes=64 << 20)
    assert report.comparison.ok and report.snapshot_id == run.snapshot_id
    assert d.provider.get_volume(report.volume_id) is None  # scratch volume deleted
    assert d.history.runs(d.project, "demo", "drill")[0].state == RunState.SUCCEEDED
    assert d.history.alerts() == []


def test_snapshot_mode_keeps_the_window_shorter_than_stop_mode(
    deployed_btrfs: Deployed, local_repo: ResticRepo, tmp_path: Path
) -> None:
    d = deployed_btrfs
    fill(d, 150)
    runner = BackupRunner(d.provider, d.swaps, d.history)
    stop = runner.run(d.project, "demo", local_repo, mode="stop")
    snap = runner.run(d.project, "demo", local_repo)  # auto: btrfs -> snapshot
    assert stop.state == RunState.SUCCEEDED and snap.state == RunState.SUCCEEDED, (
        stop.error,
        snap.error,
    )
    assert (stop.mode, snap.mode) == ("stop", "snapshot")
    assert snap.done[:7] == (
        "flush",
        "maintenance_on",
        "stop_writers",
        "snapshot",
        "start_writers",
        "health_check",
        "maintenance_off",
    )
    assert snap.done[7:] == ("restic_backup", "delete_snapshot", "verify")
    assert stop.window and snap.window and snap.window < stop.window
    print(f"window: stop {stop.window:.2f} s, snapshot {snap.window:.2f} s")
    assert not any((d.volume_path / SNAPSHOT_DIR).iterdir())  # the snapshot is gone
    local_repo.restore(snap.snapshot_id or "", tmp_path / "restored")
    assert tree(tmp_path / "restored") == tree(d.volume_path)
    assert d.get("notes.test", "/cgi-bin/add?after").status_code == 200


def test_an_instance_whose_volume_is_gone_comes_back_from_its_latest_snapshot(
    deployed: Deployed, local_repo: ResticRepo
) -> None:
    d = deployed
    assert d.get("notes.test", "/cgi-bin/add?survivor").status_code == 200
    run = BackupRunner(d.provider, d.swaps, d.history).run(d.project, "demo", local_repo)
    assert run.state == RunState.SUCCEEDED
    out = d.engine.destroy(d.project, "demo", delete_volume=True)
    assert out.status == "success" and d.provider.get_volume(d.spec.volume.id) is None
    vol = d.spec.volume
    sid = resolve_snapshot(local_repo, d.project, "demo", None)
    restore_to_new_volume(
        d.provider, local_repo, sid, vol.id, size_bytes=vol.size_bytes, label=vol.label
    )
    out = d.engine.deploy(d.spec)  # a first deploy: create_volume finds the restored one
    assert out.status == "success", out.summary
    assert d.get("notes.test", "/cgi-bin/list").text == "survivor\n"


def test_restore_live_swaps_the_snapshot_in_and_keeps_the_previous_data(
    deployed: Deployed, local_repo: ResticRepo
) -> None:
    d = deployed
    apps = (AppCheck("web", "web.test", "/"), AppCheck("notes", "notes.test", "/"))
    assert d.get("notes.test", "/cgi-bin/add?before").status_code == 200
    assert BackupRunner(d.provider, d.swaps, d.history).run(d.project, "demo", local_repo).state
    assert d.get("notes.test", "/cgi-bin/add?after-backup").status_code == 200
    # a health check that cannot pass: the data is put back as it was, and since the
    # check fails with it too, the maintenance page stays on, with an alert
    broken = (AppCheck("web", "web.test", "/missing"),)
    run = restore_live(
        d.provider, d.swaps, d.history, local_repo, d.project, "demo", broken, health_timeout=1
    )
    assert run.state == RunState.FAILED and "undo:health_check" in (run.error or "")
    assert "the maintenance page stays on" in (run.error or "")
    assert (d.volume_path / "notes" / "notes.txt").read_text() == "before\nafter-backup\n"
    assert d.get("notes.test", "/cgi-bin/list").status_code == 503
    assert [a.kind for a in d.history.alerts(d.project, "demo")] == ["maintenance"]
    assert d.writers_running() == ["notes"] and d.swaps.locks() == []
    run = restore_live(d.provider, d.swaps, d.history, local_repo, d.project, "demo", apps)
    assert run.state == RunState.SUCCEEDED, run.error
    assert d.history.alerts(d.project, "demo") == []  # the page went off: alert closed
    assert d.get("notes.test", "/cgi-bin/list").text == "before\n"
    assert d.get("notes.test", "/cgi-bin/add?again").status_code == 200
    spare = d.provider.get_volume(f"{d.spec.volume.id}-before-restore-{run.id}")
    assert spare is not None and spare.attached_to is None
    root = d.provider.mount_on_host(spare)
    try:
        assert (root / "notes" / "notes.txt").read_text() == "before\nafter-backup\n"
    finally:
        d.provider.detach_volume(spare)
    live = d.provider.get_volume(d.spec.volume.id)
    assert live is not None and live.attached_to == d.instance_id
