"""CLI commands of the running service: `serve`, `worker`, `history`.

`register(group)` adds them (and `web`) to the `swapyard` click group. `serve` runs the
web app under Granian (see service.web.server) with the worker threads in
the same process; `worker` runs only the worker, for a second process;
`web` only the web app. `serve` and `worker` stand for the schedule: of all
the processes on one database, the one holding its lease runs the backup
jobs (service.worker.leader), and each says at start whether that is itself.
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import click

from schemas.errors import SwapyardError


def _app(config_file: str | None, **overrides: Any) -> Any:
    from service.web.app import create_app

    settings = {k: v for k, v in overrides.items() if v is not None}
    if config_file:
        settings["config_file"] = config_file
    try:
        return create_app(settings)
    except SwapyardError as exc:
        raise click.ClickException(str(exc)) from None


def _exit_on_sigterm(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML service config (default: $SWAPYARD_CONFIG).",
)


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", type=int, default=None, help="Worker threads (0: web only).")
@click.option("--threads", default=16, show_default=True, help="HTTP request threads.")
def serve(config_file: str | None, host: str, port: int, workers: int | None, threads: int) -> None:
    """Serve webhooks, API, pages and metrics under Granian, with the worker in-process."""
    from service.settings import settings_of
    from service.web import server

    app = _app(config_file, workers=workers)
    workers = settings_of(app).workers
    click.echo(f"swapyard: serving on http://{host}:{port} with {workers} worker(s)")
    sys.stdout.flush()
    server.run(app, host, port, threads)


@click.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--threads", default=16, show_default=True, help="HTTP request threads.")
def web(config_file: str | None, host: str, port: int, threads: int) -> None:
    """Serve webhooks, API, pages and metrics only; run `swapyard worker` beside it.

    It runs no deployment and no scheduled job: `swapyard worker` does both."""
    from service.web import server

    app = _app(config_file)
    click.echo(f"swapyard: serving on http://{host}:{port} (no worker in this process)")
    sys.stdout.flush()
    server.run(app, host, port, threads, background=False)


@click.command()
@config_option
@click.option("--workers", type=int, default=None, help="Worker threads.")
def worker(config_file: str | None, workers: int | None) -> None:
    """Run only the worker (events, deployments, statuses, the schedule) until SIGTERM."""
    from service.settings import settings_of
    from service.worker.backups import get_backups, schedule_line
    from service.worker.threads import get_worker

    app = _app(config_file, workers=workers)
    w = get_worker(app)
    stop = threading.Event()
    _exit_on_sigterm(stop)
    w.start(role="worker")  # stands for the schedule like `serve`; one of them runs it
    click.echo(f"swapyard: worker running with {settings_of(app).workers} thread(s)")
    click.echo(f"swapyard: {schedule_line(get_backups(app))}")
    sys.stdout.flush()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        w.stop()


@click.command()
@config_option
@click.option("--instance", default=None, help="Only this instance key (project/name).")
@click.option("--limit", default=20, show_default=True)
def history(config_file: str | None, instance: str | None, limit: int) -> None:
    """Print the latest deployments from the database."""
    from sqlalchemy import select

    from service.store.db import get_db
    from service.store.models import Deployment

    app = _app(config_file, allow_unsigned=True)
    query = select(Deployment).order_by(Deployment.id.desc()).limit(limit)
    if instance:
        query = query.where(Deployment.key == instance)
    with get_db(app).session() as session:
        for d in session.scalars(query):
            when = datetime.fromtimestamp(d.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            click.echo(
                f"{d.id:>5} {when} {d.key:<30} {d.sha[:12]} {d.status:<10} {d.summary or ''}"
            )


def register(group: click.Group) -> None:
    for command in (serve, web, worker, history):
        group.add_command(command)
