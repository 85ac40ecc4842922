"""Cached bare mirrors of config repositories, driven through GitPython, whole across crashes.

One bare repository per forge repository under the cache directory. `fetch`
does nothing when the commit is already there, whole, and otherwise fetches the
branches and tags (only new objects travel), then the exact commit if it is
still missing. A file lock per mirror, shared for reading and exclusive for
fetching, works across threads and processes: a reader never sees a commit
whose tree a concurrent fetch has not written yet.

A process can be killed at any instant of a fetch (SIGKILL, the OOM killer, a
stopped container), and what the service acknowledged must still deploy. So:

- Received objects stay in the pack they arrive in (`fetch.unpackLimit=1`).
  index-pack writes it under a temporary name and gives it its final name, and
  its index last, only when it is whole; a pack without an index is invisible
  to git. A killed fetch therefore leaves files nobody reads, never a commit
  without its trees, which is what git's default of unpacking small fetches
  into loose objects, one by one, left behind.
- An object existing is not its closure being present, so `is_complete`
  asks more than `cat-file -e`: git moves a ref only after checking that
  everything reachable from its new value is present, so history under a ref
  is trusted and only what lies outside the refs is walked
  (`rev-list --objects <sha> --not --all`, git's own connectivity check); the
  tip's own tree is walked in full as well, which catches an object lost under
  a ref (a deleted file, a truncated pack). Both stop early: about 9 ms on a
  repository of 300 instances (bench/mirror.py).
- A new mirror is initialised and fetched into a sibling directory, renamed
  into place once it holds the commit whole: a crash mid-clone leaves no mirror.
- What a killed fetch leaves behind (lock files that would make every later
  fetch fail, temporary packs, fetch's `.keep` markers, packs without an index)
  is swept under the exclusive lock. The lock's descriptor is handed to the git
  children, so the lock lasts as long as the last of them: a git process
  orphaned by a killed service still holds it, and nothing sweeps under it.
- Repair escalates: a plain fetch; then `--refetch`, which transfers everything
  as a fresh clone would and ignores what the mirror claims to have; then a
  fresh clone beside the mirror, swapped in only when it is whole, the broken
  mirror moved aside to `<name>.broken` for inspection. A remote that cannot be
  reached never costs the mirror: `ls-remote` tells that case apart and the
  error goes to the caller, which retries. An object that exists but cannot be
  read (corrupt data, which no existence check sees) shows only when it is
  read: `read_or_repair` then clones afresh and reads again.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import git

from handlers.errors import GitError
from handlers.gitops.export import export_tree
from schemas.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)
R = TypeVar("R")

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
# Keep every received pack whole (never unpack loose objects one by one), and run an
# automatic gc inside the fetch, under the mirror's lock, rather than detached after it.
_FETCH_CONFIG = ("-c", "fetch.unpackLimit=1", "-c", "gc.autoDetach=false")
_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
FETCH_TIMEOUT = 900  # seconds: a fetch that takes longer is killed (and retried later)


class Presence(StrEnum):
    """What a mirror holds of a commit."""

    COMPLETE = "complete"  # the commit, its tree and its history, readable
    INCOMPLETE = "incomplete"  # the commit object, but not all it reaches
    ABSENT = "absent"


def _safe_name(repository: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", repository)[:80]
    return f"{readable}-{hashlib.sha256(repository.encode()).hexdigest()[:8]}.git"


def _stderr(exc: git.GitCommandError) -> str:
    return str(exc.stderr).strip()


class Mirror:
    def __init__(self, path: Path, repository: str):
        self.path = path
        self.repository = repository

    @property
    def staging(self) -> Path:
        """Where a fresh clone is built before it replaces the mirror."""
        return self.path.with_name(self.path.name + ".new")

    @property
    def aside(self) -> Path:
        """Where a mirror beyond repair is moved, for inspection (the newest one only)."""
        return self.path.with_name(self.path.name + ".broken")

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[int]:
        # flock locks belong to an open file description: each call opens its own, so
        # threads of one process exclude each other exactly like separate processes.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield handle.fileno()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _git(self, where: Path | None = None) -> git.Git:
        g = git.Git(str(where or self.path))
        g.update_environment(**_GIT_ENV)
        return g

    def _run(self, what: str, *args: str, **kwargs: object) -> str:
        """A read-only git command under the shared lock; failures become GitError."""
        with self._locked(exclusive=False):
            try:
                return str(self._git().execute(["git", *args], **kwargs))  # type: ignore[call-overload]
            except git.GitCommandError as exc:
                raise GitError(f"{self.repository}: cannot {what}: {_stderr(exc)}") from None

    # -- completeness ---------------------------------------------------------

    def _presence(self, sha: str, where: Path | None = None) -> Presence:
        where = where or self.path
        if not (where / "HEAD").exists():
            return Presence.ABSENT
        g = self._git(where)
        try:
            g.rev_list("--objects", "--quiet", "--no-walk", sha)  # the tip's tree, whole
            g.rev_list("--objects", "--quiet", sha, "--not", "--all")  # history outside refs
        except git.GitCommandError:
            return Presence.INCOMPLETE if self._exists(sha, where) else Presence.ABSENT
        return Presence.COMPLETE

    def _exists(self, sha: str, where: Path) -> bool:
        """Whether the commit object is there, whatever else is missing."""
        try:
            self._git(where).cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def is_complete(self, sha: str) -> bool:
        """Whether commit `sha` and its tree are readable whole, and its history with it."""
        with self._locked(exclusive=False):
            return self._presence(sha) == Presence.COMPLETE

    # -- fetching -------------------------------------------------------------

    def fetch(self, url: str, sha: str) -> bool:
        """Make `sha` present and whole, repairing the mirror if it must; returns whether
        anything was fetched."""
        if self.is_complete(sha):
            return False
        with self._locked(exclusive=True) as lock:
            if self._presence(sha) == Presence.COMPLETE:
                return False
            if not (self.path / "HEAD").exists():
                self._clone(url, sha, lock)
                return True
            self._sweep(self.path)
            try:
                self._fetch(self.path, url, sha, lock)
            except GitError as exc:
                self._check_remote(url, exc)  # unreachable: the caller retries later
                log.warning("%s (the remote answers: repairing the mirror)", exc)
            else:
                presence = self._presence(sha)
                if presence == Presence.COMPLETE:
                    return True
                if presence == Presence.ABSENT:
                    raise self._not_found(url, sha)
                log.warning("%s: commit %s fetched but not whole; refetching", self.repository, sha)
            with suppress(GitError):
                self._fetch(self.path, url, sha, lock, refetch=True)
                if self._presence(sha) == Presence.COMPLETE:
                    log.warning("%s: mirror repaired by a full refetch", self.repository)
                    return True
            self._clone(url, sha, lock)
        return True

    def read_or_repair(self, url: str, sha: str, read: Callable[[], R]) -> R:
        """`read()` of commit `sha`, just fetched whole. A GitError there means an object
        that exists but cannot be read (a corrupt pack entry, a damaged file): the mirror
        is cloned afresh from `url`, the damaged one moved aside, and `read` runs again."""
        try:
            return read()
        except GitError as exc:
            with self._locked(exclusive=True) as lock:
                log.warning("%s; cloning the mirror afresh", exc)
                self._clone(url, sha, lock)
        return read()

    def _fetch(self, where: Path, url: str, sha: str, lock: int, refetch: bool = False) -> None:
        """Branches and tags from `url`, then `sha` itself if no branch brought it."""
        g = self._git(where)
        extra = ["--refetch"] if refetch else []
        base = ["git", *_FETCH_CONFIG, "fetch", "--no-tags", "--no-write-fetch-head", *extra]
        try:
            g.execute(
                [*base, "--", url, *_REFSPECS],
                pass_fds=(lock,),  # the lock lives as long as the last git child
                kill_after_timeout=FETCH_TIMEOUT,
            )
        except git.GitCommandError as exc:
            raise GitError(
                f"{self.repository}: cannot fetch from {url}: {_stderr(exc)}; "
                "check the clone URL (or the repositories setting) and credentials"
            ) from None
        if not self._exists(sha, where):
            with suppress(git.GitCommandError):
                g.execute(
                    [*base, "--", url, sha], pass_fds=(lock,), kill_after_timeout=FETCH_TIMEOUT
                )

    def _clone(self, url: str, sha: str, lock: int) -> None:
        """A fresh mirror built beside this one and renamed into place once `sha` is whole
        in it; the mirror it replaces, if any, is moved aside."""
        shutil.rmtree(self.staging, ignore_errors=True)  # a clone killed before
        git.Repo.init(str(self.staging), bare=True).close()
        self._fetch(self.staging, url, sha, lock)
        presence = self._presence(sha, self.staging)
        if presence == Presence.INCOMPLETE:
            raise GitError(
                f"{self.repository}: commit {sha} from {url} is incomplete even in a fresh "
                "clone; the repository at the forge may be damaged"
            )
        if self.path.exists():
            shutil.rmtree(self.aside, ignore_errors=True)
            self.path.rename(self.aside)
            log.warning(
                "%s: mirror beyond repair, moved aside to %s and cloned afresh",
                self.repository,
                self.aside,
            )
        self.staging.rename(self.path)
        if presence == Presence.ABSENT:
            raise self._not_found(url, sha)

    def _not_found(self, url: str, sha: str) -> GitError:
        return GitError(
            f"{self.repository}: commit {sha} not found at {url} (deleted by a later force-push?)"
        )

    def _check_remote(self, url: str, failure: GitError) -> None:
        """Raise `failure` when `url` cannot be listed: the fault is not the mirror's."""
        try:
            self._ls_remote(url, "--heads")
        except GitError:
            raise failure from None

    def _sweep(self, where: Path) -> None:
        """Remove what a killed git process leaves; only safe under the exclusive lock."""
        swept = [p for p in where.rglob("*.lock") if p.is_file()]
        objects = where / "objects"
        swept += [p for p in objects.rglob("tmp_*") if p.is_file()]
        pack = objects / "pack"
        for keep in pack.glob("*.keep"):
            with suppress(OSError):
                if keep.read_text(errors="replace").startswith("fetch-pack"):
                    swept.append(keep)
        for part in [*pack.glob("pack-*.pack"), *pack.glob("pack-*.rev")]:
            if not part.with_suffix(".idx").exists():
                swept.append(part)
        for path in swept:
            with suppress(FileNotFoundError):
                path.unlink()
        if swept:
            log.warning(
                "%s: removed what an interrupted git process left: %s",
                self.repository,
                ", ".join(str(p.relative_to(where)) for p in swept),
            )

    # -- reading --------------------------------------------------------------

    def _ls_remote(self, url: str, *args: str) -> str:
        g = git.Git()
        g.update_environment(**_GIT_ENV)
        try:
            return str(g.ls_remote(*args, "--", url))
        except git.GitCommandError as exc:
            raise GitError(
                f"{self.repository}: cannot list branches of {url}: {_stderr(exc)}"
            ) from None

    def remote_heads(self, url: str) -> dict[str, str]:
        """Branch name -> head commit at `url` (`git ls-remote --heads`)."""
        heads = {}
        for line in self._ls_remote(url, "--heads").splitlines():
            sha, _, ref = line.partition("\t")
            if ref.startswith("refs/heads/"):
                heads[ref[len("refs/heads/") :]] = sha
        return heads

    def show(self, sha: str, path: str) -> bytes | None:
        """The content of `path` at commit `sha`, or None when it does not exist there."""
        with self._locked(exclusive=False):
            try:
                data = self._git().show(f"{sha}:{path}", stdout_as_string=False)
            except git.GitCommandError:
                return None
        return data if isinstance(data, bytes) else str(data).encode()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        with self._locked(exclusive=False):
            try:
                self._git().merge_base("--is-ancestor", ancestor, descendant)
            except git.GitCommandError:
                return False
        return True

    def changed_paths(self, before: str, after: str) -> list[str]:
        """Paths that differ between two commits (both sides of a rename)."""
        out = self._run(
            f"diff {before[:12]}..{after[:12]}",
            "diff",
            "--name-only",
            "--no-renames",
            "-z",
            before,
            after,
        )
        return [p for p in out.split("\0") if p]

    def export(self, sha: str, dest: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
        """Write what validation reads of the tree of `sha` to `dest` (a fresh directory),
        within `limits` (see `treeexport`). What an earlier attempt left there is removed."""
        shutil.rmtree(dest, ignore_errors=True)  # `read_or_repair` may export twice
        dest.mkdir(parents=True)
        with self._locked(exclusive=False):
            try:
                export_tree(self._git(), sha, dest, limits)
            except git.GitCommandError as exc:
                raise GitError(f"{self.repository}: cannot export {sha}: {_stderr(exc)}") from None
        return dest

    def blob_size(self, sha: str, path: str) -> int | None:
        """The size of `path` at commit `sha` from git's object header, None when absent."""
        with self._locked(exclusive=False):
            try:
                return int(self._git().cat_file("-s", f"{sha}:{path}"))
            except git.GitCommandError:
                return None


class MirrorCache:
    def __init__(self, root: Path):
        self.root = root

    def mirror(self, repository: str) -> Mirror:
        return Mirror(self.root / _safe_name(repository), repository)
