"""Commands for running swapyard on one machine: local images and a local forge.

`swapyard images build-local`: the local images an offline machine needs.

Builds (or reuses) the images of deploy.providers.local.images for every upstream image
a config repository uses and prints the resulting IMAGE_MAP as YAML; with
`--write-config FILE` it also sets `image_map` in that service config file,
keeping its other settings.

`swapyard images build-base`: the base image of the `lxd` provider's
instances (deploy.providers.lxd.image), built from Debian's packages and
imported into LXD (or Incus) under a content-derived alias; reused when the
daemon already has it. Prints the alias.

`swapyard githook install BARE`: make a bare git repository deliver its
pushes to the service as signed GitHub push webhooks (service.quickstart.githook).
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml


@click.group()
def images() -> None:
    """Images for offline machines (no registry reachable)."""


@images.command("build-local")
@click.argument("path", type=click.Path(exists=True, file_okay=False), default=".")
@click.option(
    "--write-config",
    "write_config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Set image_map in this service config (YAML; created when missing).",
)
def build_local(path: str, write_config: str | None) -> None:
    """Build local stand-ins for every image of the repository at PATH; print the map."""
    from deploy.providers.local.images import image_map_for_repository

    mapping = image_map_for_repository(path)
    click.echo(yaml.safe_dump({"image_map": mapping}, sort_keys=True), nl=False)
    if write_config:
        target = Path(write_config)
        from service.settings import load_yaml_file

        current = load_yaml_file(target) if target.exists() else {}
        current["image_map"] = mapping
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(current, sort_keys=False))
        click.echo(f"wrote image_map ({len(mapping)} image(s)) to {target}", err=True)


@click.group()
def githook() -> None:
    """A bare git repository on this machine acting as the forge."""


@githook.command("install")
@click.argument("bare", type=click.Path(exists=True, file_okay=False))
@click.option("--url", required=True, help="Base URL of the service, e.g. http://127.0.0.1:8080.")
@click.option(
    "--secret-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="File holding the webhook secret.",
)
@click.option("--full-name", required=True, help="Repository full name, e.g. me/config.")
def githook_install(bare: str, url: str, secret_file: str, full_name: str) -> None:
    """Install the post-receive hook that signs and delivers each push."""
    from service.quickstart.githook import install

    hook = install(Path(bare), url, Path(secret_file), full_name)
    click.echo(f"installed {hook}")


@images.command("build-base")
@click.option("--socket", "socket_path", default=None, help="The LXD/Incus unix socket.")
@click.option("--rebuild", is_flag=True, help="Build again even when the alias exists.")
def build_base(socket_path: str | None, rebuild: bool) -> None:
    """Build (or find) the lxd provider's base image; print its alias."""
    from deploy.providers.lxd.api import Endpoint, LxdClient
    from deploy.providers.lxd.image import Recipe, compose_binary, ensure_base_image

    client = LxdClient(Endpoint.local(socket_path))
    recipe = Recipe(compose_binary())
    click.echo(f"base image {recipe.alias}: building unless LXD has it", err=True)
    image = ensure_base_image(client, recipe, rebuild=rebuild)
    verb = "built and imported" if image.built else "already there"
    click.echo(f"{verb}: {image.alias} ({image.fingerprint[:12]})", err=True)
    click.echo(image.alias)


def register(group: click.Group) -> None:
    group.add_command(images)
    group.add_command(githook)
