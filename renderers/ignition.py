"""ignition.json: the one artifact a provider hands to a new Flatcar instance.

Ignition spec 3.4.0, the newest every Flatcar channel (LTS included) reads.
It carries every other artifact as a file under /opt/swapyard (inline
`data:;base64,` sources, so the bytes are deterministic), the systemd units,
the data volume's filesystem, the docker-compose sysext, and the timezone.
It holds no users and no SSH keys, and masks sshd: instances have no login.

The data volume: `storage.filesystems` with `wipeFilesystem: false` makes
Ignition reuse the filesystem on the volume (or create one on an empty
device). Ignition needs the device at first boot, so an instance whose
volume arrives later (the new side of a swap) is rendered with
`RenderOptions.volume_at_boot=False`, and only the mount unit mounts it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from renderers import layout
from renderers.artifacts import RenderOptions
from renderers.systemd import APP_UNIT, PREPARE_UNIT
from schemas.model import Instance

SPEC_VERSION = "3.4.0"

# The docker-compose sysext from flatcar/sysext-bakery. Pin the version and
# its published sha256 together (release SHA256SUMS of the bakery).
DOCKER_COMPOSE_SYSEXT_VERSION = "2.34.0"
# UNVERIFIED: the published sha256 of docker-compose-2.34.0-x86-64.raw could
# not be looked up offline. While None, the file is fetched over HTTPS without
# `verification`; set it (or RenderOptions.compose_sysext_sha256) to pin it.
DOCKER_COMPOSE_SYSEXT_SHA256: str | None = None
SYSEXT_BASE_URL = "https://extensions.flatcar.org/extensions"

FILE_MODE = 0o644
SECRET_MODE = 0o600
SECRET_DIR_MODE = 0o700
MASKED_UNITS = ("sshd.service", "sshd.socket")


def data_url(data: bytes) -> str:
    """An RFC 2397 data URL of `data`, base64, no media type (what Ignition expects)."""
    return "data:;base64," + base64.b64encode(data).decode("ascii")


def sysext_file(version: str, sha256: str | None) -> dict[str, Any]:
    """The Ignition file entry that downloads the docker-compose sysext image."""
    name = f"docker-compose-{version}-x86-64.raw"
    contents: dict[str, Any] = {"source": f"{SYSEXT_BASE_URL}/{name}"}
    if sha256:
        contents["verification"] = {"hash": f"sha256-{sha256}"}
    return {
        "path": f"/opt/extensions/docker-compose/{name}",
        "mode": FILE_MODE,
        "overwrite": True,
        "contents": contents,
    }


def _file(path: str, data: bytes, mode: int) -> dict[str, Any]:
    return {
        "path": path,
        "mode": mode,
        "overwrite": True,
        "contents": {"source": data_url(data)},
    }


def _links(instance: Instance, sysext_path: str) -> list[dict[str, Any]]:
    return [
        {
            "path": "/etc/extensions/docker-compose.raw",
            "target": sysext_path,
            "hard": False,
            "overwrite": True,
        },
        {
            "path": "/etc/localtime",
            "target": f"/usr/share/zoneinfo/{instance.timezone}",
            "hard": False,
            "overwrite": True,
        },
    ]


def render_ignition(
    instance: Instance,
    files: Mapping[str, bytes],
    units: Mapping[str, bytes],
    options: RenderOptions,
) -> bytes:
    """ignition.json from the other artifacts (artifact name -> bytes) and the units.

    `files` are placed under /opt/swapyard at their artifact names;
    `secrets/*` get mode 0600 in a 0700 directory, everything else 0644.
    """
    entries = [
        _file(
            f"{layout.ROOT}/{name}",
            data,
            SECRET_MODE if name.startswith("secrets/") else FILE_MODE,
        )
        for name, data in sorted(files.items())
    ]
    entries.append(
        _file("/etc/hostname", f"{instance.project}-{instance.name}\n".encode(), FILE_MODE)
    )
    sha256 = options.compose_sysext_sha256 or DOCKER_COMPOSE_SYSEXT_SHA256
    sysext = sysext_file(DOCKER_COMPOSE_SYSEXT_VERSION, sha256)
    entries.append(sysext)
    storage: dict[str, Any] = {
        "files": sorted(entries, key=lambda e: e["path"]),
        "links": _links(instance, sysext["path"]),
    }
    if any(name.startswith("secrets/") for name in files):
        storage["directories"] = [{"path": f"{layout.ROOT}/secrets", "mode": SECRET_DIR_MODE}]
    if options.volume_at_boot:
        volume = instance.volume
        storage["filesystems"] = [
            {
                "device": options.data_device or f"/dev/disk/by-label/{volume.label}",
                "format": volume.filesystem,
                "label": volume.label,
                "wipeFilesystem": False,
            }
        ]
    enabled = {layout.DATA_MOUNT_UNIT, PREPARE_UNIT, APP_UNIT}
    systemd_units: list[dict[str, Any]] = [
        {"name": name, "enabled": name in enabled, "contents": data.decode()}
        for name, data in sorted(units.items())
    ]
    systemd_units += [{"name": name, "mask": True} for name in MASKED_UNITS]
    config = {
        "ignition": {"version": SPEC_VERSION},
        "storage": storage,
        "systemd": {"units": systemd_units},
    }
    return (json.dumps(config, sort_keys=True, separators=(",", ":")) + "\n").encode()
