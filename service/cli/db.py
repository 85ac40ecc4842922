"""`swapyard db`: the database's schema revision, and migrations run on demand.

Every start upgrades the database anyway (service.store.migrate); these commands
let an operator do it, or look, without starting the service. `db revision`
is for swapyard's developers: it writes a new migration from the models.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from service.cli.service import config_option


def _engine(config_file: str | None) -> Any:
    from service.settings import load_settings
    from service.store.db import make_engine

    settings: dict[str, Any] = {"allow_unsigned": True}  # no webhook is received here
    if config_file:
        settings["config_file"] = config_file
    return make_engine(load_settings(settings).database_url)


@click.group()
def db() -> None:
    """The service's database: schema revision and migrations."""


@db.command()
@config_option
def upgrade(config_file: str | None) -> None:
    """Bring the database to the newest schema revision (what every start does)."""
    from service.store import migrate

    engine = _engine(config_file)
    before, now = migrate.upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == now:
        click.echo(f"{where}: at revision {now}, the newest; nothing to do")
    else:
        click.echo(f"{where}: upgraded from revision {before or '(none)'} to {now}")


@db.command()
@config_option
def current(config_file: str | None) -> None:
    """Print the database's schema revision and whether it is the newest."""
    from service.store import migrate

    revision, newest = migrate.current(_engine(config_file)), migrate.head()
    if revision == newest:
        click.echo(f"{revision} (newest)")
    elif revision is None:
        click.echo(f"none: the database is empty or from before migrations; newest is {newest}")
    else:
        click.echo(f"{revision}; newest is {newest}: run `swapyard db upgrade` or start swapyard")


@db.command()
@click.option("-m", "--message", required=True, help="What the migration changes.")
def revision(message: str) -> None:
    """Write a new migration from what the models add to the newest revision (developers).

    The models are compared with a scratch SQLite database upgraded to the
    newest revision; review the file, then run tests/service/store/test_migrations.py.
    """
    from alembic import command

    from service.store import migrate
    from service.store.db import make_engine

    newest = migrate.head()
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        migrate.upgrade(engine)
        with engine.begin() as conn:
            scripts = command.revision(
                migrate.alembic_config(conn),
                message,
                autogenerate=True,
                rev_id=f"{int(newest) + 1:04d}",
            )
        engine.dispose()
    for script in scripts if isinstance(scripts, list) else [scripts]:
        if script is not None:
            click.echo(f"wrote {script.path}: review it before committing")


def register(group: click.Group) -> None:
    group.add_command(db)
