"""Where a program that reads or writes a volume's files runs: the `VolumeRunner` contract.

A backup, a restore and the comparison after a restore need the files of a
data volume. On the `local` provider those are a directory of the control
host, so restic runs there as a subprocess (`LocalRunner`). On a driver whose
volumes live elsewhere (an LXD daemon on another host, a cloud disk) the
files are only reachable on the instance that holds the volume, so the driver
hands out a runner that runs the same command there (in a container on the
instance's engine, `deploy.providers.remote.restic`). The backup engine sees
only this interface (`Provider.volume_runner`), so every driver runs under the
same backup code.

A runner is given the whole environment of one call; it passes it to that
call only (never on a command line, never logged) and adds nothing of the
control host's environment except, for a local subprocess, the few variables
a program needs to run at all (`PASSTHROUGH`). Failures to run at all (no
binary, no answer in time, an unreachable engine) are `ProviderError`s; a
program that ran and failed is a `CommandResult` with its exit code.
"""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.providers.types import ProviderError

# What a local subprocess gets from our own environment; nothing else leaks into it.
PASSTHROUGH = ("PATH", "HOME", "TMPDIR", "XDG_CACHE_HOME", "LANG", "SSL_CERT_FILE")

# kind of each entry of `VolumeRunner.tree`
FILE, DIRECTORY, SYMLINK, OTHER = "file", "dir", "symlink", "other"


@dataclass(frozen=True)
class CommandResult:
    """How one command ended: exit code, standard output, standard error."""

    returncode: int
    stdout: str
    stderr: str


class VolumeRunner(ABC):
    """Runs programs where the files of one volume (or of a snapshot of it) are at `root`."""

    root: str  # the volume's root directory as the programs see it
    where: str  # for messages: "this host", "instance sy-..."
    # across a network from the control host: a caller checks that a remote service
    # answers from there, in a short time, before a long command depends on it
    remote: bool = False

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run `argv` with exactly `env` (plus what running needs) in `cwd`, to its end."""

    @abstractmethod
    def tree(self) -> dict[str, tuple[str, int]]:
        """Every entry under `root`: relative path -> (kind, size in bytes; 0 unless a file)."""


class LocalRunner(VolumeRunner):
    """Subprocesses of the control host, the volume's files in directory `root` here."""

    where = "this host"

    def __init__(self, root: str | Path):
        self.root = str(root)

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """A subprocess with `env` over `PASSTHROUGH`; `ProviderError` when it cannot run."""
        base = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                check=False,
                encoding="utf-8",
                errors="replace",
                env={**base, **env},
                cwd=cwd,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise ProviderError(f"cannot run {argv[0]}: not installed or not on PATH") from None
        except subprocess.TimeoutExpired as exc:
            raise ProviderError(f"{argv[0]} timed out after {exc.timeout:g} s") from None
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def tree(self) -> dict[str, tuple[str, int]]:
        """os.walk of `root`, symlinks not followed."""
        found: dict[str, tuple[str, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in dirnames + filenames:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                full = Path(dirpath) / name
                if full.is_symlink():
                    found[rel] = (SYMLINK, 0)
                elif full.is_dir():
                    found[rel] = (DIRECTORY, 0)
                elif full.is_file():
                    found[rel] = (FILE, full.lstat().st_size)
                else:
                    found[rel] = (OTHER, 0)
        return found
