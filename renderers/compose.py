"""compose.yaml: the instance's docker compose project.

Layout of the project:

- one network per app (`app-<name>`) for its own services, and one `edge`
  network shared by Caddy and only the services Caddy proxies to, so a
  database is never reachable from another app or from Caddy;
- Caddy (`caddy`) is the only service that publishes ports, 80 and 443;
- data paths are bind mounts under `${SWAPYARD_DATA:-/mnt/data}`, shipped
  files under `${SWAPYARD_ROOT:-/opt/swapyard}/files`, read-only;
- secret environment values live in per-service env files
  (`secrets/<service>.env`, referenced with `env_file`), so compose.yaml holds
  no secret even in a resolved render.

Compose interpolates `$` in compose.yaml, so user-given values (environment,
command, user) have `$` doubled to stay literal. Healthcheck tests pass
through as written: the catalog writes them in compose syntax (`$$VAR`).
"""

from __future__ import annotations

from typing import Any

from renderers import layout, yamlout
from renderers.artifacts import RenderOptions
from renderers.secrets import text
from schemas.model import Healthcheck, Instance, Service

WRITER_LABEL = "org.swapyard.writer"
APP_LABEL = "org.swapyard.app"
INSTANCE_LABEL = "org.swapyard.instance"
ROLE_LABEL = "org.swapyard.role"


def render_compose(instance: Instance, options: RenderOptions) -> tuple[bytes, dict[str, bytes]]:
    """compose.yaml and its secret env files (artifact name -> bytes).

    The env files are rendered in the mode of `options` (placeholders when
    redacted); compose.yaml is the same in both modes.
    """
    services: dict[str, Any] = {layout.CADDY_SERVICE: _caddy(instance, options)}
    networks: dict[str, Any] = {layout.EDGE_NETWORK: {}}
    env_files: dict[str, bytes] = {}
    healthy = {s.name for s in instance.services if s.healthcheck is not None}
    for app in instance.apps:
        if not app.services:
            continue
        networks[layout.app_network(app.name)] = {}
        for service in app.services:
            services[service.name] = _service(instance, app.name, service, healthy, options)
            if service.secret_environment:
                env_files[layout.secrets_env(service.name)] = env_file(
                    (key, text(value, options)) for key, value in service.secret_environment
                )
    document = {
        "name": project_name(instance),
        "services": services,
        "networks": networks,
    }
    return dump_yaml(document), env_files


def project_name(instance: Instance) -> str:
    """The compose project name: `<project>-<instance>` (lowercase, digits, '-')."""
    return f"{instance.project}-{instance.name}"


def dump_yaml(document: dict[str, Any]) -> bytes:
    """Deterministic YAML: sorted keys, block style, no line wrapping (see renderers.yamlout)."""
    return yamlout.dump(document).encode()


def env_file(pairs: Any) -> bytes:
    """A compose env file, one `KEY=value` line per pair, quoted to stay literal.

    Single quotes keep everything literal in compose's dotenv parser; a value
    that holds a single quote or a line break goes in double quotes with
    `\\`, `"`, `$` and line breaks escaped.
    """
    lines = []
    for key, value in sorted(pairs):
        if "'" not in value and "\n" not in value and "\r" not in value:
            quoted = f"'{value}'"
        else:
            escaped = (
                value.replace("\\", "\\\\")
                .replace('"', '\\"')
                .replace("$", "\\$")
                .replace("\n", "\\n")
                .replace("\r", "\\r")
            )
            quoted = f'"{escaped}"'
        lines.append(f"{key}={quoted}\n")
    return "".join(lines).encode()


def _literal(value: str) -> str:
    return value.replace("$", "$$")


def _labels(instance: Instance, app: str | None, writer: bool) -> dict[str, str]:
    labels = {INSTANCE_LABEL: instance.key, WRITER_LABEL: "true" if writer else "false"}
    if app is not None:
        labels[APP_LABEL] = app
    return labels


def _image(image: str, options: RenderOptions) -> str:
    return options.image_map.get(image, image)


def _healthcheck(check: Healthcheck) -> dict[str, Any]:
    return {
        "test": list(check.test),
        "interval": f"{check.interval}s",
        "timeout": f"{check.timeout}s",
        "retries": check.retries,
        "start_period": f"{check.start_period}s",
    }


def _service(
    instance: Instance, app: str, service: Service, healthy: set[str], options: RenderOptions
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": _image(service.image, options),
        "restart": "unless-stopped",
        "labels": _labels(instance, app, service.writer),
        "networks": sorted(
            [layout.app_network(app), *([layout.EDGE_NETWORK] if service.exposed else [])]
        ),
    }
    if service.plain_environment:
        spec["environment"] = {k: _literal(v) for k, v in service.plain_environment}
    if service.secret_environment:
        spec["env_file"] = [f"{layout.ROOT_VAR}/{layout.secrets_env(service.name)}"]
    if service.command is not None:
        spec["command"] = [_literal(arg) for arg in service.command]
    if service.user is not None:
        spec["user"] = _literal(service.user)
    volumes = [f"{layout.DATA_VAR}/{m.subpath}:{m.target}" for m in service.data]
    volumes += [
        f"{layout.ROOT_VAR}/{layout.shipped(f.source)}:{f.target}" + (":ro" if f.read_only else "")
        for f in service.files
    ]
    if volumes:
        spec["volumes"] = volumes
    if service.healthcheck is not None:
        spec["healthcheck"] = _healthcheck(service.healthcheck)
    if service.depends_on:
        spec["depends_on"] = {
            dep: {"condition": "service_healthy" if dep in healthy else "service_started"}
            for dep in service.depends_on
        }
    return spec


def _caddy(instance: Instance, options: RenderOptions) -> dict[str, Any]:
    volumes = [
        f"{layout.ROOT_VAR}/{layout.CADDYFILE}:/etc/caddy/Caddyfile:ro",
        f"{layout.ROOT_VAR}/maintenance:{layout.MAINTENANCE_DIR}:ro",
        f"{layout.DATA_VAR}/{layout.CADDY_DATA_SUBPATH}:/data",
    ]
    volumes += [
        f"{layout.ROOT_VAR}/{layout.shipped(app.static_root)}:{layout.static_root(app.name)}:ro"
        for app in instance.apps
        if app.static_root is not None
    ]
    labels = _labels(instance, None, writer=False)
    labels[ROLE_LABEL] = "proxy"
    return {
        "image": _image(layout.CADDY_IMAGE, options),
        "restart": "unless-stopped",
        "labels": labels,
        "networks": [layout.EDGE_NETWORK],
        "ports": ["80:80", "443:443"],
        "volumes": volumes,
    }
