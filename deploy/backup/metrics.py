"""Backup metrics in the Prometheus text format, read from the backup journal.

Pure reading: the service's `/metrics` view returns `prometheus_text(history)`
as `text/plain; version=0.0.4`. Per instance: when the last successful
backup finished, whether the last run succeeded, its maintenance window and
size, run counts per state, and one gauge per open alert.
"""

from __future__ import annotations

import sqlalchemy as sa

from deploy.backup.journal import BackupJournal, RunState, runs
from deploy.steps.sql import epoch


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items())) + "}"


def prometheus_text(history: BackupJournal) -> str:
    """Every backup metric of every instance, as Prometheus exposition text."""
    out = {
        "swapyard_backup_last_success_timestamp_seconds": [
            "# HELP swapyard_backup_last_success_timestamp_seconds "
            "End of the last successful backup.",
            "# TYPE swapyard_backup_last_success_timestamp_seconds gauge",
        ],
        "swapyard_backup_last_run_success": [
            "# HELP swapyard_backup_last_run_success 1 when the last backup run succeeded.",
            "# TYPE swapyard_backup_last_run_success gauge",
        ],
        "swapyard_backup_last_window_seconds": [
            "# HELP swapyard_backup_last_window_seconds Maintenance window of the last backup.",
            "# TYPE swapyard_backup_last_window_seconds gauge",
        ],
        "swapyard_backup_last_bytes": [
            "# HELP swapyard_backup_last_bytes Bytes processed by the last successful backup.",
            "# TYPE swapyard_backup_last_bytes gauge",
        ],
        "swapyard_backup_runs_total": [
            "# HELP swapyard_backup_runs_total Runs by kind and final state.",
            "# TYPE swapyard_backup_runs_total counter",
        ],
        "swapyard_backup_alert": [
            "# HELP swapyard_backup_alert 1 while an alert (stale, failed, check, ...) is open.",
            "# TYPE swapyard_backup_alert gauge",
        ],
    }
    with history.engine.connect() as conn:
        counts = conn.execute(
            sa.select(runs.c.project, runs.c.name, runs.c.kind, runs.c.state, sa.func.count())
            .group_by(runs.c.project, runs.c.name, runs.c.kind, runs.c.state)
            .order_by(runs.c.project, runs.c.name, runs.c.kind, runs.c.state)
        ).all()
        rows = (
            conn.execute(
                sa.select(runs)
                .where(runs.c.kind == "backup", runs.c.state != RunState.RUNNING)
                .order_by(runs.c.id)
            )
            .mappings()
            .all()
        )
    last: dict[tuple[str, str], dict] = {}
    last_ok: dict[tuple[str, str], dict] = {}
    for r in rows:  # oldest first: the last write wins
        key = (r["project"], r["name"])
        last[key] = dict(r)
        if r["state"] == RunState.SUCCEEDED:
            last_ok[key] = dict(r)
    for (project, name), run in sorted(last.items()):
        lab = _labels(project=project, instance=name)
        out["swapyard_backup_last_run_success"].append(
            f"swapyard_backup_last_run_success{lab} {int(run['state'] == RunState.SUCCEEDED)}"
        )
        if run["window"] is not None:
            out["swapyard_backup_last_window_seconds"].append(
                f"swapyard_backup_last_window_seconds{lab} {run['window']:.3f}"
            )
    for (project, name), ok in sorted(last_ok.items()):
        lab = _labels(project=project, instance=name)
        if ok["finished"] is not None:
            out["swapyard_backup_last_success_timestamp_seconds"].append(
                f"swapyard_backup_last_success_timestamp_seconds{lab} {epoch(ok['finished']):.0f}"
            )
        out["swapyard_backup_last_bytes"].append(
            f"swapyard_backup_last_bytes{lab} {ok['bytes'] or 0}"
        )
    for project, name, kind, state, n in counts:
        lab = _labels(project=project, instance=name, kind=kind, state=state)
        out["swapyard_backup_runs_total"].append(f"swapyard_backup_runs_total{lab} {n}")
    for a in history.alerts():
        lab = _labels(project=a.project, instance=a.name, kind=a.kind)
        out["swapyard_backup_alert"].append(f"swapyard_backup_alert{lab} 1")
    return "\n".join(line for block in out.values() for line in block) + "\n"
