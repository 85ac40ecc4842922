"""The `swapyard` command line.

Offline commands (usable in a pre-commit hook or any CI): `validate`,
`render`, `plan`, `schema`. Service commands register themselves on the same
group from their own modules.

Exit codes: 0 success; 1 the input is wrong (every problem printed, each
naming file, line and field); 2 usage errors (click's own); with
`plan --exit-code`, 3 when the plan has changes. Errors never show a
traceback; an unexpected one is reported as an internal error (exit 70),
with the traceback only when SWAPYARD_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from schemas import DEFAULT_LIMITS, ConfigError, Limits, RepoConfig, SwapyardError, load_repo
from schemas.export import json_schema_text, markdown_reference
from schemas.limits import option_name

if TYPE_CHECKING:
    from renderers.artifacts import ArtifactSet

EXIT_INVALID = 1
EXIT_CHANGES = 3
EXIT_INTERNAL = 70


Command = TypeVar("Command", bound=Callable[..., Any])


def limit_options(command: Command) -> Command:
    """One option per field of `Limits` (`--max-file-bytes`, ...), each defaulting to it."""
    for f in reversed(fields(Limits)):
        command = click.option(
            f"--{option_name(f.name)}",
            f.name,
            type=click.IntRange(min=1, max=f.metadata["ceiling"]),
            default=None,
            metavar=f.metadata["unit"].upper(),
            help=f"{f.metadata['help']} [default: {f.default}]",
        )(command)
    return command


def _limits(options: dict[str, int | None]) -> Limits:
    return DEFAULT_LIMITS.with_values(options)


def _load(path: str, limits: Limits, secrets_dir: str | None = None) -> RepoConfig:
    known = None
    if secrets_dir is not None:
        known = sorted(p.name for p in Path(secrets_dir).iterdir() if p.is_file())
    repo = load_repo(path, known_secrets=known, limits=limits)
    for warning in repo.warnings:
        click.echo(f"warning: {warning}", err=True)
    return repo


def _image_map(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise click.BadParameter(f"{pair!r}: expected FROM=TO, e.g. caddy:2.8.4=local/caddy:1")
        out[source] = target
    return out


def _render_all(
    repo: RepoConfig, image_map: dict[str, str], https: bool | None
) -> dict[str, ArtifactSet]:
    from renderers import RenderOptions, render_instance

    options = RenderOptions(image_map=image_map, https=https)
    return {i.key: render_instance(i, options) for i in repo.instances if i.state == "present"}


@click.group()
@click.version_option(package_name="swapyard")
def main() -> None:
    """swapyard: a git push swaps an immutable server and moves its data across."""


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False), default=".")
@click.option(
    "--secrets-dir",
    type=click.Path(exists=True, file_okay=False),
    help="The secret store (one file per secret, named after it): check that every "
    "secret:NAME exists. Only names are read.",
)
@limit_options
def validate(path: str, secrets_dir: str | None, **limits: int | None) -> None:
    """Validate a config repository, or one instance directory."""
    repo = _load(path, _limits(limits), secrets_dir)
    projects = sorted({i.project for i in repo.instances})
    click.echo(
        f"ok: {len(repo.instances)} instance(s) in {len(projects)} project(s)"
        + (f" ({', '.join(projects)})" if projects else "")
    )


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False), default=".")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    help="Directory to write <project>/<instance>/ to (required for the artifacts).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["artifacts", "cloud-init"]),
    default="artifacts",
    show_default=True,
    help="artifacts: every artifact and manifest.json. cloud-init: only the user-data a "
    "cloud-init image boots from (cloud-init.yaml, not an artifact: no digest, no plan); "
    "printed when PATH holds one instance and --out is not given.",
)
@click.option(
    "--image-map",
    "image_map",
    multiple=True,
    metavar="FROM=TO",
    help="Use image TO wherever FROM is configured (offline machines, tests).",
)
@click.option("--https/--no-https", default=None, help="Override each instance's https setting.")
@click.option("-v", "--verbose", is_flag=True, help="Also print each artifact's digest.")
@limit_options
def render(
    path: str,
    out: str | None,
    fmt: str,
    image_map: tuple[str, ...],
    https: bool | None,
    verbose: bool,
    **limits: int | None,
) -> None:
    """Render each instance's artifacts (redacted) and print their digests."""
    if fmt == "artifacts" and out is None:
        raise click.UsageError("--out DIR is required (or --format cloud-init to print)")
    repo = _load(path, _limits(limits))
    rendered = _render_all(repo, _image_map(image_map), https)
    if fmt == "cloud-init":
        _render_cloudinit(rendered, out)
        return
    assert out is not None
    for key, artifacts in sorted(rendered.items()):
        artifacts.write(Path(out) / key)
        click.echo(f"{key}  {artifacts.digest}")
        if verbose:
            for name, digest in sorted(artifacts.digests.items()):
                click.echo(f"    {name}  sha256:{digest}")


def _render_cloudinit(rendered: dict[str, ArtifactSet], out: str | None) -> None:
    """Write (or, for one instance without --out, print) each instance's user-data.

    It sits beside the artifacts but outside the artifact set: a render of the
    artifacts into the same directory removes it, and plans never see it.
    """
    from renderers import layout
    from renderers.cloudinit import USER_DATA, render_cloudinit

    if out is None and len(rendered) != 1:
        raise click.UsageError(
            f"--format cloud-init prints one instance, and PATH holds {len(rendered)}: "
            "give an instance directory, or --out DIR"
        )
    for key, artifacts in sorted(rendered.items()):
        user_data = render_cloudinit(artifacts[layout.IGNITION])
        if out is None:
            click.echo(user_data.decode(), nl=False)
            continue
        target = Path(out) / key / USER_DATA
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(user_data)
        click.echo(f"{key}  {target}")


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False), default=".")
@click.option(
    "--against",
    type=click.Path(file_okay=False),
    required=True,
    help="A directory written by `swapyard render` (what is deployed).",
)
@click.option("--image-map", "image_map", multiple=True, metavar="FROM=TO")
@click.option("--https/--no-https", default=None)
@click.option("--diff/--no-diff", default=True, help="Show a unified diff per instance.")
@click.option("--exit-code", is_flag=True, help=f"Exit {EXIT_CHANGES} when anything would change.")
@limit_options
def plan(
    path: str,
    against: str,
    image_map: tuple[str, ...],
    https: bool | None,
    diff: bool,
    exit_code: bool,
    **limits: int | None,
) -> None:
    """Plan each instance against previously rendered output."""
    from handlers.gitops.plan import make_plan, read_deployed, summary

    repo = _load(path, _limits(limits))
    rendered = _render_all(repo, _image_map(image_map), https)
    absent = [i.key for i in repo.instances if i.state == "absent"]
    items = make_plan(rendered, absent, read_deployed(Path(against)))
    for item in items:
        click.echo(f"{item.action:<9} {item.instance}: {item.reason}")
        if diff and item.diff:
            click.echo(_indent(item.diff))
    click.echo(f"plan: {summary(items)}")
    if exit_code and any(i.action != "noop" for i in items):
        sys.exit(EXIT_CHANGES)


def _indent(text: str) -> str:
    return "".join(f"    {line}" for line in text.splitlines(keepends=True)).rstrip("\n")


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(["json", "markdown"]), default="json", show_default=True
)
@click.option(
    "--file",
    "which",
    type=click.Choice(["apps.config", "swapyard.yaml"]),
    default="apps.config",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def schema(fmt: str, which: str, out: str | None) -> None:
    """Print the config schema as JSON Schema (for editors) or the Markdown reference."""
    text = json_schema_text(which) if fmt == "json" else markdown_reference()
    if out:
        Path(out).write_text(text)
    else:
        click.echo(text, nl=False)


def _register_service_commands() -> None:
    from service.cli import backup as cli_backup
    from service.cli import db as cli_db
    from service.cli import local as cli_local
    from service.cli import service as cli_service

    cli_service.register(main)
    cli_db.register(main)
    cli_backup.register(main)
    cli_local.register(main)


_register_service_commands()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to exit codes; never let a traceback reach the user."""
    try:
        main.main(args=argv, prog_name="swapyard", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) found", err=True)
        return EXIT_INVALID
    except SwapyardError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_INVALID
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # the boundary: report, don't crash with a traceback
        if os.environ.get("SWAPYARD_DEBUG") == "1":
            traceback.print_exc()
        click.echo(f"swapyard: internal error, please report it: {exc!r}", err=True)
        return EXIT_INTERNAL
    return 0


def entry() -> None:
    sys.exit(run())


if __name__ == "__main__":
    entry()
