"""`swapyard backup list|now|drill|restore INSTANCE`: backups of deployed instances, on demand.

They work on what the service scheduled (the jobs in its database, written
after each deploy), so they need the service's config, not the config
repository. Secrets come from the service's secret store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from service.cli.service import _app, config_option

if TYPE_CHECKING:
    from service.worker.backups import Backups


@contextmanager
def _backups(config_file: str | None) -> Iterator[Backups]:
    from service.worker.backups import get_backups  # the service's stack, only when asked for

    app = _app(config_file, allow_unsigned=True)
    backups = get_backups(app)
    if backups is None:
        raise click.ClickException("backups are off in this service (settings DEPLOY, BACKUPS)")
    backups.scheduler.start(paused=True)  # read and write jobs; run none here
    try:
        yield backups
    finally:
        backups.scheduler.shutdown(wait=False)


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


def _run_line(run: Any) -> str:
    """One run: the maintenance window clients saw (page on to off) and restic's own time.

    The two differ: restic's figure leaves out stopping and restarting the
    apps, and in snapshot mode restic runs after the page is off.
    """
    times = f"window {_seconds(run.window):>8}  restic {_seconds(run.duration):>8}"
    what = run.error or (f"snapshot {run.snapshot_id[:8]}" if run.snapshot_id else run.note or "")
    when = run.started.isoformat(timespec="seconds") if run.started else "-"
    return f"{run.id:>5} {when} {run.kind:<8} {run.state:<10} {times} {what}".rstrip()


@click.group()
def backup() -> None:
    """Backups of deployed instances: list, run now, restore drill, restore."""


@backup.command("list")
@config_option
@click.argument("instance")
def list_(config_file: str | None, instance: str) -> None:
    """Snapshots in the repository and the journaled runs of INSTANCE (project/name)."""
    with _backups(config_file) as b:
        job = b.scheduler.job_of(instance)
        for snap in b.scheduler.snapshots(job):
            click.echo(f"snapshot {snap.short_id} {snap.time.isoformat()} {' '.join(snap.tags)}")
        next_run = b.scheduler.next_run(job.project, job.name)
        click.echo(f"next backup: {next_run.isoformat() if next_run else 'not scheduled'}")
        for run in b.scheduler.history.runs(job.project, job.name)[:20]:
            click.echo(_run_line(run))


@backup.command()
@config_option
@click.argument("instance")
def now(config_file: str | None, instance: str) -> None:
    """Back up INSTANCE now (maintenance page while its writers are stopped)."""
    from deploy.backup.journal import RunState

    with _backups(config_file) as b:
        run = b.scheduler.run_now("backup", b.scheduler.job_of(instance))
        if run is None or run.state != RunState.SUCCEEDED:
            raise click.ClickException(f"backup of {instance} failed; see `swapyard backup list`")
        click.echo(_run_line(run))


@backup.command()
@config_option
@click.argument("instance")
@click.option("--snapshot", default=None, help="Snapshot id (default: the latest).")
def drill(config_file: str | None, instance: str, snapshot: str | None) -> None:
    """Restore a snapshot of INSTANCE into a scratch volume and compare it."""
    with _backups(config_file) as b:
        report = b.scheduler.drill(b.scheduler.job_of(instance), snapshot)
        click.echo(f"drill of snapshot {report.snapshot_id[:8]}: {report.comparison.summary()}")
        if not report.comparison.ok:
            raise click.ClickException(f"restore drill of {instance} failed")


@backup.command()
@config_option
@click.argument("instance")
@click.option("--snapshot", default=None, help="Snapshot id (default: the latest).")
def restore(config_file: str | None, instance: str, snapshot: str | None) -> None:
    """Restore a snapshot of INSTANCE into a new volume and swap it in as the live data.

    The apps show the maintenance page while the data is exchanged; a failed
    health check puts the previous data back (the swap's rules).
    """
    from deploy.backup.journal import RunState

    with _backups(config_file) as b:
        run = b.scheduler.restore(b.scheduler.job_of(instance), snapshot)
        click.echo(_run_line(run))
        if run.state != RunState.SUCCEEDED:
            raise click.ClickException(f"restore of {instance} failed: {run.error or run.state}")


def register(group: click.Group) -> None:
    group.add_command(backup)
