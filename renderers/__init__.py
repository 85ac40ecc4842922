"""Renderers: a validated `Instance` in, a deterministic artifact set out.

Pure functions (no I/O, no clock, no environment): the same instance and
options give the same bytes and the same digest. The artifacts:

- `compose.yaml`   the docker compose project (see renderers.compose)
- `Caddyfile`      the instance's front proxy (see renderers.caddyfile)
- `units/*`        systemd units (see renderers.systemd)
- `limits.json`    the instance's CPU and memory limits, only when set
                   (see renderers.limits)
- `ignition.json`  Ignition 3.4.0 holding everything above; the one artifact
                   a provider receives (see renderers.ignition)

For images that boot with cloud-init, `renderers.cloudinit` translates
`ignition.json` into user-data; that is not an artifact (no digest, no plan).

Two modes: `redacted` shows each secret as a placeholder `<secret:NAME>` (for
plans, diffs, stored history and `swapyard render`); `resolved` puts the
values from a secret lookup in (only for handing to a provider).
"""

from __future__ import annotations

from renderers import layout
from renderers.artifacts import ArtifactSet, RenderOptions
from renderers.caddyfile import maintenance_page, render_caddyfile
from renderers.compose import render_compose
from renderers.ignition import render_ignition
from renderers.limits import render_limits
from renderers.outside import outside
from renderers.secrets import check_options
from renderers.systemd import render_units
from schemas.model import Instance

__all__ = ["ArtifactSet", "RenderOptions", "render_instance"]

_DEFAULT = RenderOptions()


def render_instance(instance: Instance, options: RenderOptions = _DEFAULT) -> ArtifactSet:
    """Render every artifact of one instance.

    Artifact names are paths relative to /opt/swapyard on the instance
    (`compose.yaml`, `Caddyfile`, `maintenance/index.html`,
    `secrets/<service>.env`, `files/<path>`), plus `units/<unit>` and
    `ignition.json`, which holds all the others. Raises `RenderError` for a
    resolved render without a secret lookup and `SecretNotFound` for a
    secret the lookup lacks.
    """
    check_options(options)
    compose, env_files = render_compose(instance, options)
    files: dict[str, bytes] = {
        layout.COMPOSE: compose,
        layout.CADDYFILE: render_caddyfile(instance, options),
        layout.MAINTENANCE: maintenance_page(instance),
        **env_files,
        **{layout.shipped(path): data for path, data in instance.files},
    }
    if instance.cpus is not None or instance.memory_bytes is not None:
        files[layout.LIMITS] = render_limits(instance)
    units = render_units(instance)
    ignition = render_ignition(instance, files, units, options)
    artifacts = {
        **files,
        **{layout.unit(name): data for name, data in units.items()},
        layout.IGNITION: ignition,
    }
    return ArtifactSet(
        instance=instance.key,
        files=tuple(sorted(artifacts.items())),
        outside=outside(instance),
    )
