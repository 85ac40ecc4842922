"""The base image: its alias follows its content, its metadata seeds cloud-init, reuse."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.providers.lxd.image import (
    ALIAS_PREFIX,
    ImageBuildError,
    Recipe,
    compose_binary,
    metadata_tar,
    mmdebstrap_argv,
)
from tests.conftest import run_cli


@pytest.fixture
def recipe() -> Recipe:
    return Recipe(compose_binary())


def test_the_alias_is_derived_from_the_content(recipe: Recipe, tmp_path: Path) -> None:
    assert recipe.alias.startswith(ALIAS_PREFIX) and len(recipe.alias) == len(ALIAS_PREFIX) + 16
    assert Recipe(compose_binary()).alias == recipe.alias
    assert replace(recipe, mirror="http://mirror.example/debian").alias == recipe.alias
    assert replace(recipe, packages=(*recipe.packages, "curl")).alias != recipe.alias
    files = dict(recipe.files)
    files["/etc/docker/daemon.json"] = ("{}\n", 0o644)
    assert replace(recipe, files=files).alias != recipe.alias
    other = tmp_path / "docker-compose"
    other.write_bytes(b"\x7fELF another build")
    assert replace(recipe, compose_binary=other).alias != recipe.alias


def test_the_metadata_seeds_cloud_init_from_the_instance_config(recipe: Recipe) -> None:
    with tarfile.open(fileobj=io.BytesIO(metadata_tar(recipe, created=0))) as tar:
        metadata = json.loads(tar.extractfile("metadata.yaml").read())  # type: ignore[union-attr]
        templates = {m.name: tar.extractfile(m).read().decode() for m in tar if m.isfile()}  # type: ignore[union-attr]
    seeds = metadata["templates"]
    user = seeds["/var/lib/cloud/seed/nocloud-net/user-data"]
    assert user["when"] == ["create", "copy"]
    text = templates[f"templates/{user['template']}"]
    assert "cloud-init.user-data" in text and "user.user-data" in text
    assert "/var/lib/cloud/seed/nocloud-net/meta-data" in seeds
    assert metadata["properties"]["swapyard.alias"] == recipe.alias


def test_nothing_to_log_in_with(recipe: Recipe, tmp_path: Path) -> None:
    argv = " ".join(mmdebstrap_argv(recipe, tmp_path / "rootfs.tar", tmp_path))
    assert "openssh" not in argv and "ssh.service" in argv  # masked, not installed
    assert "getty@.service" in argv
    dropin = recipe.files["/etc/systemd/system/docker.service.d/swapyard-tls.conf"][0]
    assert "--tlsverify" in dropin and "tcp://0.0.0.0:2376" in dropin


def test_without_mmdebstrap_the_message_says_what_to_install(
    recipe: Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageBuildError, match="apt-get install mmdebstrap"):
        mmdebstrap_argv(recipe, tmp_path / "rootfs.tar", tmp_path)


@pytest.mark.lxd
def test_build_base_reuses_the_image(base_image: str, recipe: Recipe) -> None:
    assert base_image == recipe.alias
    result = run_cli("images", "build-base")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == recipe.alias
    assert "already there" in result.stderr
