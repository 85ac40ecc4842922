"""ignition.json: valid Ignition 3.4.0, no login, every artifact inside it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from renderers import RenderOptions, render_instance
from renderers.ignition import DOCKER_COMPOSE_SYSEXT_VERSION
from schemas.model import Instance
from tests.renderers.helpers import decode_data_url, fake_secrets, load_json_reference


def _ignition(instance: Instance, options: RenderOptions | None = None) -> dict[str, Any]:
    return json.loads(render_instance(instance, options or RenderOptions())["ignition.json"])


@pytest.mark.conformance
def test_validates_against_the_ignition_3_4_schema(instance: Instance) -> None:
    schema = load_json_reference("schemas/ignition-v3_4.json")
    for options in (
        RenderOptions(),
        RenderOptions(mode="resolved", secrets=fake_secrets(instance).get),
        RenderOptions(compose_sysext_sha256="ab" * 32, volume_at_boot=False),
    ):
        config = _ignition(instance, options)
        jsonschema.validate(config, schema)
        assert config["ignition"]["version"] == "3.4.0"


def test_has_no_users_keys_or_ssh(instance: Instance) -> None:
    config = _ignition(instance)
    assert "passwd" not in config
    assert "sshAuthorizedKeys" not in json.dumps(config)
    masked = {u["name"] for u in config["systemd"]["units"] if u.get("mask")}
    assert masked == {"sshd.service", "sshd.socket"}


def test_carries_every_artifact_under_opt_swapyard(instance: Instance) -> None:
    artifacts = render_instance(instance)
    files = {f["path"]: f for f in json.loads(artifacts["ignition.json"])["storage"]["files"]}
    for name in artifacts.names:
        if name == "ignition.json" or name.startswith("units/"):
            continue
        entry = files[f"/opt/swapyard/{name}"]
        assert decode_data_url(entry["contents"]["source"]) == artifacts[name]
        assert entry["mode"] == (0o600 if name.startswith("secrets/") else 0o644)
    directories = json.loads(artifacts["ignition.json"])["storage"].get("directories", [])
    if any(name.startswith("secrets/") for name in artifacts.names):
        assert directories == [{"path": "/opt/swapyard/secrets", "mode": 0o700}]


def test_units_are_enabled_with_their_contents(instance: Instance) -> None:
    artifacts = render_instance(instance)
    units = {u["name"]: u for u in json.loads(artifacts["ignition.json"])["systemd"]["units"]}
    for name in ("mnt-data.mount", "app-prepare.service", "app.service"):
        assert units[name]["enabled"] is True
        assert units[name]["contents"].encode() == artifacts[f"units/{name}"]


def test_data_volume_is_reused_never_wiped(instance: Instance) -> None:
    (fs,) = _ignition(instance)["storage"]["filesystems"]
    assert fs == {
        "device": f"/dev/disk/by-label/{instance.volume.label}",
        "format": instance.volume.filesystem,
        "label": instance.volume.label,
        "wipeFilesystem": False,
    }
    device = "/dev/disk/by-id/virtio-data"
    (fs,) = _ignition(instance, RenderOptions(data_device=device))["storage"]["filesystems"]
    assert fs["device"] == device
    assert "filesystems" not in _ignition(instance, RenderOptions(volume_at_boot=False))["storage"]


def test_docker_compose_sysext_and_timezone_links(instance: Instance) -> None:
    config = _ignition(instance)
    raw = (
        f"/opt/extensions/docker-compose/docker-compose-{DOCKER_COMPOSE_SYSEXT_VERSION}-x86-64.raw"
    )
    files = {f["path"]: f for f in config["storage"]["files"]}
    assert files[raw]["contents"]["source"] == (
        "https://extensions.flatcar.org/extensions/"
        f"docker-compose-{DOCKER_COMPOSE_SYSEXT_VERSION}-x86-64.raw"
    )
    links = {link["path"]: link["target"] for link in config["storage"]["links"]}
    assert links["/etc/extensions/docker-compose.raw"] == raw
    assert links["/etc/localtime"] == f"/usr/share/zoneinfo/{instance.timezone}"


def test_sysext_hash_is_an_ignition_verification_hash(examples: tuple[Instance, ...]) -> None:
    digest = "ab" * 32
    config = _ignition(examples[0], RenderOptions(compose_sysext_sha256=digest))
    (sysext,) = [f for f in config["storage"]["files"] if f["path"].endswith(".raw")]
    assert sysext["contents"]["verification"] == {"hash": f"sha256-{digest}"}


def test_is_compact_sorted_json_with_a_newline(instance: Instance) -> None:
    raw = render_instance(instance)["ignition.json"]
    assert raw.endswith(b"}\n")
    assert (
        raw == (json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")) + "\n").encode()
    )
