"""systemd units: the data mount by label, and compose started after it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from renderers import render_instance
from schemas.model import Instance


def _units(instance: Instance) -> dict[str, str]:
    artifacts = render_instance(instance)
    return {
        n[len("units/") :]: artifacts[n].decode() for n in artifacts.names if n.startswith("units/")
    }


def test_mount_unit_mounts_by_label(instance: Instance) -> None:
    mount = _units(instance)["mnt-data.mount"]
    assert f"What=/dev/disk/by-label/{instance.volume.label}\n" in mount
    assert "Where=/mnt/data\n" in mount
    assert f"Type={instance.volume.filesystem}\n" in mount
    assert "WantedBy=local-fs.target\n" in mount
    assert "nofail" in mount  # a new instance boots before the swap moves the volume to it


def test_app_service_runs_compose_after_docker_and_the_mount(instance: Instance) -> None:
    app = _units(instance)["app.service"]
    assert "Requires=docker.service mnt-data.mount\n" in app
    assert "After=docker.service mnt-data.mount " in app
    assert "Environment=SWAPYARD_DATA=/mnt/data SWAPYARD_ROOT=/opt/swapyard\n" in app
    assert "ExecStart=/usr/bin/docker compose " in app and " up -d" in app
    assert "ExecStop=/usr/bin/docker compose " in app and app.rstrip().count(" down") == 1


def test_prepare_service_pulls_and_creates_without_the_volume(instance: Instance) -> None:
    prepare = _units(instance)["app-prepare.service"]
    assert "mnt-data.mount" not in prepare
    assert " pull " in prepare and prepare.count("ExecStart=") == 2
    assert "/opt/swapyard/compose.yaml create\n" in prepare


def test_no_unit_enables_a_login(instance: Instance) -> None:
    for text in _units(instance).values():
        for word in ("sshd", "getty", "authorized_keys", "passwd"):
            assert word not in text


def test_systemd_analyze_verify_accepts_them(instance: Instance, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is missing; apt-get install systemd")
    paths = []
    for name, text in _units(instance).items():
        (tmp_path / name).write_text(text)
        paths.append(f"./{name}")
    result = subprocess.run(
        [tool, "verify", "--man=no", *paths],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # e.g. "Unknown key ... ignoring" is only a warning
