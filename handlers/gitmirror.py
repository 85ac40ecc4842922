"""Cached bare mirrors of config repositories, driven through GitPython.

One bare repository per forge repository under the cache directory. `fetch`
does nothing when the commit is already there and otherwise fetches the
branches and tags (only new objects travel), then the exact commit if it is
still missing. A file lock per mirror, shared for reading and exclusive for
fetching, works across threads and processes: a reader never sees a commit
whose tree a concurrent fetch has not written yet.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import git

from schemas.limits import DEFAULT_LIMITS, Limits

from .errors import GitError
from .treeexport import export_tree

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}


def _safe_name(repository: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", repository)[:80]
    return f"{readable}-{hashlib.sha256(repository.encode()).hexdigest()[:8]}.git"


class Mirror:
    def __init__(self, path: Path, repository: str):
        self.path = path
        self.repository = repository

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        # flock locks belong to an open file description: each call opens its own, so
        # threads of one process exclude each other exactly like separate processes.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _git(self) -> git.Git:
        g = git.Git(str(self.path))
        g.update_environment(**_GIT_ENV)
        return g

    def _run(self, what: str, *args: str, **kwargs: object) -> str:
        """A read-only git command under the shared lock; failures become GitError."""
        with self._locked(exclusive=False):
            try:
                return str(self._git().execute(["git", *args], **kwargs))  # type: ignore[call-overload]
            except git.GitCommandError as exc:
                raise GitError(
                    f"{self.repository}: cannot {what}: {str(exc.stderr).strip()}"
                ) from None

    def _has_commit(self, sha: str) -> bool:
        if not (self.path / "HEAD").exists():
            return False
        try:
            self._git().cat_file("-e", f"{sha}^{{commit}}")
        except git.GitCommandError:
            return False
        return True

    def has_commit(self, sha: str) -> bool:
        with self._locked(exclusive=False):
            return self._has_commit(sha)

    def fetch(self, url: str, sha: str) -> bool:
        """Make `sha` present; returns whether anything was fetched."""
        if self.has_commit(sha):
            return False
        with self._locked(exclusive=True):
            if self._has_commit(sha):
                return False
            if not (self.path / "HEAD").exists():
                git.Repo.init(str(self.path), bare=True)
            g = self._git()
            try:
                g.fetch("--no-tags", url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
            except git.GitCommandError as exc:
                raise GitError(
                    f"{self.repository}: cannot fetch from {url}: {str(exc.stderr).strip()}; "
                    "check the clone URL (or the repositories setting) and credentials"
                ) from None
            if not self._has_commit(sha):
                with suppress(git.GitCommandError):
                    g.fetch(url, sha)
            if not self._has_commit(sha):
                raise GitError(
                    f"{self.repository}: commit {sha} not found at {url} "
                    "(deleted by a later force-push?)"
                )
        return True

    def remote_heads(self, url: str) -> dict[str, str]:
        """Branch name -> head commit at `url` (`git ls-remote --heads`)."""
        g = git.Git()
        g.update_environment(**_GIT_ENV)
        try:
            out = str(g.ls_remote("--heads", url))
        except git.GitCommandError as exc:
            raise GitError(
                f"{self.repository}: cannot list branches of {url}: {str(exc.stderr).strip()}"
            ) from None
        heads = {}
        for line in out.splitlines():
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
        within `limits` (see `treeexport`)."""
        dest.mkdir(parents=True, exist_ok=True)
        with self._locked(exclusive=False):
            try:
                export_tree(self._git(), sha, dest, limits)
            except git.GitCommandError as exc:
                raise GitError(
                    f"{self.repository}: cannot export {sha}: {str(exc.stderr).strip()}"
                ) from None
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
