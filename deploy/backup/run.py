"""A backup run of one instance: maintenance on, writers stopped, restic, everything back.

Stop mode (any filesystem):

    maintenance_on -> stop_writers -> restic_backup
    -> start_writers -> health_check -> maintenance_off

Snapshot mode (a volume the provider can snapshot, btrfs on the local
provider) keeps the window as short as a consistent copy takes:

    flush -> maintenance_on -> stop_writers -> snapshot
    -> start_writers -> health_check -> maintenance_off
    -> restic_backup (from the snapshot) -> delete_snapshot

restic runs where the provider says (`Provider.volume_runner`): on this
host for the `local` provider, in a container on the instance's own engine
for a driver whose volumes this host cannot read (`lxd`). What it needs for
that (a temporary copy of the snapshot, a device) is set up and undone
inside `restic_backup`; `delete_snapshot` removes whatever a crash left of
it, so `recover()` does too.

`flush` writes the volume's dirty data to disk while the apps still serve
(syncfs of that filesystem only), so the snapshot inside the window waits
only for what was written in the last moment, not for everything the page
cache held: the window no longer grows with the data.

The last three steps are `deploy.maintenance.end_maintenance`, run in a
`finally`, so the apps come back whatever restic does, and the page goes
off only once every app answers its health check (else it stays on, with
a `maintenance` alert). The run's `window` is read from the journal:
`maintenance_on` started to `maintenance_off` finished.

Each step is journaled (`deploy.backup.journal`) before the next, by the step
runner the swap engine uses too (`deploy.steps.runner.Steps`); `recover()`
at startup brings back the apps of a run whose process died. A run is a
success only when the repository lists the new snapshot (tagged with the run
id), whatever restic's exit code said. Then `forget --prune` applies the
retention. The per-instance lock is the swap's (`deploy.live.LiveStore.lock`,
handed in by the caller with the live records), so a backup and a swap of
one instance never overlap: a backup that meets a swap
is `skipped` at once (the scheduler retries it), while a deploy that meets a
backup waits for it (`deploy.swap.lockwait`).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from deploy.backup.journal import BackupJournal, BackupRun, RunState
from deploy.backup.restic import BackupSummary, RepositoryUnreachable, ResticError, ResticRepo
from deploy.live import LiveRecord, LiveStore
from deploy.maintenance import MaintenanceKept, end_maintenance
from deploy.providers.base import InstanceHandle, Provider, VolumeHandle
from deploy.providers.types import SNAPSHOT_DIR, SwapInProgress
from deploy.steps.runner import StepHook, Steps, describe
from schemas.model import Retention

log = logging.getLogger(__name__)

MODES = ("auto", "stop", "snapshot")


def tags_of(project: str, name: str) -> list[str]:
    """The restic tags every snapshot of an instance carries (filters for listing/forget)."""
    return [f"project={project}", f"instance={name}"]


class BackupRunner:
    """Runs, journals and recovers backups of instances on one provider."""

    def __init__(
        self,
        provider: Provider,
        live: LiveStore,
        history: BackupJournal,
        *,
        on_step: StepHook | None = None,
        health_timeout: float = 60,
        health_interval: float = 0.5,
    ):
        self.provider = provider
        self.live = live
        self.history = history
        self.on_step = on_step
        self.health_timeout = health_timeout
        self.health_interval = health_interval

    def _steps(self, run_id: int) -> Steps:
        """The journaled step runner of one run."""
        return Steps(self.history, run_id, self.on_step)

    # -- a run ---------------------------------------------------------------
    def run(
        self,
        project: str,
        name: str,
        repo: ResticRepo,
        *,
        retention: Retention | None = None,
        mode: str = "auto",
    ) -> BackupRun:
        """Back up the live volume of `project/name` into `repo`; returns the journaled run.

        Never raises for a failed backup: the run says `failed` (or
        `skipped` when a swap holds the instance) with the reason, an alert
        is raised and the failure is logged at error.
        """
        if mode not in MODES:
            raise ValueError(f"backup mode {mode!r} is not one of {MODES}")
        key = f"{project}/{name}"
        dep = self.live.current(project, name)
        run_id = self.history.begin(
            project,
            name,
            "backup",
            instance_id=dep.instance_id if dep else None,
            volume_id=dep.volume_id if dep else None,
            commit=dep.commit if dep else None,
            repository=repo.repository,
        )
        if dep is None:
            self.history.finish(
                run_id, RunState.SKIPPED, error=f"{key} is not deployed; nothing to back up"
            )
            return self.history.get(run_id)
        holder = f"backup:{run_id}"
        try:
            self.live.lock(key, holder)
        except SwapInProgress as exc:
            log.warning("%s: backup %s skipped: %s", key, run_id, exc)
            self.history.finish(run_id, RunState.SKIPPED, error=str(exc))
            return self.history.get(run_id)
        try:
            self._run(run_id, dep, repo, mode)
        except Exception as exc:  # a bug or a provider crash outside the steps: still journaled
            if self.history.get(run_id).state == RunState.RUNNING:
                self.history.finish(run_id, RunState.FAILED, error=describe(exc))
        finally:
            self.live.unlock(key, holder)
        record = self.history.get(run_id)
        if record.state == RunState.SUCCEEDED:
            self.history.clear_alert(project, name, "failed")
            if retention is not None:
                self._forget(record, repo, retention)
        else:
            log.error("%s: backup %s failed: %s", key, run_id, record.error)
            self.history.raise_alert(project, name, "failed", f"backup {run_id}: {record.error}")
        return self.history.get(run_id)

    def _run(self, run_id: int, dep: LiveRecord, repo: ResticRepo, mode: str) -> None:
        p, step = self.provider, self._steps(run_id)
        inst = p.get_instance(dep.instance_id)
        vol = p.get_volume(dep.volume_id)
        if inst is None or vol is None:
            missing = dep.instance_id if inst is None else dep.volume_id
            self.history.finish(
                run_id, RunState.FAILED, error=f"{missing} does not exist on {p.name}"
            )
            return
        can = p.can_snapshot(vol)
        use_snapshot = mode == "snapshot" or (mode == "auto" and can)
        note = None
        if use_snapshot and not can:
            use_snapshot, note = False, f"volume {vol.id} cannot be snapshotted: stop mode"
        self.history.update(run_id, mode="snapshot" if use_snapshot else "stop", note=note)
        # the run tag is what `verify` looks for; the nonce keeps it unique when several
        # databases (a reinstall, staging and production) share one repository
        run_tag = f"run={run_id}.{secrets.token_hex(4)}"
        tags = [*tags_of(dep.project, dep.name), f"commit={dep.commit}", run_tag]
        snap = f"backup-{run_id}"
        summary: BackupSummary | None = None
        error: str | None = None
        unreachable = False  # restic found no repository where it runs: nothing stored
        taken = False
        if use_snapshot:  # outside the window: the apps still serve
            try:
                step("flush", lambda: p.flush_volume(vol))
            except Exception as exc:  # the snapshot flushes anyway, only inside the window
                log.warning("%s: flush before the snapshot failed: %s", dep.volume_id, exc)
        try:
            step("maintenance_on", lambda: p.set_maintenance(inst, True))
            step("stop_writers", lambda: p.stop_writers(inst))
            if use_snapshot:
                step("snapshot", lambda: p.snapshot_volume(vol, snap))
                taken = True
            else:
                summary, error, unreachable = self._backup(run_id, repo, vol, None, tags)
        except Exception as exc:
            error = describe(exc)
        finally:
            problems = self._bring_back(run_id, inst, dep.project, dep.name)
            self.history.update(run_id, window=self.history.window(run_id))
        if use_snapshot:
            try:
                if taken and error is None:
                    summary, error, unreachable = self._backup(run_id, repo, vol, snap, tags)
            finally:
                try:
                    step("delete_snapshot", lambda: p.delete_volume_snapshot(vol, snap))
                except Exception as exc:
                    problems.append(f"delete_snapshot: {describe(exc)}")
        self._judge(run_id, repo, tags, summary, error, problems, verify=not unreachable)

    def _backup(
        self,
        run_id: int,
        repo: ResticRepo,
        vol: VolumeHandle,
        snapshot: str | None,
        tags: list[str],
    ) -> tuple[BackupSummary | None, str | None, bool]:
        """restic backup where the provider runs it (`volume_runner`) of the volume or a
        snapshot; an error is kept for the verdict, the repository has the last word
        (unless restic could not reach it: the third value)."""
        step = self._steps(run_id)

        def backup() -> BackupSummary:
            """restic backup through the provider's runner for this volume (or snapshot)."""
            with self.provider.volume_runner(
                vol, snapshot=snapshot, repository=repo.repository
            ) as runner:
                root = runner.root
                return repo.backup(root, tags, exclude=[f"{root}/{SNAPSHOT_DIR}"], runner=runner)

        try:
            summary = step("restic_backup", backup)
        except RepositoryUnreachable as exc:
            return None, str(exc), True
        except Exception as exc:
            return None, describe(exc), False
        return summary, None, False

    def _bring_back(self, run_id: int, inst: InstanceHandle, project: str, name: str) -> list[str]:
        """`end_maintenance` of instance `project/name`; what kept the page on, if anything."""
        try:
            end_maintenance(
                self.provider,
                inst,
                self.live.live_apps(project, name),
                self._steps(run_id),
                alerts=self.history,
                owner=(project, name),
                timeout=self.health_timeout,
                interval=self.health_interval,
            )
        except MaintenanceKept as exc:
            return [str(exc)]
        return []

    def _judge(
        self,
        run_id: int,
        repo: ResticRepo,
        tags: list[str],
        summary: BackupSummary | None,
        error: str | None,
        problems: list[str],
        *,
        verify: bool = True,
    ) -> None:
        """Success when the repository lists the run's snapshot; the apps must be back too.

        Without `verify` (restic could not reach the repository) nothing is
        listed: the control host's listing would wait for restic's retries again.
        """
        fields: dict[str, Any] = {}
        if summary is not None:
            fields = {"files": summary.files, "bytes": summary.bytes, "duration": summary.duration}
        try:
            listed = self._steps(run_id)("verify", lambda: repo.snapshots(tags)) if verify else []
        except ResticError as exc:
            listed, error = [], error or describe(exc)
        if listed:
            fields["snapshot_id"] = listed[-1].id
        elif error is None:
            error = "restic reported success but the repository lists no snapshot of this run"
        if problems:
            error = "; ".join(filter(None, [error, "apps not fully back: " + "; ".join(problems)]))
        if listed and error:
            fields["note"] = f"snapshot stored, but: {error}"
        if listed and not problems:
            self.history.finish(run_id, RunState.SUCCEEDED, error=None, **fields)
        else:
            self.history.finish(run_id, RunState.FAILED, error=error, **fields)

    def _forget(self, record: BackupRun, repo: ResticRepo, retention: Retention) -> None:
        tags = tags_of(record.project, record.name)
        try:
            removed = self._steps(record.id)("forget_prune", lambda: repo.forget(retention, tags))
        except Exception as exc:
            msg = f"forget --prune failed: {describe(exc)}"
            log.error("%s: %s", record.key, msg)
            self.history.raise_alert(record.project, record.name, "forget", msg)
            self.history.update(record.id, note="; ".join(filter(None, [record.note, msg])))
            return
        self.history.clear_alert(record.project, record.name, "forget")
        if removed:
            log.info("%s: forget removed %d snapshot(s)", record.key, len(removed))

    # -- restart ---------------------------------------------------------------
    def recover(self) -> list[BackupRun]:
        """Bring back the apps of every run a dead process left `running`; call at startup.

        For a backup or a live restore: the live volume attached again if it
        is attached nowhere, the apps brought back (`end_maintenance`: the
        page goes off once they answer), a leftover snapshot deleted, the
        lock released, the run marked failed.
        One run's failure does not stop the others.
        """
        out = []
        for record in self.history.unfinished():
            last = record.done[-1] if record.done else "its first step"
            problems: list[str] = []
            inst = self.provider.get_instance(record.instance_id) if record.instance_id else None
            vol = self.provider.get_volume(record.volume_id) if record.volume_id else None
            detached = vol is not None and vol.attached_to is None
            if inst is not None and vol is not None and record.kind == "restore" and detached:
                try:  # died between detach and attach: attach the live volume again
                    self.provider.attach_volume(vol, inst)
                except Exception as exc:
                    problems.append(f"attach: {describe(exc)}")
            if inst is not None and record.kind in ("backup", "restore"):
                problems += self._bring_back(record.id, inst, record.project, record.name)
                self.history.update(record.id, window=self.history.window(record.id))
            if vol is not None and record.kind == "drill":  # its scratch volume
                try:
                    self.provider.destroy_volume(vol)
                except Exception as exc:
                    problems.append(f"delete scratch volume: {describe(exc)}")
            if vol is not None and record.mode == "snapshot":
                try:
                    self.provider.delete_volume_snapshot(vol, f"backup-{record.id}")
                except Exception as exc:
                    problems.append(f"delete_snapshot: {describe(exc)}")
            self.live.unlock(record.key, f"{record.kind}:{record.id}")
            reason = f"the process stopped after {last}; apps brought back at restart"
            if problems:
                reason += "; not fully: " + "; ".join(problems)
            self.history.finish(record.id, RunState.FAILED, error=reason)
            self.history.raise_alert(record.project, record.name, "failed", reason)
            log.error("%s: backup %s: %s", record.key, record.id, reason)
            out.append(self.history.get(record.id))
        return out
