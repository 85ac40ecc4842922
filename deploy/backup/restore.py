"""Restores and drills: a snapshot into a NEW volume, compared with what the snapshot lists.

`restore_to_new_volume` creates a volume (never an existing one: a volume
is never formatted twice), has the provider make it writable where restic
runs (`Provider.volume_runner`: mounted on this host for the `local`
provider, attached at a scratch path of a running instance of the project
for `lxd`), runs `restic restore` into it there, compares every file and
size with the snapshot's listing as that runner sees the tree, and
detaches it. The volume is then free to be attached (or swapped in) like
any other. `drill` does the same into a scratch volume it deletes
afterwards, and journals the outcome, so a schedulable job proves that the
backups can be read back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from deploy.backup.journal import BackupJournal, RunState
from deploy.backup.restic import ResticError, ResticRepo
from deploy.backup.run import tags_of
from deploy.providers.base import Provider, VolumeHandle
from deploy.providers.runner import VolumeRunner
from deploy.providers.types import SNAPSHOT_DIR, DeployError

log = logging.getLogger(__name__)


class RestoreError(DeployError):
    """A restore did not reproduce the snapshot (missing files, other sizes)."""


@dataclass(frozen=True)
class Comparison:
    """A restored tree against a snapshot's listing: files, bytes and the differences."""

    files: int
    bytes: int
    missing: tuple[str, ...] = ()
    different: tuple[str, ...] = ()  # "path: expected N bytes, found M"
    extra: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every file is there with its size and nothing else."""
        return not (self.missing or self.different or self.extra)

    def summary(self) -> str:
        """One line for the journal and the logs."""
        text = f"{self.files} files, {self.bytes} bytes"
        for label, items in (
            ("missing", self.missing),
            ("different", self.different),
            ("extra", self.extra),
        ):
            if items:
                text += f"; {len(items)} {label}: " + ", ".join(items[:5])
        return text


@dataclass(frozen=True)
class RestoreReport:
    """Where a snapshot was restored and how it compared."""

    snapshot_id: str
    volume_id: str
    comparison: Comparison
    run_id: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def compare(runner: VolumeRunner, repo: ResticRepo, snapshot_id: str) -> Comparison:
    """Compare the tree under `runner.root` with the file list and sizes of a snapshot."""
    skipped = (SNAPSHOT_DIR, "lost+found")
    expected = {
        n.path: n for n in repo.ls(snapshot_id) if n.path and n.path.split("/", 1)[0] not in skipped
    }
    found = {p: v for p, v in runner.tree().items() if p.split("/", 1)[0] not in skipped}
    missing = tuple(sorted(p for p in expected if p not in found))
    extra = tuple(sorted(p for p in found if p not in expected))
    different = tuple(
        f"{p}: expected {n.size} bytes, found {found[p][1]}"
        for p, n in sorted(expected.items())
        if p in found and n.type == "file" and found[p][1] != n.size
    )
    files = [n for n in expected.values() if n.type == "file"]
    return Comparison(len(files), sum(n.size for n in files), missing, different, extra)


def resolve_snapshot(repo: ResticRepo, project: str, name: str, snapshot_id: str | None) -> str:
    """The full id of `snapshot_id` (a prefix), or of the instance's latest snapshot."""
    snaps = repo.snapshots(tags_of(project, name))
    if snapshot_id:
        snaps = [s for s in snaps if s.id.startswith(snapshot_id)]
    if not snaps:
        which = f"snapshot {snapshot_id}" if snapshot_id else "any snapshot"
        raise RestoreError(f"{project}/{name}: the repository {repo.repository} has no {which}")
    return snaps[-1].id


def restore_to_new_volume(
    provider: Provider,
    repo: ResticRepo,
    snapshot_id: str,
    volume_id: str,
    *,
    size_bytes: int,
    label: str,
    filesystem: str = "ext4",
    project: str | None = None,
) -> tuple[VolumeHandle, Comparison]:
    """Restore a snapshot into a volume created now; raises `RestoreError` if it exists.

    The volume is left detached; a `RestoreError` also reports a
    restore that does not match the snapshot (the volume is kept for a look).
    """
    if provider.get_volume(volume_id) is not None:
        raise RestoreError(
            f"volume {volume_id} already exists; restores go to a new volume, pick another id"
        )
    volume = provider.create_volume(volume_id, size_bytes, label, filesystem, project=project)
    try:
        with provider.volume_runner(volume, restore=True, repository=repo.repository) as runner:
            repo.restore(snapshot_id, runner.root, runner=runner)
            result = compare(runner, repo, snapshot_id)
    finally:
        volume = provider.detach_volume(provider.get_volume(volume_id) or volume)
    if not result.ok:
        raise RestoreError(f"restore of {snapshot_id[:8]} into {volume_id}: {result.summary()}")
    return volume, result


def drill(
    provider: Provider,
    repo: ResticRepo,
    history: BackupJournal,
    project: str,
    name: str,
    *,
    size_bytes: int,
    filesystem: str = "ext4",
    snapshot_id: str | None = None,
) -> RestoreReport:
    """Restore the latest (or a given) snapshot into a scratch volume, compare, delete it.

    The outcome is journaled as a `drill` run; a failed drill raises a
    `drill` alert and is logged at error. Never raises for a failed drill.
    """
    run_id = history.begin(project, name, "drill", repository=repo.repository)
    scratch = f"drill-{project}-{name}-{run_id}"
    history.update(run_id, volume_id=scratch)
    try:
        sid = resolve_snapshot(repo, project, name, snapshot_id)
        history.update(run_id, snapshot_id=sid)
        _, result = restore_to_new_volume(
            provider,
            repo,
            sid,
            scratch,
            size_bytes=size_bytes,
            label="drill",
            filesystem=filesystem,
            project=project,
        )
    except (DeployError, ResticError) as exc:
        history.finish(run_id, RunState.FAILED, error=str(exc))
        history.raise_alert(project, name, "drill", f"drill {run_id}: {exc}")
        log.error("%s/%s: restore drill %s failed: %s", project, name, run_id, exc)
        return RestoreReport(snapshot_id or "", scratch, Comparison(0, 0), run_id, (str(exc),))
    finally:
        leftover = provider.get_volume(scratch)
        if leftover is not None:
            provider.destroy_volume(leftover)
    history.finish(
        run_id, RunState.SUCCEEDED, files=result.files, bytes=result.bytes, note=result.summary()
    )
    history.clear_alert(project, name, "drill")
    return RestoreReport(sid, scratch, result, run_id)
