"""The worker's export of a commit, from a real git repository: bounded, and faithful
for what validation reads."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from handlers.gitops.mirror import Mirror
from schemas import Limits, check_repo, load_repo
from tests.conftest import EXAMPLES
from tests.service.conftest import git


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A work tree seeded with the example repository; commit with `commit(work)`."""
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES / "config-repo", work)
    git("init", "-q", "-b", "main", cwd=work)
    return work


def commit(work: Path) -> tuple[Mirror, str]:
    git("add", "-A", cwd=work)
    git("commit", "-qm", "x", cwd=work)
    return Mirror(work / ".git", "owner/config"), git("rev-parse", "HEAD", cwd=work)


def test_what_validation_reads_is_exported_as_committed(work: Path, tmp_path: Path) -> None:
    (work / "docs").mkdir()
    (work / "docs" / "notes.md").write_text("not read by swapyard\n")
    mirror, sha = commit(work)
    tree = mirror.export(sha, tmp_path / "tree")
    assert load_repo(tree).instances == load_repo(work).instances
    assert not (tree / "docs").exists() and not (tree / "README.md").exists()


def test_big_blobs_never_leave_git(work: Path, tmp_path: Path) -> None:
    blob = 64 << 20  # bigger than either limit (zeros: git stores them small and fast)
    with open(work / "docs.bin", "wb") as handle:  # not selected at all
        handle.truncate(blob)
    files = work / "instances" / "www" / "files"
    files.mkdir(exist_ok=True)
    with open(files / "big.bin", "wb") as handle:
        handle.truncate(blob)
    (work / "instances" / "blog" / "apps.config").write_bytes(b"# x\n" * (blob // 4))
    mirror, sha = commit(work)
    started = time.monotonic()
    tree = mirror.export(sha, tmp_path / "tree")
    assert time.monotonic() - started < 10
    assert not (tree / "docs.bin").exists()
    for path in (tree / "instances/www/files/big.bin", tree / "instances/blog/apps.config"):
        info = path.stat()
        assert info.st_size == blob and info.st_blocks == 0, path  # sized, nothing written
    problems = [str(p) for p in check_repo(tree)[1]]
    assert any(p.startswith("instances/blog/apps.config: is 67108864 bytes") for p in problems)
    assert any(p.startswith("instances/www/files: holds") for p in problems)


def test_links_are_exported_as_links_and_refused(work: Path, tmp_path: Path) -> None:
    files = work / "instances" / "www" / "files"
    files.mkdir(exist_ok=True)
    (files / "shadow").symlink_to("/etc/shadow")
    (files / "up").symlink_to("../../..")
    (work / "instances" / "evil").symlink_to("/etc")
    mirror, sha = commit(work)
    tree = mirror.export(sha, tmp_path / "tree")
    assert os.readlink(tree / "instances/www/files/shadow") == "/etc/shadow"
    assert os.readlink(tree / "instances/evil") == "/etc"
    problems = {p.file: p.message for p in check_repo(tree)[1]}
    assert problems["instances/evil"].startswith("is a symbolic link")
    assert problems["instances/www/files/shadow"].startswith("is a symbolic link")
    assert problems["instances/www/files/up"].startswith("is a symbolic link")


def test_counts_stop_one_past_their_limit(work: Path, tmp_path: Path) -> None:
    for i in range(30):
        (work / "instances" / f"extra{i:02}").mkdir()
        (work / "instances" / f"extra{i:02}" / "apps.config").write_text("apps: []\n")
    files = work / "instances" / "cloud" / "files"
    files.mkdir()
    for i in range(50):
        (files / f"f{i:02}").write_text("x")
    mirror, sha = commit(work)
    limits = Limits(max_instances=10, max_shipped_files=20)
    tree = mirror.export(sha, tmp_path / "tree", limits)
    assert len(list((tree / "instances").iterdir())) == 11
    assert [str(p) for p in check_repo(tree, limits=limits)[1]] == [
        "instances: holds more than 10 entries; expected at most 10 directories "
        "(limit max_instances: raise it with --max-instances or the service setting "
        "max_instances)"
    ]
    tree = mirror.export(sha, tmp_path / "tree2", Limits(max_shipped_files=20))
    assert len(list((tree / "instances/cloud/files").iterdir())) == 21


def test_files_in_all_stop_one_past_their_limit(work: Path, tmp_path: Path) -> None:
    for name in ("blog", "cloud"):
        files = work / "instances" / name / "files"
        files.mkdir()
        for i in range(30):
            (files / f"f{i:02}").write_text("x")
    mirror, sha = commit(work)
    limits = Limits(max_files=40)
    tree = mirror.export(sha, tmp_path / "tree", limits)
    written = [p for p in (tree / "instances").rglob("*") if p.is_file()]
    assert len(written) == 42  # 41 counted, then the listing stops
    [problem] = check_repo(tree, limits=limits)[1]
    assert problem.file == "instances" and "max_files" in problem.message


def test_bytes_in_all_past_their_limit_stay_in_git(work: Path, tmp_path: Path) -> None:
    for name in ("blog", "cloud", "staging-blog"):
        (work / "instances" / name / "files").mkdir()
        with open(work / "instances" / name / "files" / "disk.img", "wb") as handle:
            handle.truncate(10 << 20)
    (work / "instances" / "stray").write_bytes(b"x" * 4096)
    mirror, sha = commit(work)
    limits = Limits(max_total_bytes=25 << 20)
    tree = mirror.export(sha, tmp_path / "tree", limits)
    images = sorted(tree.glob("instances/*/files/disk.img"))
    assert [p.stat().st_size for p in images] == [10 << 20] * 3
    assert [p.stat().st_blocks == 0 for p in images] == [False, False, True]  # the third: sparse
    assert (tree / "instances/stray").stat().st_blocks == 0  # never needed: never written
    [problem] = check_repo(tree, limits=limits)[1]
    assert problem.file == "instances" and "max_total_bytes" in problem.message
