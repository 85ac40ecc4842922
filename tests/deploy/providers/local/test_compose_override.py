"""The local provider's compose override, its service classes, and which compose it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from deploy.providers.local.compose import deferred_services, find_compose, override

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


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_compose_comes_from_the_venv_before_path(tmp_path: Path, monkeypatch: Any) -> None:
    """The venv's pinned compose wins over another one on PATH (Debian's v1, say)."""
    on_path = _executable(tmp_path / "usr" / "bin" / "docker-compose")
    venv_python = tmp_path / "venv" / "bin" / "python"
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setattr("sys.executable", str(venv_python))
    assert find_compose() == str(on_path)  # no compose in the venv: PATH's
    beside = _executable(venv_python.parent / "docker-compose")
    assert find_compose() == str(beside)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_compose() == str(beside)
    beside.unlink()
    assert find_compose() is None


def test_the_compose_setup_installs_is_found_and_is_v2() -> None:
    found = find_compose()
    assert found is not None, f"no docker-compose beside {sys.executable} nor on PATH"
    out = subprocess.run(
        [found, "version", "--short"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().lstrip("v").split(".")[0] == "2", out.stdout
