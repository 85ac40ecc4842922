"""Writing what swapyard reads of one commit to a directory, within `Limits`.

The worker validates a commit from a directory, as `swapyard validate` does
a checkout. Writing the whole tree (as `git archive` did, through memory)
would let a push cost whatever its largest blob costs, before validation
could say no. So git is asked first: `git ls-tree -r -l` lists paths, modes
and sizes without reading a blob, as a stream that is never held whole. Only
what validation reads is selected, `swapyard.yaml`,
`instances/<name>/apps.config` and `instances/<name>/files/...`, and never
more entries than one past each count limit (enough for the loader to
refuse): instances, files per instance, files in all. Blobs are streamed to
disk; one larger than its limit (`max_file_bytes`, or what is left of
`max_shipped_bytes` for the instance's files, or of `max_total_bytes` for
the repository) is written as a sparse file of its size instead, its content
never leaving git: the loader stats it and refuses it with the same message
as on a checkout.

Links are written as links, after every file, so no write goes through one;
the loader refuses them. Submodules and paths git should never hold (`..`,
`.git`, absolute) are left out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import git

from schemas.limits import Limits

SELECTED_ROOTS = ("swapyard.yaml", "instances")
LINK_MODE = "120000"
BLOB_MODES = ("100644", "100755", LINK_MODE)
CHUNK = 1 << 16
MAX_LINK_TARGET = 4096


@dataclass(frozen=True)
class Entry:
    """One blob of the tree: mode, object id, size in bytes, path."""

    mode: str
    sha: str
    size: int
    path: str


def _entries(g: git.Git, sha: str) -> Iterator[Entry]:
    """The blobs under the selected roots, streamed from `git ls-tree -r -l -z`."""
    command = ["git", "ls-tree", "-r", "-l", "-z", "--full-tree", sha, "--", *SELECTED_ROOTS]
    handle = g.execute(command, as_process=True)  # kept: dropping it ends the process
    popen = cast("subprocess.Popen[bytes]", handle.proc)  # type: ignore[union-attr]
    assert popen.stdout is not None and popen.stderr is not None
    try:
        pending = b""
        while chunk := popen.stdout.read(CHUNK):
            pending += chunk
            *records, pending = pending.split(b"\0")
            for record in records:
                meta, _, path = record.partition(b"\t")
                mode, kind, obj, size = meta.split()
                if kind == b"blob" and mode.decode() in BLOB_MODES:
                    yield Entry(
                        mode.decode(), obj.decode(), int(size), path.decode("utf-8", "replace")
                    )
        if popen.wait() != 0:
            raise git.GitCommandError(command, popen.returncode, popen.stderr.read())
    finally:  # also when the caller stops early: the rest of the listing is not wanted
        popen.kill()
        popen.wait()


def _safe(path: str) -> bool:
    parts = path.split("/")
    return not path.startswith("/") and all(p not in ("", ".", "..", ".git") for p in parts)


@dataclass
class _Selection:
    """Counts per instance while the listing streams by; decides what is written."""

    limits: Limits
    instances: set[str] = field(default_factory=set)
    shipped_count: dict[str, int] = field(default_factory=dict)
    shipped_bytes: dict[str, int] = field(default_factory=dict)
    written: int = 0  # under instances/, against max_files
    total: int = 0  # their bytes, against max_total_bytes

    def budget(self, entry: Entry) -> int | None:
        """The most bytes of `entry` to write (over it: a placeholder); None: leave it out."""
        if not _safe(entry.path):
            return None
        if entry.path == "swapyard.yaml":
            return self.limits.max_file_bytes
        budget = self._budget(entry)
        parts = entry.path.split("/")
        if budget is None or len(parts) <= 2:
            return budget
        self.written += 1  # an apps.config or a shipped file, as the loader counts them
        self.total += entry.size
        return min(budget, max(0, self.limits.max_total_bytes - (self.total - entry.size)))

    def _budget(self, entry: Entry) -> int | None:
        parts = entry.path.split("/")
        if len(parts) < 2:
            return None
        name = parts[1]
        if name not in self.instances:
            if len(self.instances) > self.limits.max_instances:
                return None
            self.instances.add(name)
        if len(parts) == 2:
            return 0  # a stray file or link: the loader only needs to see it is there
        if parts[2:] == ["apps.config"]:
            return self.limits.max_file_bytes
        if parts[2] != "files":
            return None
        count = self.shipped_count[name] = self.shipped_count.get(name, 0) + 1
        if count > self.limits.max_shipped_files + 1:
            return None
        used = self.shipped_bytes[name] = self.shipped_bytes.get(name, 0) + entry.size
        return max(0, self.limits.max_shipped_bytes - (used - entry.size))

    def done(self) -> bool:
        """Past every count limit: nothing more would be written."""
        return (
            len(self.instances) > self.limits.max_instances + 1
            or self.written > self.limits.max_files + 1
        )


def _object(g: git.Git, sha: str) -> tuple[int, Any]:
    """The size and content stream of object `sha`; one git cannot read (a corrupt or
    missing object: GitPython's ValueError, or its cat-file process gone) is a
    GitCommandError, so the mirror can repair itself."""
    try:
        _, _, size, stream = g.stream_object_data(sha)
    except (ValueError, OSError) as exc:
        raise git.GitCommandError(["git", "cat-file", "--batch", sha], 128, str(exc)) from None
    return size, stream


def _write_blob(g: git.Git, entry: Entry, target: Path) -> None:
    size, stream = _object(g, entry.sha)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        left = size
        try:
            while left > 0 and (chunk := stream.read(min(CHUNK, left))):
                out.write(chunk)
                left -= len(chunk)
            stream.read()  # the stream must be drained before the next object is asked for
        except (ValueError, OSError) as exc:
            left = left or 1
            why = str(exc)
        else:
            why = f"{left} of its {size} bytes missing"
    if left:  # git died inside the object: a damaged pack, not a short file
        raise git.GitCommandError(["git", "cat-file", "--batch", entry.sha], 128, why)


def _write_placeholder(target: Path, size: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.ftruncate(fd, size)  # sparse: takes no disk, but its size is the blob's
    finally:
        os.close(fd)


def export_tree(g: git.Git, sha: str, dest: Path, limits: Limits) -> None:
    """Write what validation reads of commit `sha` to `dest` (a fresh directory)."""
    selection = _Selection(limits)
    links: list[tuple[Entry, Path]] = []
    for entry in _entries(g, sha):
        if selection.done():
            break
        budget = selection.budget(entry)
        if budget is None:
            continue
        target = dest / entry.path
        if entry.mode == LINK_MODE:
            links.append((entry, target))
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.size > budget:
                _write_placeholder(target, entry.size)
            else:
                _write_blob(g, entry, target)
        except FileExistsError:  # a path git lists twice, or under a file: not a real tree
            continue
    for entry, target in links:
        link = "(a link target too long to be written)"
        if entry.size <= MAX_LINK_TARGET:
            link = _object(g, entry.sha)[1].read().decode("utf-8", "replace")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)  # real directories only, so far
            os.symlink(link, target)
        except FileExistsError:
            continue
