"""Data volumes as LXD custom storage volumes: created, found, attached and snapshotted by the API.

A volume is a custom volume of content type `filesystem` in the storage pool,
inside the LXD project of the swapyard project it serves. On a btrfs pool it
is a subvolume: LXD creates its filesystem once, so "never formatted twice"
holds by construction, and snapshots share blocks. It is attached as the disk
device `swapyard-data` at /mnt/data, which LXD mounts into the running
instance (bind mount for a container, virtiofs/9p for a VM) and unmounts when
the device goes. LXD itself lets several instances use one filesystem volume,
so `attach` checks `used_by` first and refuses a volume another instance
holds.

The label and the filesystem swapyard asked for are kept in the volume's
`user.swapyard.*` config; the filesystem reported is the pool's (a btrfs
subvolume has no label of its own).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.providers.lxd.api import LxdClient, LxdError, LxdNotFound
from deploy.providers.lxd.site import DATA_PATH, OWNER_KEY, PROJECT_KEY

DEVICE = "swapyard-data"
LABEL_KEY = "user.swapyard.label"
FILESYSTEM_KEY = "user.swapyard.filesystem"
SOURCE_KEY = "user.swapyard.snapshot-of"  # a temporary copy of a snapshot: `volume/snapshot`
JOB_DEVICE_PREFIX = "swapyard-job-"  # a volume attached for a restic job, beside the data
JOB_PATH = "/mnt/swapyard-job"


@dataclass(frozen=True)
class LxdVolume:
    """One custom volume as the daemon reports it."""

    name: str
    lxd_project: str
    size_bytes: int
    label: str
    filesystem: str
    used_by: tuple[str, ...]  # instance names in the same LXD project


class Volumes:
    """Custom volumes of one pool, owned by one provider (`user.swapyard.owner`)."""

    def __init__(self, client: LxdClient, pool: str, owner: str, lxd_dir: Path | None):
        self.client = client
        self.pool = pool
        self.owner = owner
        self.lxd_dir = lxd_dir  # the daemon's directory on this host, None when remote
        self._driver: str | None = None

    @property
    def driver(self) -> str:
        """The pool's storage driver (btrfs, zfs, dir, lvm, ...)."""
        if self._driver is None:
            pool = self.client.in_project("default").get(f"/1.0/storage-pools/{self.pool}")
            self._driver = str(pool.get("driver", "unknown"))
        return self._driver

    def _path(self, name: str) -> str:
        return f"/1.0/storage-pools/{self.pool}/volumes/custom/{name}"

    def _volume(self, raw: dict[str, Any], lxd_project: str) -> LxdVolume:
        config = raw.get("config") or {}
        used = []
        for url in raw.get("used_by") or []:
            path = url.split("?")[0]
            if "/instances/" in path:
                used.append(path.rsplit("/", 1)[-1])
        return LxdVolume(
            name=raw["name"],
            lxd_project=raw.get("project") or lxd_project,
            size_bytes=_size(config.get("size", "0")),
            label=config.get(LABEL_KEY, ""),
            filesystem=self.driver,
            used_by=tuple(sorted(used)),
        )

    def find(self, name: str) -> LxdVolume | None:
        """The volume called `name` in any of this owner's projects, or None."""
        found = self.client.in_project("default").get(
            f"/1.0/storage-pools/{self.pool}/volumes",
            params={"recursion": "1", "all-projects": "true"},
            project=False,
        )
        for raw in found:
            if raw.get("type") != "custom" or raw.get("name") != name:
                continue
            if (raw.get("config") or {}).get(OWNER_KEY) != self.owner:
                continue
            return self._volume(raw, raw.get("project", "default"))
        return None

    def all(self) -> list[LxdVolume]:
        """Every custom volume of this owner."""
        found = self.client.in_project("default").get(
            f"/1.0/storage-pools/{self.pool}/volumes",
            params={"recursion": "1", "all-projects": "true"},
            project=False,
        )
        return [
            self._volume(raw, raw.get("project", "default"))
            for raw in found
            if raw.get("type") == "custom"
            and (raw.get("config") or {}).get(OWNER_KEY) == self.owner
        ]

    def create(
        self, lxd_project: str, project: str, name: str, size_bytes: int, label: str, fs: str
    ) -> LxdVolume:
        """Create the volume in `lxd_project`; an existing one is returned untouched."""
        existing = self.find(name)
        if existing is not None:
            return existing
        client = self.client.in_project(lxd_project)
        config = {
            OWNER_KEY: self.owner,
            PROJECT_KEY: project,
            LABEL_KEY: label,
            FILESYSTEM_KEY: fs,
        }
        if size_bytes and self.driver != "dir":
            config["size"] = str(size_bytes)
        body = {"description": f"swapyard data volume of {project} (label {label})"}
        return self._post(client, name, {**body, "config": config})

    def _post(self, client: LxdClient, name: str, body: dict[str, Any]) -> LxdVolume:
        """Create custom filesystem volume `name` (one that exists meanwhile is fine); it."""
        body = {"name": name, "type": "custom", "content_type": "filesystem", **body}
        try:
            client.request(
                "POST", f"/1.0/storage-pools/{self.pool}/volumes/custom", body=body, wait=600
            )
        except LxdError as exc:
            if exc.code != 409 and "already exists" not in str(exc).lower():
                raise
        created = self.find(name)
        if created is None:
            raise LxdError(f"volume {name} was created but LXD does not list it")
        return created

    def delete(self, volume: LxdVolume) -> None:
        """Delete the volume and its snapshots."""
        client = self.client.in_project(volume.lxd_project)
        with contextlib.suppress(LxdNotFound):
            for snap in client.get(self._path(volume.name) + "/snapshots"):
                client.request("DELETE", snap.split("?")[0])
        with contextlib.suppress(LxdNotFound):
            client.request("DELETE", self._path(volume.name))

    def rename(self, volume: LxdVolume, new_name: str) -> None:
        """Rename the volume (detached) in its project."""
        client = self.client.in_project(volume.lxd_project)
        client.request("POST", self._path(volume.name), body={"name": new_name})

    # -- devices ---------------------------------------------------------------
    def device(self, volume: LxdVolume) -> dict[str, str]:
        """The disk device that mounts the volume at the data path."""
        return {"type": "disk", "pool": self.pool, "source": volume.name, "path": DATA_PATH}

    def job_device(self, volume: LxdVolume, *, writable: bool) -> tuple[str, dict[str, str]]:
        """The name and disk device that mount `volume` for a restic job (not at the data path)."""
        key = hashlib.sha256(volume.name.encode()).hexdigest()[:12]
        device = {
            "type": "disk",
            "pool": self.pool,
            "source": volume.name,
            "path": f"{JOB_PATH}/{key}",
        }
        if not writable:
            device["readonly"] = "true"
        return JOB_DEVICE_PREFIX + key, device

    def devices_of(self, instance: dict[str, Any], volume: str) -> dict[str, dict[str, str]]:
        """The instance's disk devices (data or job) that mount custom volume `volume`."""
        return {
            name: dev
            for name, dev in (instance.get("devices") or {}).items()
            if dev.get("type") == "disk"
            and dev.get("pool") == self.pool
            and dev.get("source") == volume
        }

    def attached_volume(self, instance: dict[str, Any]) -> str | None:
        """The name of the data volume an instance's devices carry, or None."""
        device = (instance.get("devices") or {}).get(DEVICE)
        return device.get("source") if device else None

    # -- snapshots ----------------------------------------------------------------
    def snapshot(self, volume: LxdVolume, snap: str) -> None:
        """Take snapshot `snap` of the volume (existing: kept)."""
        client = self.client.in_project(volume.lxd_project)
        try:
            client.request("POST", self._path(volume.name) + "/snapshots", body={"name": snap})
        except LxdError as exc:
            if exc.code != 409 and "already exists" not in str(exc).lower():
                raise

    def delete_snapshot(self, volume: LxdVolume, snap: str) -> None:
        """Delete snapshot `snap`; a missing one is fine."""
        client = self.client.in_project(volume.lxd_project)
        with contextlib.suppress(LxdNotFound):
            client.request("DELETE", self._path(volume.name) + f"/snapshots/{snap}")

    def copy_snapshot(self, volume: LxdVolume, snap: str, name: str) -> LxdVolume:
        """A new volume `name` holding snapshot `snap` of `volume` (btrfs: a subvolume
        snapshot, instant); an existing one is returned untouched. It carries this
        owner's tag and `SOURCE_KEY`, so `list_volumes` and cleanups see it."""
        existing = self.find(name)
        if existing is not None:
            return existing
        source = f"{volume.name}/{snap}"
        body = {
            "description": f"swapyard: snapshot {snap} of {volume.name}, for a backup",
            "config": {OWNER_KEY: self.owner, SOURCE_KEY: source},
            "source": {"type": "copy", "pool": self.pool, "name": source, "volume_only": True},
        }
        return self._post(self.client.in_project(volume.lxd_project), name, body)

    # -- where this host sees the files (a daemon on this host only) ---------------
    def host_path(self, volume: LxdVolume, snap: str | None = None) -> Path:
        """The volume's (or a snapshot's) directory on this host; `LxdError` when remote."""
        if self.lxd_dir is None:
            raise LxdError(
                f"volume {volume.name} lives on a remote LXD daemon; its files are not on this host"
            )
        key = f"{volume.lxd_project}_{volume.name}"
        pool = self.lxd_dir / "storage-pools" / self.pool
        return pool / "custom-snapshots" / key / snap if snap else pool / "custom" / key


def _size(text: str) -> int:
    """Bytes of an LXD size ("10GiB", "1073741824", "500MB")."""
    text = str(text).strip()
    units = {"": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    units |= {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
    number = text.rstrip("KMGTPiBk")
    unit = text[len(number) :]
    try:
        return int(float(number or 0) * units.get(unit, 1))
    except ValueError:
        return 0
