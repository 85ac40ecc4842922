"""The restic seam against real restic: a local repository and S3 on moto's server."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
from pathlib import Path

import pytest

from deploy.backup.check import check_repository, check_staleness
from deploy.backup.journal import BackupJournal
from deploy.backup.restic import ResticError, ResticRepo, repository_for, resolve_environment
from schemas.errors import SecretNotFound, SwapyardError
from schemas.model import Backup, Retention, SecretRef
from tests.deploy.backup.conftest import S3, tree

TAGS = ["project=p", "instance=blog"]


def make_data(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (root / "empty").mkdir()
    return root


def backup_at(repo: ResticRepo, source: Path, when: str, tags: list[str]) -> None:
    """A snapshot with a forged time (restic --time), through the same environment."""
    env = {**os.environ, **repo._env}
    argv = [repo.binary, "-r", repo.repository, "backup", ".", "--time", when, "-q"]
    for t in tags:
        argv += ["--tag", t]
    subprocess.run(argv, cwd=source, env=env, check=True, capture_output=True)


def test_backup_restore_roundtrip_and_listing(tmp_path: Path, local_repo: ResticRepo) -> None:
    src = make_data(tmp_path / "src")
    assert local_repo.init_if_missing() is False  # already there
    summary = local_repo.backup(src, [*TAGS, "commit=abc"])
    assert summary.files == 2 and summary.bytes == 300_006 and summary.duration > 0
    snaps = local_repo.snapshots(TAGS)
    assert [s.short_id for s in snaps] == [summary.snapshot_id]
    assert snaps[0].id.startswith(summary.snapshot_id) and "commit=abc" in snaps[0].tags
    nodes = {n.path: n for n in local_repo.ls(snaps[0].id)}
    assert nodes["sub/b.bin"].size == 300_000 and nodes["empty"].type == "dir"
    local_repo.restore(snaps[0].id, tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)
    assert "no errors were found" in local_repo.check()


def test_wrong_password_fails_without_leaking_it(
    tmp_path: Path, local_repo: ResticRepo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = ResticRepo(local_repo.repository, {"RESTIC_PASSWORD": "not-the-password-123"})
    with pytest.raises(ResticError) as err:
        bad.snapshots()
    assert isinstance(err.value, SwapyardError)
    assert "wrong password" in str(err.value)
    assert "not-the-password-123" not in str(err.value) + caplog.text + repr(bad)
    assert bad.exists() is False


def test_s3_repository_on_moto(tmp_path: Path, moto_s3: S3, password: str) -> None:
    src = make_data(tmp_path / "src")
    repo = ResticRepo(moto_s3.url("/roundtrip"), {"RESTIC_PASSWORD": password, **moto_s3.env})
    assert repo.init_if_missing() is True
    assert repo.init_if_missing() is False
    summary = repo.backup(src, TAGS)
    (sid,) = [s.id for s in repo.snapshots(TAGS)]
    assert sid.startswith(summary.snapshot_id)
    repo.restore(sid, tmp_path / "out")
    assert tree(tmp_path / "out") == tree(src)


def test_retention_keeps_what_it_should(tmp_path: Path, local_repo: ResticRepo) -> None:
    src = make_data(tmp_path / "src")
    for day in range(1, 11):  # 2026-01-01 is a Thursday: Jan 5-11 is the next ISO week
        backup_at(local_repo, src, f"2026-01-{day:02d} 03:00:00", TAGS)
    backup_at(local_repo, src, "2026-01-10 01:00:00", TAGS)  # an earlier one the same day
    backup_at(local_repo, src, "2026-01-01 03:00:00", ["project=p", "instance=other"])
    removed = local_repo.forget(Retention(daily=3, weekly=2, monthly=0, yearly=0), TAGS)
    kept = sorted(s.time.strftime("%d %H") for s in local_repo.snapshots(TAGS))
    assert kept == ["04 03", "08 03", "09 03", "10 03"]
    assert len(removed) == 7
    assert len(local_repo.snapshots(["instance=other"])) == 1  # another instance untouched
    with pytest.raises(ResticError, match="keeping nothing"):
        local_repo.forget(Retention(0, 0, 0, 0), TAGS)


def test_secrets_come_from_the_lookup_never_from_config() -> None:
    store = {"restic": "s3cret", "aws": "k3y"}
    backup = Backup(
        enabled=True,
        schedule="0 3 * * *",
        repository="/srv/backups",
        password=SecretRef("restic"),
        environment=(("AWS_SECRET_ACCESS_KEY", SecretRef("aws")), ("AWS_DEFAULT_REGION", "eu")),
    )
    env = resolve_environment(backup, store.__getitem__, "p/blog")
    assert env == {
        "RESTIC_PASSWORD": "s3cret",
        "AWS_SECRET_ACCESS_KEY": "k3y",
        "AWS_DEFAULT_REGION": "eu",
    }
    repo = repository_for("p", "blog", backup, store.__getitem__)
    assert repo.repository == "/srv/backups/p/blog" and "s3cret" not in repr(repo)
    plain = Backup(
        True, "0 3 * * *", "/b", SecretRef("restic"), environment=(("B2_ACCOUNT_KEY", "x"),)
    )
    with pytest.raises(ResticError, match="reference it as secret:NAME"):
        resolve_environment(plain, store.__getitem__, "p/blog")

    def lookup(name: str) -> str:
        raise SecretNotFound(name)

    with pytest.raises(SecretNotFound):
        resolve_environment(backup, lookup, "p/blog")


def test_staleness_alert_and_check(tmp_path: Path, local_repo: ResticRepo) -> None:
    history = BackupJournal(f"sqlite:///{tmp_path / 'h.db'}")
    now = dt.datetime.now(dt.UTC)
    kw = {"schedule": "0 3 * * *", "timezone": "Europe/Berlin", "jitter": 900}
    fresh = check_staleness(history, local_repo, "p", "blog", since=now, **kw)
    assert not fresh.stale and fresh.newest is None  # just scheduled: not stale yet
    late = check_staleness(history, local_repo, "p", "blog", since=now - dt.timedelta(days=3), **kw)
    assert late.stale and [a.kind for a in history.alerts("p", "blog")] == ["stale"]
    src = make_data(tmp_path / "src")
    old = (now - dt.timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    backup_at(local_repo, src, old, TAGS)
    assert check_staleness(history, local_repo, "p", "blog", **kw).stale
    assert "newest snapshot is" in history.alerts("p", "blog")[0].message
    local_repo.backup(src, TAGS)
    assert not check_staleness(history, local_repo, "p", "blog", **kw).stale
    assert history.alerts() == []
    assert check_repository(history, local_repo, "p", "blog") is True
    assert history.runs("p", "blog", "check")[0].state == "succeeded"
