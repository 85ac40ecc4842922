"""Put a snapshot live: restore it into a new volume, then swap it in under the live id.

The config derives the volume id (`sy-<project>-<name>`), so the restored
data must end up under that id, or the next deploy would attach the old
data again. With the instance's lock held (the swap's):

    restore (apps keep serving) -> maintenance_on -> stop_writers -> detach
    -> exchange (the restored data takes the live id, the previous data the
    spare id) -> attach -> start_writers -> health_check -> maintenance_off

The last three are `deploy.maintenance.end_maintenance`: the apps are
checked behind the page, which goes off only once they answer. A failure
undoes it in reverse with the swap's rules (writers stopped, detach,
exchange back, attach, then `end_maintenance` again as `undo:*` steps;
if the previous data does not bring the apps back either, the page stays
on and a `maintenance` alert is raised). The previous data stays in the
spare volume, never deleted implicitly. Every step is journaled as a
`restore` run, with its maintenance window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from deploy.backup.journal import BackupJournal, BackupRun, RunState
from deploy.backup.restic import ResticRepo
from deploy.backup.restore import RestoreError, resolve_snapshot, restore_to_new_volume
from deploy.live import LiveRecord, LiveStore
from deploy.maintenance import end_maintenance
from deploy.providers.base import Provider
from deploy.providers.types import DeployError
from deploy.spec import AppCheck
from deploy.steps.runner import StepRunner, Steps, describe

log = logging.getLogger(__name__)


def restore_live(
    provider: Provider,
    live: LiveStore,
    history: BackupJournal,
    repo: ResticRepo,
    project: str,
    name: str,
    apps: tuple[AppCheck, ...],
    *,
    snapshot_id: str | None = None,
    health_timeout: float = 60,
) -> BackupRun:
    """Restore a snapshot (default: the latest) and swap it in as the live volume's data.

    Returns the journaled `restore` run; never raises for a failed restore
    (the run says why and whether the previous data is back).
    """
    run_id = history.begin(project, name, "restore", repository=repo.repository)
    key = f"{project}/{name}"
    dep = live.current(project, name)
    if dep is None:
        history.finish(
            run_id, RunState.FAILED, error=f"{key} is not deployed; deploy it, then restore"
        )
        return history.get(run_id)
    history.update(run_id, instance_id=dep.instance_id, volume_id=dep.volume_id)
    holder = f"restore:{run_id}"
    try:
        live.lock(key, holder)
    except DeployError as exc:
        history.finish(run_id, RunState.FAILED, error=str(exc))
        return history.get(run_id)
    try:
        _restore_live(provider, history, repo, run_id, dep, apps, snapshot_id, health_timeout)
    except Exception as exc:
        if history.get(run_id).state == RunState.RUNNING:
            history.finish(run_id, RunState.FAILED, error=describe(exc))
    finally:
        live.unlock(key, holder)
    history.update(run_id, window=history.window(run_id))
    record = history.get(run_id)
    if record.state != RunState.SUCCEEDED:
        log.error("%s: restore %s failed: %s", key, run_id, record.error)
    return record


def _restore_live(
    p: Provider,
    history: BackupJournal,
    repo: ResticRepo,
    run_id: int,
    dep: LiveRecord,
    apps: tuple[AppCheck, ...],
    snapshot_id: str | None,
    health_timeout: float,
) -> None:
    step = Steps(history, run_id)
    inst = p.get_instance(dep.instance_id)
    live = p.get_volume(dep.volume_id)
    if inst is None or live is None or inst.endpoint is None:
        raise RestoreError(f"{dep.instance_id} or its volume {dep.volume_id} is not there")
    sid = step("resolve", lambda: resolve_snapshot(repo, dep.project, dep.name, snapshot_id))
    spare_id = f"{live.id}-before-restore-{run_id}"
    history.update(run_id, snapshot_id=sid)
    spare, _ = step(
        "restore",
        lambda: restore_to_new_volume(
            p,
            repo,
            sid,
            spare_id,
            size_bytes=live.size_bytes,
            label=live.label,
            filesystem=live.filesystem,
            project=dep.project,
        ),
    )
    exchanged = False
    owner = (dep.project, dep.name)
    try:
        step("maintenance_on", lambda: p.set_maintenance(inst, True))
        step("stop_writers", lambda: p.stop_writers(inst))
        step("detach", lambda: p.detach_volume(live))
        step("exchange", lambda: p.exchange_volume_data(live, spare))
        exchanged = True
        step("attach", lambda: p.attach_volume(live, inst))
        # a failure alerts; the undo below closes the alert when the previous data serves
        end_maintenance(
            p, inst, apps, step, alerts=history, owner=owner, timeout=health_timeout, interval=0.3
        )
    except Exception as exc:
        reason = describe(exc)
        undo = (owner, inst, live, spare, exchanged, apps, health_timeout)
        problems = _undo(p, step, history, *undo)
        back = (
            "previous data back" if not problems else "rollback incomplete: " + "; ".join(problems)
        )
        history.finish(run_id, RunState.FAILED, error=f"{reason}; {back}")
        return
    note = f"the data before the restore is in volume {spare_id}; delete it when satisfied"
    history.finish(run_id, RunState.SUCCEEDED, note=note)


def _undo(
    p: Provider,
    step: StepRunner,
    history: BackupJournal,
    owner: tuple[str, str],
    inst: Any,
    live: Any,
    spare: Any,
    exchanged: bool,
    apps: tuple[AppCheck, ...],
    health_timeout: float,
) -> list[str]:
    """Put the previous data back and the apps with it; what did not work, if anything."""
    problems = []
    actions: list[tuple[str, Callable[[], Any]]] = [
        ("undo:stop_writers", lambda: p.stop_writers(inst)),
    ]
    if exchanged:
        actions += [
            ("undo:detach", lambda: p.detach_volume(p.get_volume(live.id) or live)),
            ("undo:exchange", lambda: p.exchange_volume_data(live, spare)),
        ]
    actions.append(("undo:attach", lambda: p.attach_volume(p.get_volume(live.id) or live, inst)))
    for name, fn in actions:
        try:
            step(name, fn)
        except Exception as exc:
            problems.append(f"{name}: {describe(exc)}")
    try:
        end_maintenance(
            p,
            inst,
            apps,
            step,
            alerts=history,
            owner=owner,
            timeout=health_timeout,
            interval=0.3,
            prefix="undo:",
        )
    except DeployError as exc:
        problems.append(str(exc))
    return problems
