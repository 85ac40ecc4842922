"""The local provider's compose override and its service classes (no engine needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from deploy.local.compose import deferred_services, override

DATA = Path("/state/instances/x/data")


def container(
    service: str, writer: bool = False, binds: tuple[str, ...] = (), depends: str = ""
) -> Any:
    labels = {
        "com.docker.compose.service": service,
        "org.swapyard.writer": "true" if writer else "false",
        "com.docker.compose.depends_on": depends,
    }
    mounts = [{"Source": b} for b in binds]
    return SimpleNamespace(labels=labels, attrs={"Mounts": mounts, "HostConfig": {}})


def test_dependents_of_volume_users_wait_for_the_volume() -> None:
    containers = [
        container("caddy"),
        container("site"),
        container("db", binds=(f"{DATA}/api/db",)),  # not labelled, but binds the volume
        container("api", depends="db:service_healthy:false"),
        container("worker", depends="api:service_started:false"),
        container("notes", writer=True),
    ]
    assert deferred_services(containers, DATA) == {"db", "api", "worker", "notes"}


def test_override_moves_caddy_off_the_volume_and_off_port_80() -> None:
    services = {
        "caddy": {
            "volumes": [
                "${SWAPYARD_ROOT:-/opt/swapyard}/Caddyfile:/etc/caddy/Caddyfile:ro",
                "${SWAPYARD_DATA:-/mnt/data}/.caddy:/data",
                {"type": "bind", "source": "${SWAPYARD_DATA}/logs", "target": "/var/log/caddy"},
            ]
        }
    }
    text = override(services, Path("/state/instances/x/front-data"))
    assert "!override" in text and '"127.0.0.1::80"' in text
    loader = yaml.SafeLoader
    loader.add_constructor("!override", lambda ld, node: ld.construct_sequence(node))
    parsed = yaml.load(text, Loader=loader)
    assert parsed["services"]["caddy"]["volumes"] == [
        "/state/instances/x/front-data/.caddy:/data",
        "/state/instances/x/front-data/logs:/var/log/caddy",
    ]
