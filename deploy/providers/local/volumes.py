"""Data volumes of the local provider: sparse filesystem images on loop devices.

A volume `<id>` is `volumes/<id>.img` (plus `<id>.json` with its label and
size) in the state directory. It is formatted once, at creation, and never
when `blkid` finds a filesystem. Attaching sets up a loop device and mounts
it at the instance's data directory; detaching unmounts it and frees the
loop device. Where is a volume attached? Always read from the kernel
(`losetup`, `/proc/self/mounts`), never from a cache, so a restarted service
sees the truth.

Where loop devices are missing, a volume is a plain directory and attaching
makes the instance's data path a symlink to it; a warning says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.providers.commands import run
from deploy.providers.types import SNAPSHOT_DIR, ProviderError, VolumeInUse

log = logging.getLogger(__name__)

MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-L"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-L"],
    "btrfs": ["mkfs.btrfs", "-q", "-f", "-L"],
}


def loop_devices_available() -> bool:
    """True when this process can set up loop devices (root, /dev/loop-control, losetup)."""
    return (
        os.geteuid() == 0
        and Path("/dev/loop-control").exists()
        and shutil.which("losetup") is not None
    )


def filesystem_type(path: Path | str) -> str | None:
    """The filesystem type `blkid` finds on a device or image file, or None."""
    proc = run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(path)], check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip()
    if proc.returncode in (0, 2):  # 2: nothing found
        return None
    raise ProviderError(f"blkid {path} failed: {proc.stderr.strip()}")


def loop_devices_of(image: Path) -> list[str]:
    """Loop devices currently backed by `image`."""
    out = run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"]).stdout
    devices = json.loads(out or '{"loopdevices": []}').get("loopdevices", [])
    wanted = str(image.resolve())
    return [
        d["name"]
        for d in devices
        if (d.get("back-file") or "").removesuffix(" (deleted)") == wanted
    ]


def mountpoints_of(device: str) -> list[Path]:
    """Where `device` is mounted, from /proc/self/mounts."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target, *_ = line.split()
        if source == device:
            points.append(Path(target.replace("\\040", " ")))
    return points


@dataclass(frozen=True)
class VolumeInfo:
    id: str
    label: str
    size_bytes: int
    filesystem: str
    mountpoints: tuple[Path, ...]
    loop_devices: tuple[str, ...]
    directory_mode: bool


class LoopVolumes:
    """Create, attach, detach and delete the volumes under `state_dir/volumes`."""

    def __init__(self, state_dir: Path, use_loop: bool | None = None, release_timeout: float = 10):
        self.release_timeout = release_timeout
        self.dir = state_dir / "volumes"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.use_loop = loop_devices_available() if use_loop is None else use_loop
        if not self.use_loop:
            log.warning(
                "loop devices are not available: volumes are plain directories under %s "
                "(no size limit, no filesystem label); run as root with /dev/loop-control "
                "for real volumes",
                self.dir,
            )

    def prepare_mountpoint(self, point: Path) -> None:
        """Create an instance's data mountpoint and seal it while nothing is mounted there.

        The empty directory gets the immutable flag (`chattr +i`): a writer
        that starts without its volume — Docker restarting it after a reboot,
        before swapyard re-attaches — cannot create its bind source there and
        fails to start instead of writing to the wrong disk. Mounting over
        the sealed directory works as usual. Skipped in directory mode, and
        with a warning where the filesystem has no such flag.
        """
        point.mkdir(parents=True, exist_ok=True)
        if not self.use_loop or os.path.ismount(point) or point.is_symlink():
            return
        proc = run(["chattr", "+i", str(point)], check=False)
        if proc.returncode != 0:
            log.warning(
                "cannot seal %s (chattr +i: %s); a writer started without its "
                "volume would write there",
                point,
                proc.stderr.strip(),
            )

    def release_mountpoint(self, point: Path) -> None:
        """Lift the seal of an unmounted mountpoint so its instance directory can be removed."""
        if point.is_dir() and not point.is_symlink() and not os.path.ismount(point):
            run(["chattr", "-i", str(point)], check=False)

    def _meta(self, vid: str) -> Path:
        return self.dir / f"{vid}.json"

    def image(self, vid: str) -> Path:
        """The image file (or, in directory mode, the directory) of volume `vid`."""
        return self.dir / (f"{vid}.img" if self.use_loop else f"{vid}.d")

    def _link_record(self, vid: str) -> Path:
        return self.dir / f"{vid}.attached"

    def create(self, vid: str, size_bytes: int, label: str, filesystem: str) -> VolumeInfo:
        """Create and format volume `vid` unless it exists; never format a filesystem twice."""
        existing = self.info(vid)
        if existing is not None:
            return existing
        if filesystem not in MKFS:
            raise ProviderError(
                f"volume {vid}: filesystem {filesystem!r} is not one of {sorted(MKFS)}"
            )
        image = self.image(vid)
        if self.use_loop:
            if not image.exists():
                with open(image, "wb") as f:
                    f.truncate(size_bytes)  # sparse
            found = filesystem_type(image)
            if found is None:
                run([*MKFS[filesystem], label, str(image)])
            else:
                log.warning("volume %s already holds a %s filesystem: not formatting", vid, found)
        else:
            image.mkdir(exist_ok=True)
        meta = {"label": label, "size_bytes": size_bytes, "filesystem": filesystem}
        self._meta(vid).write_text(json.dumps(meta))
        info = self.info(vid)
        assert info is not None
        return info

    def ids(self) -> list[str]:
        """Ids of every volume in the state directory."""
        return sorted(p.stem for p in self.dir.glob("*.json"))

    def info(self, vid: str) -> VolumeInfo | None:
        """Everything known about volume `vid`, attachment read from the kernel."""
        meta_path = self._meta(vid)
        if not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text())
        if self.use_loop:
            loops = tuple(loop_devices_of(self.image(vid)))
            points = tuple(p for d in loops for p in mountpoints_of(d))
        else:
            loops = ()
            record = self._link_record(vid)
            points = (Path(record.read_text()),) if record.exists() else ()
        return VolumeInfo(
            vid,
            meta["label"],
            meta["size_bytes"],
            meta["filesystem"],
            points,
            loops,
            not self.use_loop,
        )

    def attach(self, vid: str, mountpoint: Path) -> VolumeInfo:
        """Mount volume `vid` at `mountpoint`; idempotent there, `VolumeInUse` elsewhere."""
        info = self.info(vid)
        if info is None:
            raise ProviderError(f"volume {vid} does not exist; create it first")
        if mountpoint in info.mountpoints:
            return info
        if info.mountpoints:
            raise VolumeInUse(
                f"volume {vid} is mounted at {info.mountpoints[0]}; detach it before "
                f"attaching it at {mountpoint}"
            )
        if not self.use_loop:
            if mountpoint.is_symlink():
                mountpoint.unlink()
            elif mountpoint.exists():
                self.release_mountpoint(mountpoint)
                mountpoint.rmdir()
            mountpoint.symlink_to(self.image(vid))
            self._link_record(vid).write_text(str(mountpoint))
            return self.info(vid)  # type: ignore[return-value]
        device = (
            info.loop_devices[0]
            if info.loop_devices
            else run(["losetup", "--find", "--show", str(self.image(vid))]).stdout.strip()
        )
        if filesystem_type(device) is None:
            run(["losetup", "-d", device], check=False)
            raise ProviderError(
                f"volume {vid} holds no filesystem; refusing to mount (or format) it"
            )
        self.prepare_mountpoint(mountpoint)
        run(["mount", device, str(mountpoint)])
        return self.info(vid)  # type: ignore[return-value]

    def detach(self, vid: str) -> VolumeInfo | None:
        """Unmount volume `vid` everywhere and free its loop devices; idempotent."""
        info = self.info(vid)
        if info is None:
            return None
        if not self.use_loop:
            for point in info.mountpoints:
                if point.is_symlink():
                    point.unlink()
            self._link_record(vid).unlink(missing_ok=True)
            return self.info(vid)
        for point in info.mountpoints:
            run(["umount", str(point)])
        # A device something still holds open (a concurrent blkid, udev) is only
        # marked for autoclear by `losetup -d`; wait for it to go. `-d` is sent
        # once: repeating it could hit a device already reused for another file.
        for device in info.loop_devices:
            run(["losetup", "-d", device], check=False)
        deadline = time.monotonic() + self.release_timeout
        after = self.info(vid)
        while after is not None and after.loop_devices and time.monotonic() < deadline:
            time.sleep(0.1)
            after = self.info(vid)
        if after is not None and (after.mountpoints or after.loop_devices):
            raise ProviderError(
                f"volume {vid} is still busy {self.release_timeout:g} s after detach "
                f"(loop devices {', '.join(after.loop_devices)}); see `fuser -m` / `losetup -l`"
            )
        return after

    def exchange(self, a: str, b: str) -> None:
        """Exchange the images and metadata of detached volumes `a` and `b`."""
        for vid in (a, b):
            info = self.info(vid)
            if info is None:
                raise ProviderError(f"volume {vid} does not exist")
            if info.mountpoints or info.loop_devices:
                raise VolumeInUse(f"volume {vid} is attached; detach it before exchanging")
        for path in (self.image, self._meta):
            tmp = path(a).with_name(path(a).name + ".exchange")
            path(a).rename(tmp)
            path(b).rename(path(a))
            tmp.rename(path(b))

    def flush(self, vid: str) -> None:
        """Write the dirty data of mounted volume `vid` to its image (syncfs, one filesystem)."""
        info = self.info(vid)
        if info is None or not info.mountpoints:
            raise ProviderError(f"volume {vid} is not mounted; nothing to flush")
        run(["sync", "--file-system", str(info.mountpoints[0])])

    def snapshot(self, vid: str, name: str) -> Path:
        """Read-only btrfs snapshot `name` of mounted volume `vid`, inside the volume."""
        info = self.info(vid)
        if info is None or not info.mountpoints:
            raise ProviderError(f"volume {vid} is not mounted; attach it before a snapshot")
        if info.directory_mode or info.filesystem != "btrfs":
            raise ProviderError(f"volume {vid} ({info.filesystem}) has no snapshots; use btrfs")
        target = info.mountpoints[0] / SNAPSHOT_DIR / name
        target.parent.mkdir(exist_ok=True)
        if not target.exists():
            run(["btrfs", "subvolume", "snapshot", "-r", str(info.mountpoints[0]), str(target)])
        return target

    def delete_snapshot(self, vid: str, name: str) -> None:
        """Delete snapshot `name` of volume `vid`; a no-op when it is gone."""
        info = self.info(vid)
        if info is None or not info.mountpoints:
            return
        target = info.mountpoints[0] / SNAPSHOT_DIR / name
        if target.exists():
            run(["btrfs", "subvolume", "delete", str(target)])

    def delete(self, vid: str) -> None:
        """Detach and delete volume `vid` with its data."""
        self.detach(vid)
        image = self.image(vid)
        if image.is_dir():
            shutil.rmtree(image)
        else:
            image.unlink(missing_ok=True)
        self._meta(vid).unlink(missing_ok=True)
