"""Reading a config repository's files from disk, within `Limits`, never through a link.

A repository (a checkout, or the tree the worker exported from git) is
untrusted: a symbolic link `files/x -> /etc/shadow`, `instances/a -> /` or an
`apps.config` pointing at a file of the machine would make swapyard read, and
echo in its messages or ship into an instance, what is outside the repository.
So nothing here follows a link: a link, or anything but a regular file or a
directory, is a problem naming it. Sizes come from `lstat` before any content
is read, and reads stop at the limit even if the file grew meanwhile, so the
memory a repository can take is bounded by the limits, not by the repository.
Directory listings stop one entry past their limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from schemas.errors import Problem
from schemas.limits import Limits

LINK = "is a symbolic link; expected a regular file (links could point outside the repo)"
DIR_LINK = "is a symbolic link; expected a directory (links could point outside the repo)"


def present(path: Path) -> bool:
    """Whether anything (a link included, even a dangling one) is at `path`."""
    return os.path.lexists(path)


def _kind(mode: int) -> str | None:
    """None for a regular file; else why it is refused."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return LINK
    if stat.S_ISDIR(mode):
        return "is a directory; expected a regular file"
    return "is not a regular file (a device, pipe or socket); expected a regular file"


def _read_bounded(path: Path, size: int) -> bytes:
    """At most `size` bytes of the regular file at `path`, without following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size)


def read_config_file(root: Path, rel: str, limits: Limits) -> tuple[str | None, list[Problem]]:
    """The text of the YAML file `rel` (`apps.config`, `swapyard.yaml`), or its problem."""
    path = root / rel
    try:
        info = path.lstat()
    except OSError as exc:
        return None, [Problem(rel, None, "", f"cannot be read ({exc.strerror})")]
    refused = _kind(info.st_mode)
    if refused:
        return None, [Problem(rel, None, "", refused)]
    if info.st_size > limits.max_file_bytes:
        found = f"is {info.st_size} bytes"
        return None, [Problem(rel, None, "", limits.exceeded("max_file_bytes", found))]
    try:
        data = _read_bounded(path, limits.max_file_bytes + 1)
    except OSError as exc:
        return None, [Problem(rel, None, "", f"cannot be read ({exc.strerror})")]
    if len(data) > limits.max_file_bytes:  # it grew after the stat
        found = f"is more than {limits.max_file_bytes} bytes"
        return None, [Problem(rel, None, "", limits.exceeded("max_file_bytes", found))]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        return None, [Problem(rel, None, "", "is not UTF-8 text")]


def instance_entries(root: Path, limits: Limits) -> tuple[list[str], list[Problem]]:
    """The names under `instances/` (sorted; links and stray files included, for the
    caller to refuse), or a problem when there are more than `max_instances`."""
    base = root / "instances"
    if base.is_symlink():
        return [], [Problem("instances", None, "", DIR_LINK)]
    names: list[str] = []
    with os.scandir(base) as entries:
        for entry in entries:
            names.append(entry.name)
            if len(names) > limits.max_instances:
                found = f"holds more than {limits.max_instances} entries"
                return [], [Problem("instances", None, "", limits.exceeded("max_instances", found))]
    return sorted(names), []


def count_files(root: Path, names: list[str], limits: Limits) -> list[Problem]:
    """A problem when the instances' `apps.config` and shipped files together are more
    than `max_files` (directories counted too) or `max_total_bytes`, from `lstat` alone;
    links are counted, not followed."""
    count = total = 0
    largest = (0, "")
    pending = []
    for name in names:
        directory = root / "instances" / name
        if directory.is_dir() and not directory.is_symlink():
            config = directory / "apps.config"
            if present(config):
                count += 1
                size = config.lstat().st_size
                total, largest = total + size, max(largest, (size, f"instances/{name}/apps.config"))
            files = directory / "files"
            if files.is_dir() and not files.is_symlink():
                pending.append(files)
    while pending and count <= limits.max_files:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                count += 1
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    pending.append(Path(entry.path))
                elif stat.S_ISREG(info.st_mode):
                    total += info.st_size
                    largest = max(largest, (info.st_size, entry.path))
    if count > limits.max_files:
        found = f"hold more than {limits.max_files} files together"
        return [Problem("instances", None, "", limits.exceeded("max_files", found))]
    if total > limits.max_total_bytes:
        where = Path(largest[1])
        shown = where.relative_to(root).as_posix() if where.is_absolute() else largest[1]
        found = f"hold {total} bytes together (the largest: {shown}, {largest[0]} bytes)"
        return [Problem("instances", None, "", limits.exceeded("max_total_bytes", found))]
    return []


def read_shipped_files(
    root: Path, name: str, limits: Limits
) -> tuple[dict[str, bytes], list[Problem]]:
    """Every regular file under `instances/<name>/files/` by its relative path, or the
    problems: links and special files, more than `max_shipped_files` entries, more than
    `max_shipped_bytes` together (counted from `lstat`, before anything is read)."""
    base = root / "instances" / name / "files"
    where = f"instances/{name}/files"
    if base.is_symlink():
        return {}, [Problem(where, None, "", DIR_LINK)]
    if not base.is_dir():
        return {}, []
    problems: list[Problem] = []
    sizes: dict[str, int] = {}
    count = total = 0
    pending = [base]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                count += 1
                if count > limits.max_shipped_files:
                    found = f"holds more than {limits.max_shipped_files} entries"
                    return {}, [
                        Problem(where, None, "", limits.exceeded("max_shipped_files", found))
                    ]
                rel = PurePosixPath(Path(entry.path).relative_to(base).as_posix())
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    pending.append(Path(entry.path))
                    continue
                refused = _kind(info.st_mode)
                if refused:
                    problems.append(Problem(f"{where}/{rel}", None, "", refused))
                    continue
                sizes[str(rel)] = info.st_size
                total += info.st_size
    if total > limits.max_shipped_bytes:
        found = f"holds {total} bytes"
        problems.append(Problem(where, None, "", limits.exceeded("max_shipped_bytes", found)))
    if problems:
        return {}, problems
    files = {}
    for rel_name in sorted(sizes):
        data = _read_bounded(base / rel_name, sizes[rel_name] + 1)
        if len(data) != sizes[rel_name]:  # changed while being read: refuse, don't guess
            return {}, [Problem(f"{where}/{rel_name}", None, "", "changed while being read")]
        files[rel_name] = data
    return files, []
