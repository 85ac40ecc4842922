"""restic on a remote instance: a `VolumeRunner` that runs each command in a job container.

A driver whose volumes the control host cannot read (an LXD daemon on
another host, a cloud disk) attaches the volume, or a copy of its snapshot,
to an instance and hands the backup engine an `EngineRunner`: every restic
command becomes a one-off container on that instance's Docker engine
(`RemoteEngine.run_container`), reached over mutual TLS as everything else
there. The container

- runs an image holding restic (`restic_image()`: Debian's restic binary
  and busybox, built from the control host's packages, copied into the
  instance by the engine API when the instance lacks it; or an upstream
  image the instance pulls, whatever the driver's setting names);
- binds the volume's mount point on the instance at `/volume`, read-only
  unless the runner restores into it;
- gets the repository URL, password and keys as its environment, for that
  one run: they are never on a command line, never logged, and the
  container (with what `docker inspect` would show) is removed at once;
- keeps restic's cache in a Docker volume of the instance's engine
  (`CACHE_VOLUME`), never on the data volume, which would back it up.

`tree()` lists the files with busybox `find` and `stat` in the same image,
so a restore is compared without the control host ever reading the files.
The job's network is the engine's default bridge: the repository must be
reachable from the instance, not only from the control host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from deploy.providers.remote.engine import JobMount, RemoteEngine
from deploy.providers.rootfs import BUSYBOX, PATH_ENV, import_image, rootfs_tar
from deploy.providers.runner import (
    DIRECTORY,
    FILE,
    OTHER,
    SYMLINK,
    CommandResult,
    VolumeRunner,
)
from deploy.providers.types import ProviderError

RESTIC = "/usr/bin/restic"
RESTIC_REPO = "swapyard-local/restic"
ROOT = "/volume"  # where the job container sees the volume's files
CACHE_DIR = "/cache"
CACHE_VOLUME = "swapyard-restic-cache"
MAX_OUTPUT = 256 << 20  # restic's JSON output (`ls` of a large volume) is read whole
DEFAULT_TIMEOUT = 6 * 3600.0
RESTIC_LABEL = "restic"  # the job label of restic's containers (`org.swapyard.job`)
_KINDS = {
    "regular file": FILE,
    "regular empty file": FILE,
    "directory": DIRECTORY,
    "symbolic link": SYMLINK,
}
_OTHER_KINDS = {"fifo", "socket", "character special file", "block special file"}
_ENTRY = re.compile(r"^([a-z ]+)\|(\d+)\|\./(.*)$")


def restic_image() -> str:
    """An image with Debian's restic and busybox, built here (`swapyard-local/restic:<hash>`)."""
    changes = (PATH_ENV, "ENV HOME=/root", "WORKDIR /", 'CMD ["restic", "version"]')
    return import_image(RESTIC_REPO, rootfs_tar([RESTIC, BUSYBOX]), changes)


def parse_tree(text: str) -> dict[str, tuple[str, int]]:
    """`find . -exec stat -c '%F|%s|%n'` output -> relative path -> (kind, size).

    A line that does not start a new entry continues the name before it
    (a file name holding a newline).
    """
    found: dict[str, tuple[str, int]] = {}
    last: str | None = None
    for line in text.split("\n"):
        m = _ENTRY.match(line)
        if m is None or (m.group(1) not in _KINDS and m.group(1) not in _OTHER_KINDS):
            if last is not None and line:
                kind_size = found.pop(last)
                last = f"{last}\n{line}"
                found[last] = kind_size
            continue
        kind = _KINDS.get(m.group(1), OTHER)
        last = m.group(3)
        found[last] = (kind, int(m.group(2)) if kind == FILE else 0)
    return found


class EngineRunner(VolumeRunner):
    """Runs restic (and the file listing) in job containers on `engine`, `source` bound at ROOT.

    `source` is a directory on the instance (where the driver mounted the
    volume); `image` must exist on the control host's engine (`local`, then
    copied) or be pullable by the instance.
    """

    def __init__(
        self,
        engine: RemoteEngine,
        source: str,
        image: str,
        *,
        writable: bool = False,
        local: Any = None,
    ):
        self.engine = engine
        self.source = source
        self.image = image
        self.writable = writable
        self.local = local
        self.root = ROOT
        self.where = f"instance {engine.instance}"
        self.remote = True
        self._image_ready = False

    def _ensure_image(self) -> None:
        """The image on the instance's engine: copied from here when held here, else pulled."""
        if not self._image_ready:
            self.engine.ensure_image(self.local, self.image)
            # a stopped job is a dead run's: its environment held the repository's secrets
            self.engine.remove_jobs(RESTIC_LABEL, exited_only=True)
            self._image_ready = True

    def _job(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        timeout: float | None,
        label: str,
    ) -> CommandResult:
        self._ensure_image()
        mounts = [
            JobMount(self.source, ROOT, read_only=not self.writable),
            JobMount(CACHE_VOLUME, CACHE_DIR, kind="volume"),
        ]
        result = self.engine.run_container(
            self.image,
            list(argv),
            entrypoint=[],
            environment=env,
            mounts=mounts,
            timeout=timeout or DEFAULT_TIMEOUT,
            user="0:0",
            label=label,
            working_dir=cwd or ROOT,
            stdout_bytes=MAX_OUTPUT,
        )
        return CommandResult(result.exit_code, result.stdout, result.logs)

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: str | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """restic `argv[1:]` in a job container; `env` is that container's whole environment
        (the control host's cache directory replaced by the instance's cache volume)."""
        if cwd is not None and not (cwd == ROOT or cwd.startswith(ROOT + "/")):
            raise ProviderError(f"{self.where}: restic runs in {ROOT}, not in {cwd}")
        job_env = {k: v for k, v in env.items() if k != "RESTIC_CACHE_DIR"}
        job_env["RESTIC_CACHE_DIR"] = CACHE_DIR
        return self._job(["restic", *argv[1:]], job_env, cwd, timeout, RESTIC_LABEL)

    def tree(self) -> dict[str, tuple[str, int]]:
        """busybox find + stat over ROOT in a job container."""
        argv = ["find", ".", "-mindepth", "1", "-exec", "stat", "-c", "%F|%s|%n", "{}", "+"]
        result = self._job(argv, {}, ROOT, 3600, "listing")
        if result.returncode != 0:
            raise ProviderError(
                f"{self.where}: listing the restored files failed (exit code "
                f"{result.returncode}): {result.stderr.strip()[-500:] or 'no output'}"
            )
        return parse_tree(result.stdout)
