"""The one seam to restic: a repository, its secrets, and the commands swapyard runs.

Commands are built and their JSON parsed by resticpy (`restic.internal.*`),
called with our own base command, never through resticpy's module globals,
so several repositories can be used from several threads at once. resticpy
runs restic through `restic.internal.command_executor.execute`; we replace
that function once with one that hands the command, a per-call environment
(the password, S3 credentials) and working directory from a context
variable to a `VolumeRunner` (`deploy.providers.runner`): a subprocess here
by default, or whatever runner the provider gave for a volume (restic in a
container on the instance that holds it), so `backup` and `restore` run
where the files are while the commands and their parsing stay here.
The environment is never logged, never put on a command line, and secret
values are scrubbed from every error message, whichever runner ran it.

Secrets come from a lookup callable (the service's secret store), never
from config values: `repository_for` resolves the `SecretRef`s of an
instance's backup config.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import restic.errors
from restic.internal import backup as r_backup
from restic.internal import command_executor
from restic.internal import forget as r_forget
from restic.internal import init as r_init
from restic.internal import restore as r_restore
from restic.internal import snapshots as r_snapshots

from deploy.providers.runner import LocalRunner, VolumeRunner
from deploy.providers.types import DeployError, ProviderError
from schemas.model import Backup, Retention, SecretRef

SecretLookup = Callable[[str], str]

# Variables whose value is a credential: they must come from the secret store.
SECRET_VARIABLES = frozenset(
    {"RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "B2_ACCOUNT_KEY"}
)


class ResticError(DeployError, RuntimeError):
    """restic failed or answered something unexpected; the message never holds a secret."""


class RepositoryUnreachable(ResticError):
    """The repository did not answer where restic runs (the probe before a long command)."""


@dataclass(frozen=True)
class _Call:
    env: Mapping[str, str]
    cwd: str | None
    timeout: float | None
    runner: VolumeRunner


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("restic_call", default=None)
_original_execute = command_executor.execute


def _execute(cmd: list[str]) -> str:
    """resticpy's executor: the command goes to the call's runner, with its environment."""
    call = _CALL.get()
    if call is None:
        return _original_execute(cmd)
    result = call.runner.run(cmd, call.env, cwd=call.cwd, timeout=call.timeout)
    if result.returncode != 0:
        raise restic.errors.ResticFailedError(
            f"Restic failed with exit code {result.returncode}: {result.stderr}"
        )
    return result.stdout


command_executor.execute = _execute


@dataclass(frozen=True)
class BackupSummary:
    """What `restic backup --json` reported."""

    snapshot_id: str
    files: int
    bytes: int
    duration: float
    files_new: int = 0
    data_added: int = 0


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as `restic snapshots --json` lists it."""

    id: str
    short_id: str
    time: dt.datetime
    tags: tuple[str, ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Node:
    """One entry of a snapshot (`restic ls --json`); `path` is relative to the volume root."""

    path: str
    type: str
    size: int


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _parse_time(text: str) -> dt.datetime:
    """restic's RFC 3339 time with nanoseconds, to an aware datetime (microseconds)."""
    m = _TIME.match(text)
    if m is None:
        raise ResticError(f"restic printed a time swapyard cannot read: {text!r}")
    frac = ((m.group(2) or "") + "000000")[:6]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")


class ResticRepo:
    """One restic repository and the environment (password, credentials) to reach it."""

    def __init__(
        self,
        repository: str,
        env: Mapping[str, str],
        *,
        binary: str = "restic",
        cache_dir: str | Path | None = None,
        timeout: float | None = 6 * 3600,
        probe_timeout: float = 60,
    ):
        if "RESTIC_PASSWORD" not in env:
            raise ResticError(f"restic repository {repository}: no password given")
        self.repository = repository
        self.binary = binary
        self.timeout = timeout
        self.probe_timeout = probe_timeout
        self._env = dict(env)
        if cache_dir is not None:
            self._env["RESTIC_CACHE_DIR"] = str(cache_dir)
        self._secrets = sorted(
            (v for k, v in env.items() if k in SECRET_VARIABLES and v), key=len, reverse=True
        )

    def __repr__(self) -> str:  # never the environment
        return f"ResticRepo({self.repository!r})"

    def _base(self) -> list[str]:
        return [self.binary, "--json", "--repo", self.repository]

    def _scrub(self, text: str) -> str:
        for value in self._secrets:
            text = text.replace(value, "***")
        return text

    @contextmanager
    def _call(
        self,
        what: str,
        cwd: str | Path | None = None,
        runner: VolumeRunner | None = None,
        timeout: float | None = None,
    ) -> Iterator[None]:
        # where restic ran, in every message, unless on this host as always
        where = f" from {runner.where}" if runner is not None else ""
        runner = runner or LocalRunner(".")
        call = _Call(self._env, str(cwd) if cwd else None, timeout or self.timeout, runner)
        token = _CALL.set(call)
        try:
            yield
        except ProviderError as exc:  # restic could not run there at all
            raise ResticError(
                f"restic {what} on {self.repository}{where}: {self._scrub(str(exc))}"
            ) from None
        except restic.errors.Error as exc:
            lines = self._scrub(str(exc)).strip().splitlines()
            raise ResticError(
                f"restic {what} on {self.repository}{where} failed: " + " | ".join(lines[-4:])
            ) from None
        except (r_backup.Error, json.JSONDecodeError) as exc:
            raise ResticError(
                f"restic {what} on {self.repository}{where}: unexpected output: "
                f"{self._scrub(str(exc))}"
            ) from None
        finally:
            _CALL.reset(token)

    # -- commands ----------------------------------------------------------
    def exists(self) -> bool:
        """True when the repository answers with our password (`restic cat config`)."""
        try:
            with self._call("cat config"):
                command_executor.execute([*self._base(), "cat", "config"])
        except ResticError:
            return False
        return True

    def _probe(self, runner: VolumeRunner | None) -> None:
        """On a remote runner, `cat config` within `probe_timeout` first: a repository the
        runner cannot reach fails in seconds, not after restic's own retries."""
        if runner is None or not runner.remote:
            return
        try:
            with self._call("cat config", runner=runner, timeout=self.probe_timeout):
                command_executor.execute([*self._base(), "cat", "config"])
        except ResticError as exc:
            raise RepositoryUnreachable(f"the repository cannot be reached: {exc}") from None

    def init_if_missing(self) -> bool:
        """Initialize the repository unless it exists; True when it was created now."""
        if self.exists():
            return False
        with self._call("init"):
            r_init.run(self._base())
        return True

    def backup(
        self,
        source: str | Path,
        tags: list[str],
        *,
        exclude: list[str] | None = None,
        host: str | None = None,
        runner: VolumeRunner | None = None,
    ) -> BackupSummary:
        """Back up the content of directory `source` (snapshot paths relative to it).

        `source` is a path as `runner` sees it (default: a subprocess here).
        """
        self._probe(runner)
        with self._call("backup", cwd=source, runner=runner):
            out = r_backup.run(
                self._base(), paths=["."], tags=tags, exclude_patterns=exclude, host=host
            )
        if out.get("message_type") != "summary" or "snapshot_id" not in out:
            raise ResticError(f"restic backup on {self.repository}: no summary in its output")
        return BackupSummary(
            snapshot_id=out["snapshot_id"],
            files=int(out.get("total_files_processed", 0)),
            bytes=int(out.get("total_bytes_processed", 0)),
            duration=float(out.get("total_duration", 0.0)),
            files_new=int(out.get("files_new", 0)),
            data_added=int(out.get("data_added", 0)),
        )

    def snapshots(self, tags: list[str] | None = None) -> list[Snapshot]:
        """Snapshots carrying every tag in `tags`, oldest first."""
        with self._call("snapshots"):
            rows = r_snapshots.run(self._base(), tags=tags) or []
        snaps = [
            Snapshot(
                r["id"],
                r.get("short_id", r["id"][:8]),
                _parse_time(r["time"]),
                tuple(r.get("tags") or ()),
                tuple(r.get("paths") or ()),
            )
            for r in rows
        ]
        return sorted(snaps, key=lambda s: s.time)

    def forget(self, retention: Retention, tags: list[str]) -> list[str]:
        """`forget --prune` with `retention` among the snapshots tagged `tags`; ids removed."""
        keep = {
            "keep_daily": retention.daily,
            "keep_weekly": retention.weekly,
            "keep_monthly": retention.monthly,
            "keep_yearly": retention.yearly,
        }
        if not any(keep.values()):
            raise ResticError("a retention keeping nothing would delete every snapshot; refused")
        with self._call("forget"):
            # one --tag a,b means "a and b"; resticpy would pass "--tag a --tag b" ("a or b")
            out = r_forget.run(self._base(), tags=[",".join(tags)], group_by=[], prune=True, **keep)
        groups = out if isinstance(out, list) else []
        return [s["id"] for g in groups for s in (g.get("remove") or [])]

    def check(self, read_data_subset: str | None = None) -> str:
        """`restic check`; returns its report, raises `ResticError` when it finds a problem."""
        with self._call("check"):
            out = command_executor.execute(
                [*self._base(), "check"]
                + (["--read-data-subset", read_data_subset] if read_data_subset else [])
            )
        return out  # not resticpy's check: it swallows failures

    def restore(
        self, snapshot_id: str, target: str | Path, *, runner: VolumeRunner | None = None
    ) -> None:
        """Restore a snapshot's content into directory `target` (as `runner` sees it)."""
        self._probe(runner)
        with self._call("restore", runner=runner):
            r_restore.run(self._base(), snapshot_id=snapshot_id, target_dir=str(target))

    def ls(self, snapshot_id: str) -> list[Node]:
        """Every file and directory of a snapshot."""
        with self._call("ls"):
            out = command_executor.execute([*self._base(), "ls", snapshot_id])
        nodes = []
        for line in out.splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("struct_type") == "node":
                nodes.append(Node(row["path"].lstrip("/"), row["type"], int(row.get("size", 0))))
        return nodes


def resolve_environment(backup: Backup, lookup: SecretLookup, where: str) -> dict[str, str]:
    """The restic environment of a backup config: password and variables, secrets resolved.

    A credential variable given as a plain value is refused: it would live in git.
    """
    if backup.password is None:
        raise ResticError(f"{where}: backup.password: no secret given (use secret:NAME)")
    env = {"RESTIC_PASSWORD": lookup(backup.password.name)}
    for key, value in backup.environment:
        if isinstance(value, SecretRef):
            env[key] = lookup(value.name)
        elif key in SECRET_VARIABLES:
            raise ResticError(
                f"{where}: backup.environment.{key} is a credential; reference it as secret:NAME"
            )
        else:
            env[key] = value
    return env


def repository_url(backup: Backup, project: str, name: str) -> str:
    """The instance's repository: the configured one with `/<project>/<name>` appended."""
    if not backup.repository:
        raise ResticError(f"{project}/{name}: backup.repository is not set")
    return f"{backup.repository.rstrip('/')}/{project}/{name}"


def repository_for(
    project: str,
    name: str,
    backup: Backup,
    lookup: SecretLookup,
    **kwargs: Any,
) -> ResticRepo:
    """The `ResticRepo` of one instance, its secrets resolved through `lookup`."""
    env = resolve_environment(backup, lookup, f"{project}/{name}")
    return ResticRepo(repository_url(backup, project, name), env, **kwargs)
