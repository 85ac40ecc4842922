"""Mirror: a fetch's result is whole or invisible, and a damaged mirror repairs itself.

Every case damages a real mirror the way a killed or failing git process does
(a commit without its tree, stale lock files, a truncated pack, a broken
packed-refs) and checks that the next `fetch` leaves the commit readable.
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
from pathlib import Path

import pytest

from handlers.errors import GitError
from handlers.gitops.mirror import Mirror, MirrorCache
from tests.gitdamage import corrupt_packed, loose
from tests.service.conftest import ConfigRepo, git

APPS = "instance:\n  provider: local\napps: []\n"


@pytest.fixture
def origin(tmp_path: Path) -> ConfigRepo:
    repo = ConfigRepo.empty(tmp_path)
    repo.commit(
        "first",
        {
            "instances/a/apps.config": APPS,
            "instances/b/apps.config": APPS,
            "instances/b/files/data.txt": base64.b64encode(
                random.Random(0).randbytes(3000)
            ).decode(),
        },
    )
    repo.push()
    return repo


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    return MirrorCache(tmp_path / "mirrors").mirror("owner/config")


def fetch_loose(mirror: Mirror, origin: ConfigRepo, refspec: str) -> None:
    """Fetch the way git does by default for small fetches: unpacked into loose objects."""
    if not mirror.path.exists():
        mirror.path.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", str(mirror.path), cwd=mirror.path.parent)
    git("-c", "fetch.unpackLimit=100000", "fetch", "-q", str(origin.bare), refspec, cwd=mirror.path)


def assert_readable(mirror: Mirror, sha: str, tmp_path: Path) -> None:
    assert mirror.is_complete(sha)
    tree = mirror.export(sha, tmp_path / f"tree-{sha[:8]}")
    assert (tree / "instances" / "a" / "apps.config").read_text().startswith(APPS)


def test_received_objects_stay_packed(mirror, origin, tmp_path):
    sha = origin.sha()
    assert mirror.fetch(str(origin.bare), sha) is True
    counts = dict(
        line.split(": ") for line in git("count-objects", "-v", cwd=mirror.path).splitlines()
    )
    objects = git("rev-list", "--objects", "--all", cwd=origin.bare).splitlines()
    assert (counts["count"], int(counts["in-pack"])) == ("0", len(objects))  # nothing loose
    assert mirror.fetch(str(origin.bare), sha) is False
    assert_readable(mirror, sha, tmp_path)


@pytest.mark.parametrize("under_ref", [True, False], ids=["under-a-ref", "outside-refs"])
def test_commit_with_its_tree_missing_is_repaired_by_the_next_fetch(
    mirror, origin, tmp_path, under_ref
):
    first = origin.sha()
    mirror.fetch(str(origin.bare), first)
    sha = origin.commit("more", {"instances/a/apps.config": APPS + "# v2\n"})
    origin.push()
    if under_ref:  # what a lost object under a ref looks like
        fetch_loose(mirror, origin, "+refs/heads/*:refs/heads/*")
    else:  # what an unpack killed before git moved the ref leaves
        fetch_loose(mirror, origin, "+refs/heads/main:refs/killed/main")
        git("update-ref", "-d", "refs/killed/main", cwd=mirror.path)
    tree = git("rev-parse", f"{sha}^{{tree}}", cwd=mirror.path)
    loose(mirror.path, tree).unlink()
    git("cat-file", "-e", sha, cwd=mirror.path)  # the commit is there...
    assert not mirror.is_complete(sha)  # ...but not whole
    with pytest.raises(GitError, match="cannot export"):
        mirror.export(sha, tmp_path / "broken")

    assert mirror.fetch(str(origin.bare), sha) is True
    assert_readable(mirror, sha, tmp_path)
    assert mirror.changed_paths(first, sha) == ["instances/a/apps.config"]


def test_what_a_killed_fetch_leaves_is_swept(mirror, origin, tmp_path):
    mirror.fetch(str(origin.bare), origin.sha())
    pack = mirror.path / "objects" / "pack"
    leftovers = [
        mirror.path / "packed-refs.lock",
        mirror.path / "refs" / "heads" / "main.lock",
        mirror.path / "config.lock",
        pack / "tmp_pack_Xy12Ab",
        pack / ("pack-" + "ab" * 20 + ".pack"),  # renamed, killed before its index
        pack / ("pack-" + "cd" * 20 + ".keep"),
    ]
    for path in leftovers:
        path.write_text("fetch-pack 4242 on host\n" if path.suffix == ".keep" else "x")
    sha = origin.commit("more", {"instances/b/apps.config": APPS + "# v2\n"})
    origin.push()
    with pytest.raises(subprocess.CalledProcessError):  # left there, they block ref updates
        git("pack-refs", "--all", cwd=mirror.path)

    assert mirror.fetch(str(origin.bare), sha) is True
    assert_readable(mirror, sha, tmp_path)
    assert not [p for p in leftovers if p.exists()]
    assert git("rev-parse", "refs/heads/main", cwd=mirror.path) == sha


def test_truncated_pack_is_repaired(mirror, origin, tmp_path):
    sha = origin.sha()
    mirror.fetch(str(origin.bare), sha)
    [pack] = (mirror.path / "objects" / "pack").glob("pack-*.pack")
    os.truncate(pack, pack.stat().st_size // 2)
    assert not mirror.is_complete(sha)

    assert mirror.fetch(str(origin.bare), sha) is True
    assert_readable(mirror, sha, tmp_path)


def test_broken_packed_refs_is_moved_aside_and_cloned_again(mirror, origin, tmp_path):
    sha = origin.sha()
    mirror.fetch(str(origin.bare), sha)
    git("pack-refs", "--all", cwd=mirror.path)
    (mirror.path / "packed-refs").write_text("# pack-refs with: peeled\nnot a ref line\n")
    assert not mirror.is_complete(sha)

    assert mirror.fetch(str(origin.bare), sha) is True
    assert_readable(mirror, sha, tmp_path)
    assert (mirror.aside / "packed-refs").read_text().endswith("not a ref line\n")
    assert not mirror.staging.exists()


def test_a_clone_killed_midway_leaves_no_mirror(mirror, origin, tmp_path):
    # killed while the first fetch was building the new mirror beside its final place
    git("init", "-q", "--bare", str(mirror.staging), cwd=tmp_path)
    (mirror.staging / "objects" / "pack" / "tmp_pack_Q1w2E3").write_bytes(b"PACK\0\0")
    assert not mirror.path.exists() and not mirror.is_complete(origin.sha())

    assert mirror.fetch(str(origin.bare), origin.sha()) is True
    assert_readable(mirror, origin.sha(), tmp_path)
    assert not mirror.staging.exists() and not mirror.aside.exists()


def test_a_half_made_mirror_is_replaced(mirror, origin, tmp_path):
    (mirror.path / "objects").mkdir(parents=True)  # an init killed before it wrote HEAD
    assert mirror.fetch(str(origin.bare), origin.sha()) is True
    assert_readable(mirror, origin.sha(), tmp_path)
    assert (mirror.aside / "objects").is_dir()


def test_an_unreachable_remote_keeps_the_mirror(mirror, origin, tmp_path):
    first = origin.sha()
    mirror.fetch(str(origin.bare), first)
    sha = origin.commit("more", {"instances/b/apps.config": APPS + "# v2\n"})
    with pytest.raises(GitError, match="cannot fetch from"):
        mirror.fetch(str(tmp_path / "gone.git"), sha)
    assert not mirror.aside.exists() and not mirror.staging.exists()
    assert_readable(mirror, first, tmp_path)


def test_a_commit_the_remote_lacks_is_reported_without_repairing(mirror, origin, tmp_path):
    mirror.fetch(str(origin.bare), origin.sha())
    unknown = "1234567890abcdef" * 2 + "12345678"
    with pytest.raises(GitError, match=f"commit {unknown} not found"):
        mirror.fetch(str(origin.bare), unknown)
    assert not mirror.aside.exists()
    assert_readable(mirror, origin.sha(), tmp_path)


def test_an_unreadable_object_is_repaired_when_read(mirror, origin, tmp_path):
    sha = origin.sha()
    mirror.fetch(str(origin.bare), sha)
    corrupt_packed(
        mirror.path, git("rev-parse", f"{sha}:instances/b/files/data.txt", cwd=origin.bare)
    )
    assert mirror.is_complete(sha)  # it exists: only reading it shows the damage
    with pytest.raises(GitError, match="cannot export"):
        mirror.export(sha, tmp_path / "damaged")

    tree = mirror.read_or_repair(str(origin.bare), sha, lambda: mirror.export(sha, tmp_path / "t"))
    assert (tree / "instances" / "b" / "files" / "data.txt").read_text() == origin.read(
        "instances/b/files/data.txt"
    )
    assert mirror.aside.is_dir() and mirror.is_complete(sha)
