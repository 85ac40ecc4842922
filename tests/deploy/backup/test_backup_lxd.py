"""Backups on the lxd provider run on the instance: restic in a container on its engine.

Real LXD, real restic, real containers: the fixture instance is deployed by
the swap engine, the repository is moto's S3 server listening on the
project bridge's host address (reachable from inside the instance, as a
repository must be), and the provider is told it cannot read the daemon's
directory (`volumes.lxd_dir = None`), as with a remote daemon: any host path
would fail. Covered: stop mode and snapshot mode (the snapshot holds what
was written before it, not after), a restore into a new volume, a restore
swap and a drill, a repository the instance cannot reach, the secrets in no
log, journal row or leftover container, and a SIGKILL in the middle of a
snapshot-mode run followed by `recover()`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from deploy.backup.journal import BackupJournal, RunState
from deploy.backup.restic import ResticRepo
from deploy.backup.restore import drill, restore_to_new_volume
from deploy.backup.restoreswap import restore_live
from deploy.backup.run import BackupRunner
from deploy.swap.engine import SwapEngine
from deploy.swap.sqljournal import SqlJournal
from tests.deploy.backup.conftest import S3, moto_server, port_closed
from tests.deploy.fixtures import make_ignition, make_spec
from tests.deploy.providers.lxd.fixtures import worker_options

pytestmark = [pytest.mark.docker, pytest.mark.lxd]

REPO_ROOT = Path(__file__).resolve().parents[3]


def gateway(provider: Any, project: str) -> str:
    """The host's address on the project's bridge: what the instance reaches the host at."""
    site = provider.sites.ensure(project)
    return str(next(site.subnet.hosts()))


class Deployed:
    """The fixture instance on lxd, its journals, a repository on moto, and what to search."""

    def __init__(self, provider: Any, tmp_path: Path, project: str, image: str, s3: S3):
        self.provider = provider
        self.project = project
        self.db = f"sqlite:///{tmp_path / 'swapyard.db'}"
        self.swaps = SqlJournal(self.db)
        self.history = BackupJournal(self.swaps.engine)
        spec = make_spec(project, make_ignition(image, "v1", units=True), "a" * 40)
        self.spec = spec
        out = SwapEngine(provider, self.swaps, ready_timeout=180, health_timeout=30).deploy(spec)
        assert out.status == "success", out.summary
        self.instance_id = str(out.instance_id)
        self.password = "pw-" + secrets.token_hex(12)
        self.env = {"RESTIC_PASSWORD": self.password, **s3.env}
        self.url = s3.url(f"/{project}/demo")
        self.repo = ResticRepo(self.url, self.env)
        self.repo.init_if_missing()
        # as with a remote daemon: no path of the daemon's directory is readable here
        provider.volumes.lxd_dir = None

    @property
    def secrets(self) -> list[str]:
        return [self.password, self.env["AWS_SECRET_ACCESS_KEY"]]

    def get(self, host: str, path: str = "/") -> requests.Response:
        edge = self.provider.edge.listen[0]
        return requests.get(f"http://{edge}{path}", headers={"Host": host}, timeout=10)

    def runner(self, **kw: Any) -> BackupRunner:
        return BackupRunner(self.provider, self.swaps, self.history, health_interval=0.2, **kw)

    def notes_in(self, snapshot_id: str, tmp: Path) -> str:
        """notes.txt of a snapshot, restored on the control host (the repository is reachable)."""
        self.repo.restore(snapshot_id, tmp)
        return (tmp / "notes" / "notes.txt").read_text()

    def leftovers(self) -> dict[str, Any]:
        """Volumes besides the live one, job devices, snapshots of the live volume, job
        containers on the instance: all empty after a run."""
        p = self.provider
        vols = sorted(v.id for v in p.list_volumes() if v.id != self.spec.volume.id)
        devices = {}
        for inst in p.list_instances():
            raw = p._raw(inst.id)
            jobs = [n for n in (raw.get("devices") or {}) if n.startswith("swapyard-job-")]
            if jobs:
                devices[inst.id] = jobs
        live = p.volumes.find(self.spec.volume.id)
        client = p.client.in_project(live.lxd_project)
        snaps = client.get(f"/1.0/storage-pools/{p.pool}/volumes/custom/{live.name}/snapshots")
        engine = p._engine(p.get_instance(self.instance_id))
        jobs = engine.client.containers.list(all=True, filters={"label": "org.swapyard.job"})
        return {
            "volumes": vols,
            "devices": devices,
            "snapshots": snaps,
            "containers": [c.name for c in jobs],
        }

    def assert_no_secret(self, *texts: str) -> None:
        """No secret in the journals (every row of every table), nor in `texts`."""
        dump = []
        engine = sa.create_engine(self.db)
        with engine.connect() as conn:
            for table in sa.inspect(engine).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                    dump.append(repr(tuple(row)))
        engine.dispose()
        text = "\n".join([*dump, *texts])
        for value in self.secrets:
            assert value not in text


@pytest.fixture
def d(lxd_provider: Any, tmp_path: Path, project: str, test_image: str) -> Iterator[Deployed]:
    with moto_server(gateway(lxd_provider, project)) as s3:
        yield Deployed(lxd_provider, tmp_path, project, test_image, s3)


def test_stop_and_snapshot_backups_run_on_the_instance(
    d: Deployed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert d.get("notes.test", "/cgi-bin/add?before").status_code == 200
    stop = d.runner().run(d.project, "demo", d.repo, mode="stop")
    assert stop.state == RunState.SUCCEEDED, stop.error
    assert stop.mode == "stop" and stop.files and stop.files >= 1
    assert d.notes_in(stop.snapshot_id or "", tmp_path / "stop") == "before\n"

    def write_after(_run_id: int, step: str) -> None:
        if step == "maintenance_off":  # the snapshot is taken, the writers serve again
            assert d.get("notes.test", "/cgi-bin/add?after").status_code == 200

    snap = d.runner(on_step=write_after).run(d.project, "demo", d.repo, mode="snapshot")
    assert snap.state == RunState.SUCCEEDED, snap.error
    assert snap.mode == "snapshot"
    assert snap.done[-3:] == ("restic_backup", "delete_snapshot", "verify")
    assert d.notes_in(snap.snapshot_id or "", tmp_path / "snap") == "before\n"
    assert d.get("notes.test", "/cgi-bin/list").text == "before\nafter\n"
    assert d.leftovers() == {"volumes": [], "devices": {}, "snapshots": [], "containers": []}
    d.assert_no_secret(caplog.text)
    assert stop.window and snap.window and snap.window < stop.window
    print(
        f"lxd window: stop {stop.window:.2f} s (restic {stop.duration:.2f} s), "
        f"snapshot {snap.window:.2f} s (restic {snap.duration:.2f} s)"
    )


def test_restore_to_new_volume_restore_swap_and_drill(d: Deployed, tmp_path: Path) -> None:
    assert d.get("notes.test", "/cgi-bin/add?kept").status_code == 200
    run = d.runner().run(d.project, "demo", d.repo, mode="stop")
    assert run.state == RunState.SUCCEEDED, run.error
    sid = run.snapshot_id or ""
    assert d.get("notes.test", "/cgi-bin/add?lost").status_code == 200

    volume, result = restore_to_new_volume(
        d.provider,
        d.repo,
        sid,
        f"sy-{d.project}-restored",
        size_bytes=64 << 20,
        label="sydata",
        project=d.project,
    )
    assert result.ok and result.files >= 1, result.summary()
    assert volume.attached_to is None  # the scratch mount on the instance is gone
    d.provider.destroy_volume(volume)

    apps = d.swaps.live_apps(d.project, "demo")
    restored = restore_live(
        d.provider, d.swaps, d.history, d.repo, d.project, "demo", apps, health_timeout=30
    )
    assert restored.state == RunState.SUCCEEDED, restored.error
    assert d.get("notes.test", "/cgi-bin/list").text == "kept\n"
    spare = f"{d.spec.volume.id}-before-restore-{restored.id}"
    d.provider.destroy_volume(d.provider.get_volume(spare))

    report = drill(d.provider, d.repo, d.history, d.project, "demo", size_bytes=64 << 20)
    assert report.comparison.ok and report.comparison.files >= 1, report.notes
    assert d.history.get(report.run_id or 0).state == RunState.SUCCEEDED
    assert d.leftovers() == {"volumes": [], "devices": {}, "snapshots": [], "containers": []}
    d.assert_no_secret()


def test_a_repository_the_instance_cannot_reach_fails_clearly(d: Deployed) -> None:
    host = gateway(d.provider, d.project)
    absent = str(list(d.provider.sites.ensure(d.project).subnet.hosts())[-1])  # no one there
    closed = port_closed()  # free on loopback; nothing listens on it at the gateway either
    for where in (f"{host}:{closed}", f"{absent}:9000"):
        repo = ResticRepo(f"s3:http://{where}/backups/x", d.env, probe_timeout=20)
        started = time.monotonic()
        run = d.runner().run(d.project, "demo", repo, mode="snapshot")
        elapsed = time.monotonic() - started
        assert run.state == RunState.FAILED
        error = run.error or ""
        assert error.startswith("the repository cannot be reached: restic cat config"), error
        assert where in error and "verify" not in run.done, (error, run.done)
        assert f"from instance {d.instance_id}" in error, error
        assert elapsed < 150, elapsed  # not hanging: the probe gives up after 20 s
        assert d.get("notes.test", "/cgi-bin/list").status_code == 200  # the apps are back
        assert d.leftovers() == {"volumes": [], "devices": {}, "snapshots": [], "containers": []}
        d.assert_no_secret(error)
        print(f"unreachable {where}: failed after {elapsed:.1f} s: {error[-120:]}")


def test_killed_during_a_snapshot_run_then_recover_leaves_nothing(d: Deployed) -> None:
    options = worker_options(d.provider)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.deploy.backup.killed_backup_remote",
            "lxd",
            str(d.provider.state_dir),
            json.dumps(options),
            d.db,
            d.project,
            d.url,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "SWAPYARD_TEST_RESTIC_ENV": json.dumps(d.env)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (record,) = d.history.unfinished()
    assert record.mode == "snapshot" and record.done[-1] == "maintenance_off"
    left = d.leftovers()
    assert left["volumes"] and left["devices"] and left["containers"]  # killed mid-job

    (out,) = d.runner().recover()
    assert out.state == RunState.FAILED and "not fully" not in (out.error or ""), out.error
    assert d.leftovers() == {"volumes": [], "devices": {}, "snapshots": [], "containers": []}
    assert d.get("notes.test", "/cgi-bin/add?alive").status_code == 200
    d.assert_no_secret(proc.stdout, proc.stderr)
