"""The `local` provider: instances are compose projects on the local Docker engine.

The pieces live beside it: `projects.py` (an instance's directory and
compose project: materialization and inspection) and `volumes.py`
(loop-mounted images); the edge Caddy and its switchboard are the drivers'
toolkit in `deploy/providers/edge/`. This class is the instance lifecycle
that puts them together behind the `Provider` interface. Writers (label
`org.swapyard.writer=true`) are created but only started once the volume is
attached.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from deploy.providers.base import InstanceHandle, Option, Provider, VolumeHandle
from deploy.providers.edge.proxy import Edge
from deploy.providers.edge.traffic import EDGE_OPTIONS, EdgeTraffic, parse_addresses
from deploy.providers.local.compose import default_compose, needs_volume
from deploy.providers.local.projects import OPT, ComposeProjects
from deploy.providers.local.volumes import LoopVolumes, VolumeInfo
from deploy.providers.types import InstanceNotFound, InstanceNotReady, ProviderError, VolumeState
from renderers.layout import HEALTH_PASS_PREFIX

__all__ = ["OPT", "LocalProvider"]


class LocalProvider(EdgeTraffic, Provider):
    """Instances as compose projects, volumes as loop-mounted images, an edge Caddy."""

    name = "local"
    options = (
        *EDGE_OPTIONS,
        Option(
            "use_loop",
            bool | None,
            None,
            "Data volumes as loop-mounted images (true) or plain directories (false); "
            "default: loop devices when this host can mount them.",
        ),
        Option(
            "stop_timeout",
            int,
            10,
            "Seconds a container is given to stop before it is killed.",
        ),
    )

    def __init__(
        self,
        state_dir: str | Path,
        *,
        ex_edge_listen: tuple[str, ...] = ("127.0.0.1:8000",),
        ex_edge_admin: str = "127.0.0.1:2119",
        ex_edge_addresses: tuple[str, ...] = (),
        ex_use_loop: bool | None = None,
        ex_compose: str | None = None,
        ex_stop_timeout: int = 10,
        ex_docker: Any = None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.instances_dir = self.state_dir / "instances"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.volumes = LoopVolumes(self.state_dir, ex_use_loop)
        self.edge = Edge(self.state_dir, ex_edge_listen, ex_edge_admin)
        self.edge_addresses = parse_addresses(ex_edge_addresses, "EDGE_ADDRESSES")
        self.projects = ComposeProjects(
            self.instances_dir, ex_compose or default_compose(), ex_docker
        )
        self.stop_timeout = ex_stop_timeout

    # -- plumbing ----------------------------------------------------------
    @property
    def docker(self) -> Any:
        """The Docker SDK client, created on first use."""
        return self.projects.docker

    def _dir(self, iid: str) -> Path:
        return self.projects.dir(iid)

    def _require(self, instance: InstanceHandle) -> Path:
        if not self._dir(instance.id).exists():
            raise InstanceNotFound(f"instance {instance.id} does not exist on the local provider")
        return self._dir(instance.id)

    # -- instances ---------------------------------------------------------
    def create_instance(
        self, project: str, name: str, ignition_config: bytes, *, shortid: str
    ) -> InstanceHandle:
        """Materialize the Ignition config and create its compose project; start non-writers.

        Idempotent: calling again with the same `shortid` re-runs the
        (idempotent) compose steps on the same project.
        """
        iid = self.instance_id(project, name, shortid)  # the compose project name
        d = self._dir(iid)
        d.mkdir(parents=True, exist_ok=True)
        self.volumes.prepare_mountpoint(d / "data")
        self.projects.materialize(iid, project, name, shortid, ignition_config)
        self.projects.compose(iid, "up", "--no-start", "--pull", "never")
        others = self.projects.services(iid, writers=False)
        if others:
            self.projects.compose(iid, "up", "-d", "--no-recreate", "--pull", "never", *others)
        handle = self.projects.handle(iid)
        assert handle is not None
        return handle

    def wait_until_ready(self, instance: InstanceHandle, timeout: float = 120) -> InstanceHandle:
        """Wait until every non-writer runs (healthy when it has a check) and Caddy accepts."""
        deadline = time.monotonic() + timeout
        problem: str | None = "not created"
        while time.monotonic() < deadline:
            problem = self.projects.not_ready(instance.id)
            if problem is None:
                handle = self.projects.handle(instance.id)
                assert handle is not None
                return handle
            if problem.startswith("exited"):  # it will not get better
                break
            time.sleep(0.2)
        raise InstanceNotReady(
            f"instance {instance.id} is not ready after {timeout:g} s: {problem}"
        )

    def destroy_instance(self, instance: InstanceHandle) -> None:
        """Remove the compose project and the instance's directory; detach its volume first."""
        iid = instance.id
        d = self._dir(iid)
        if self.projects.has_files(iid):
            down = ("down", "--remove-orphans", "--volumes", "--timeout", str(self.stop_timeout))
            self.projects.compose(iid, *down)
        for c in self.projects.containers(iid):  # a half-created project without its files
            c.remove(force=True)
        for vid in self.volumes.ids():
            info = self.volumes.info(vid)
            if info and any(self._owner(p) == iid for p in info.mountpoints):
                self.volumes.detach(vid)
        mounts = Path("/proc/self/mounts").read_text()
        if f" {d}/" in mounts or f" {d} " in mounts:
            raise ProviderError(f"{d} still has something mounted; not deleting it")
        self.volumes.release_mountpoint(d / "data")
        shutil.rmtree(d, ignore_errors=True)

    def get_instance(self, instance_id: str) -> InstanceHandle | None:
        """Return the instance with this id (from its directory or its containers), or None."""
        return self.projects.handle(instance_id)

    def list_instances(self) -> list[InstanceHandle]:
        """Every instance of this state directory: its directories and its compose projects.

        A project counts when its working directory lies in this state
        directory, so a directory lost with its containers still running is
        found, and other state directories on the same engine are not.
        """
        handles = (self.projects.handle(i) for i in self.projects.ids())
        return [h for h in handles if h is not None]

    # -- inside an instance ------------------------------------------------
    def set_maintenance(self, instance: InstanceHandle, on: bool) -> None:
        """Create or remove `maintenance/on`; the instance's Caddy reacts without a reload."""
        self._require(instance)
        flag = self.projects.root(instance.id) / "maintenance" / "on"
        if on:
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def set_health_pass(self, instance: InstanceHandle, token: str | None) -> None:
        """Create `maintenance/health-<token>` (or remove every such file when None)."""
        self._require(instance)
        folder = self.projects.root(instance.id) / "maintenance"
        for old in folder.glob(f"{HEALTH_PASS_PREFIX}*"):
            old.unlink(missing_ok=True)
        if token is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{HEALTH_PASS_PREFIX}{token}").touch()

    def stop_writers(self, instance: InstanceHandle) -> None:
        """Stop the writer services (compose stop, graceful within the stop timeout)."""
        self._require(instance)
        writers = self.projects.services(instance.id, writers=True)
        if writers:
            stop = ("stop", "--timeout", str(self.stop_timeout))
            self.projects.compose(instance.id, *stop, *writers)

    def start_writers(self, instance: InstanceHandle) -> None:
        """Start the writer services; refuses while no volume is attached to the instance."""
        self._require(instance)
        if self._attached_volume(instance.id) is None:
            raise ProviderError(f"instance {instance.id} has no volume attached; attach one first")
        writers = self.projects.services(instance.id, writers=True)
        if writers:
            up = ("up", "-d", "--no-recreate", "--pull", "never")
            self.projects.compose(instance.id, *up, *writers)

    # -- volumes -----------------------------------------------------------
    def _owner(self, mountpoint: Path) -> str | None:
        if mountpoint.parent.parent == self.instances_dir and mountpoint.name == "data":
            return mountpoint.parent.name
        return None

    def _attached_volume(self, iid: str) -> str | None:
        for vid in self.volumes.ids():
            info = self.volumes.info(vid)
            if info and any(self._owner(p) == iid for p in info.mountpoints):
                return vid
        return None

    def _volume(self, info: VolumeInfo) -> VolumeHandle:
        owners = [self._owner(p) or str(p) for p in info.mountpoints]
        return VolumeHandle(
            id=info.id,
            label=info.label,
            size_bytes=info.size_bytes,
            filesystem=info.filesystem,
            state=VolumeState.ATTACHED if owners else VolumeState.AVAILABLE,
            attached_to=owners[0] if owners else None,
            extra={
                "mountpoints": [str(p) for p in info.mountpoints],
                "loop_devices": list(info.loop_devices),
                "image": str(self.volumes.image(info.id)),
                "directory_mode": info.directory_mode,
            },
        )

    def create_volume(
        self,
        volume_id: str,
        size_bytes: int,
        label: str,
        filesystem: str = "ext4",
        *,
        project: str | None = None,
    ) -> VolumeHandle:
        """Create a sparse image formatted with `label`; never formats an existing filesystem."""
        return self._volume(self.volumes.create(volume_id, size_bytes, label, filesystem))

    def get_volume(self, volume_id: str) -> VolumeHandle | None:
        """Return the volume, its attachment read from the kernel, or None."""
        info = self.volumes.info(volume_id)
        return self._volume(info) if info else None

    def list_volumes(self) -> list[VolumeHandle]:
        """Every volume in the state directory."""
        infos = (self.volumes.info(v) for v in self.volumes.ids())
        return [self._volume(i) for i in infos if i is not None]

    def attach_volume(self, volume: VolumeHandle, instance: InstanceHandle) -> VolumeHandle:
        """Loop-mount the volume at the instance's data directory (`VolumeInUse` if elsewhere)."""
        d = self._require(instance)
        return self._volume(self.volumes.attach(volume.id, d / "data"))

    def detach_volume(self, volume: VolumeHandle) -> VolumeHandle:
        """Stop containers still using the mount, unmount, free the loop device; idempotent."""
        info = self.volumes.info(volume.id)
        if info is None:
            raise ProviderError(f"volume {volume.id} does not exist")
        for point in info.mountpoints:
            owner = self._owner(point)
            if owner:
                self._stop_users(owner, point)
        after = self.volumes.detach(volume.id)
        assert after is not None
        return self._volume(after)

    def _stop_users(self, iid: str, point: Path) -> None:
        for c in self.projects.containers(iid):
            if c.status != "running":
                continue
            if needs_volume(c, point):
                c.stop(timeout=self.stop_timeout)

    def destroy_volume(self, volume: VolumeHandle) -> None:
        """Detach and delete the volume with its data (only on an explicit request)."""
        self.volumes.delete(volume.id)

    # -- backups -----------------------------------------------------------
    def volume_path(self, volume: VolumeHandle) -> Path:
        """The mount point (or, in directory mode, the directory) of the attached volume."""
        info = self.volumes.info(volume.id)
        if info is None or not info.mountpoints:
            raise ProviderError(f"volume {volume.id} is attached nowhere; nothing to read")
        return self.volumes.image(volume.id) if info.directory_mode else info.mountpoints[0]

    def mount_on_host(self, volume: VolumeHandle) -> Path:
        """Loop-mount the volume at `<state_dir>/mounts/<id>` (`VolumeInUse` if attached)."""
        point = self.state_dir / "mounts" / volume.id
        point.parent.mkdir(parents=True, exist_ok=True)
        self.volumes.attach(volume.id, point)
        return self.volume_path(volume)

    def exchange_volume_data(self, a: VolumeHandle, b: VolumeHandle) -> None:
        """Rename the two images (and their metadata) into each other's place."""
        self.volumes.exchange(a.id, b.id)

    def can_snapshot(self, volume: VolumeHandle) -> bool:
        """True for a loop-mounted btrfs volume."""
        info = self.volumes.info(volume.id)
        return bool(
            info and info.mountpoints and info.filesystem == "btrfs" and not info.directory_mode
        )

    def flush_volume(self, volume: VolumeHandle) -> None:
        """`syncfs` of the volume's mounted filesystem (`sync -f`), not a global sync."""
        self.volumes.flush(volume.id)

    def snapshot_volume(self, volume: VolumeHandle, name: str) -> Path:
        """A read-only btrfs snapshot under `.swapyard-snapshots/` of the volume itself."""
        return self.volumes.snapshot(volume.id, name)

    def delete_volume_snapshot(self, volume: VolumeHandle, name: str) -> None:
        """Delete a snapshot taken by `snapshot_volume`; a no-op when it is gone."""
        self.volumes.delete_snapshot(volume.id, name)
