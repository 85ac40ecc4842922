"""The `local` provider: instances are compose projects on the local Docker engine.

An instance `sy-<project>-<name>-<shortid>` lives in
`<state_dir>/instances/<id>/`: `rootfs/` holds what its Ignition config
writes (so `/opt/swapyard` is `rootfs/opt/swapyard`, exported to compose as
`SWAPYARD_ROOT`), `data/` is where its volume is mounted (`SWAPYARD_DATA`).
A compose override publishes the instance's Caddy on an ephemeral loopback
port instead of 80/443. Writers (label `org.swapyard.writer=true`) are
created but only started once the volume is attached. Actions go through
the docker-compose binary; inspection through the Docker SDK.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from deploy.base import InstanceHandle, Provider, Route, VolumeHandle
from deploy.local import compose, ignition
from deploy.local.commands import run
from deploy.local.compose import (
    FRONT,
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    default_compose,
    deferred_services,
    needs_volume,
    service_of,
)
from deploy.local.edge import LocalEdge
from deploy.local.volumes import LoopVolumes, VolumeInfo
from deploy.types import (
    IgnitionError,
    InstanceNotFound,
    InstanceNotReady,
    InstanceState,
    ProviderError,
    VolumeState,
)

OPT = "opt/swapyard"


class LocalProvider(Provider):
    """Instances as compose projects, volumes as loop-mounted images, an edge Caddy."""

    name = "local"

    def __init__(
        self,
        state_dir: str | Path,
        *,
        ex_edge_listen: tuple[str, ...] = ("127.0.0.1:8080",),
        ex_edge_admin: str = "127.0.0.1:2119",
        ex_use_loop: bool | None = None,
        ex_compose: str | None = None,
        ex_stop_timeout: int = 10,
        ex_docker: Any = None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.instances_dir = self.state_dir / "instances"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.volumes = LoopVolumes(self.state_dir, ex_use_loop)
        self.edge = LocalEdge(self.state_dir, ex_edge_listen, ex_edge_admin)
        self.compose_bin = ex_compose or default_compose()
        self.stop_timeout = ex_stop_timeout
        self._docker = ex_docker

    # -- plumbing ----------------------------------------------------------
    @property
    def docker(self) -> Any:
        """The Docker SDK client, created on first use."""
        if self._docker is None:
            import docker

            self._docker = docker.from_env()
        return self._docker

    def _dir(self, iid: str) -> Path:
        return self.instances_dir / iid

    def _root(self, iid: str) -> Path:
        return self._dir(iid) / "rootfs" / OPT

    def _compose(self, iid: str, *args: str, timeout: float = 300) -> str:
        root = self._root(iid)
        argv = [
            self.compose_bin,
            "-p",
            iid,
            "--project-directory",
            str(root),
            "-f",
            str(root / "compose.yaml"),
            "-f",
            str(self._dir(iid) / "override.yaml"),
            *args,
        ]
        env = {"SWAPYARD_ROOT": str(root), "SWAPYARD_DATA": str(self._dir(iid) / "data")}
        return run(argv, env=env, timeout=timeout).stdout

    def _containers(self, iid: str) -> list[Any]:
        return self.docker.containers.list(
            all=True, ignore_removed=True, filters={"label": f"{PROJECT_LABEL}={iid}"}
        )

    def _services(self, iid: str, writers: bool) -> list[str]:
        """Services started after the volume (`writers=True`: see deploy.local.compose), or not."""
        containers = self._containers(iid)
        deferred = deferred_services(containers, self._dir(iid) / "data")
        names = {service_of(c) for c in containers} - {""}
        return sorted(deferred if writers else names - deferred)

    def _endpoint(self, iid: str) -> tuple[str, int] | None:
        for c in self._containers(iid):
            if c.labels.get(SERVICE_LABEL) != FRONT:
                continue
            c.reload()
            bindings = (c.attrs["NetworkSettings"].get("Ports") or {}).get("80/tcp") or []
            for b in bindings:
                if b.get("HostPort"):
                    return ("127.0.0.1", int(b["HostPort"]))
        return None

    def _handle(self, iid: str) -> InstanceHandle | None:
        meta_path = self._dir(iid) / "meta.json"
        containers = self._containers(iid)
        if not meta_path.exists() and not containers:
            return None
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        front = [c for c in containers if c.labels.get(SERVICE_LABEL) == FRONT]
        if not containers:
            state = InstanceState.PENDING
        elif front and front[0].status == "running":
            state = InstanceState.RUNNING
        else:
            state = InstanceState.STOPPED
        return InstanceHandle(
            id=iid,
            project=meta.get("project", ""),
            name=meta.get("name", ""),
            state=state,
            endpoint=self._endpoint(iid) if front else None,
            extra={
                "state_dir": str(self._dir(iid)),
                "root": str(self._root(iid)),
                "data": str(self._dir(iid) / "data"),
                "shortid": meta.get("shortid"),
            },
        )

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
        ignition.materialize(ignition_config, d / "rootfs")
        compose_file = self._root(iid) / "compose.yaml"
        if not compose_file.exists():
            raise IgnitionError(f"the Ignition config writes no /{OPT}/compose.yaml")
        services = (yaml.safe_load(compose_file.read_text()) or {}).get("services", {})
        if FRONT not in services:
            raise IgnitionError(f"/{OPT}/compose.yaml has no {FRONT!r} service (the front proxy)")
        (d / "override.yaml").write_text(compose.override(services, d / "front-data"))
        meta = {"project": project, "name": name, "shortid": shortid}
        (d / "meta.json").write_text(json.dumps(meta))
        self._compose(iid, "up", "--no-start", "--pull", "never")
        others = self._services(iid, writers=False)
        if others:
            self._compose(iid, "up", "-d", "--no-recreate", "--pull", "never", *others)
        handle = self._handle(iid)
        assert handle is not None
        return handle

    def wait_until_ready(self, instance: InstanceHandle, timeout: float = 120) -> InstanceHandle:
        """Wait until every non-writer runs (healthy when it has a check) and Caddy accepts."""
        deadline = time.monotonic() + timeout
        problem: str | None = "not created"
        while time.monotonic() < deadline:
            problem = self._not_ready(instance.id)
            if problem is None:
                handle = self._handle(instance.id)
                assert handle is not None
                return handle
            if problem.startswith("exited"):  # it will not get better
                break
            time.sleep(0.2)
        raise InstanceNotReady(
            f"instance {instance.id} is not ready after {timeout:g} s: {problem}"
        )

    def _not_ready(self, iid: str) -> str | None:
        containers = self._containers(iid)
        if not containers:
            return "no containers"
        deferred = deferred_services(containers, self._dir(iid) / "data")
        for c in containers:
            if service_of(c) in deferred:
                continue
            service = c.labels.get(SERVICE_LABEL)
            looping = c.status == "restarting" and c.attrs.get("RestartCount", 0) >= 3
            if c.status == "exited" or looping:
                tail = c.logs(tail=5).decode(errors="replace").strip()
                return f"exited: service {service} {c.status}: {tail or 'no output'}"
            if c.status != "running":
                return f"service {service} is {c.status}"
            health = (c.attrs.get("State", {}).get("Health") or {}).get("Status")
            if health not in (None, "healthy"):
                return f"service {service} is {health}"
        endpoint = self._endpoint(iid)
        if endpoint is None:
            return f"service {FRONT} publishes no port"
        try:  # an HTTP answer, not a TCP accept: docker-proxy accepts before Caddy listens
            requests.get(f"http://{endpoint[0]}:{endpoint[1]}/", timeout=2)
        except requests.RequestException as exc:
            return f"service {FRONT} does not answer HTTP on port {endpoint[1]}: {exc}"
        return None

    def destroy_instance(self, instance: InstanceHandle) -> None:
        """Remove the compose project and the instance's directory; detach its volume first."""
        iid = instance.id
        d = self._dir(iid)
        if (d / "override.yaml").exists() and (self._root(iid) / "compose.yaml").exists():
            self._compose(
                iid, "down", "--remove-orphans", "--volumes", "--timeout", str(self.stop_timeout)
            )
        for c in self._containers(iid):  # a half-created project without its files
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
        return self._handle(instance_id)

    def list_instances(self) -> list[InstanceHandle]:
        """Every instance of this state directory: its directories and its compose projects.

        A project counts when its working directory lies in this state
        directory, so a directory lost with its containers still running is
        found, and other state directories on the same engine are not.
        """
        ids = {p.name for p in self.instances_dir.iterdir() if p.is_dir()}
        for c in self.docker.containers.list(
            all=True, ignore_removed=True, filters={"label": PROJECT_LABEL}
        ):
            workdir = c.labels.get(WORKDIR_LABEL, "")
            if workdir.startswith(f"{self.instances_dir}/"):
                ids.add(c.labels.get(PROJECT_LABEL, ""))
        return [h for h in (self._handle(i) for i in sorted(ids)) if h is not None]

    # -- inside an instance ------------------------------------------------
    def set_maintenance(self, instance: InstanceHandle, on: bool) -> None:
        """Create or remove `maintenance/on`; the instance's Caddy reacts without a reload."""
        self._require(instance)
        flag = self._root(instance.id) / "maintenance" / "on"
        if on:
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def stop_writers(self, instance: InstanceHandle) -> None:
        """Stop the writer services (compose stop, graceful within the stop timeout)."""
        self._require(instance)
        writers = self._services(instance.id, writers=True)
        if writers:
            self._compose(instance.id, "stop", "--timeout", str(self.stop_timeout), *writers)

    def start_writers(self, instance: InstanceHandle) -> None:
        """Start the writer services; refuses while no volume is attached to the instance."""
        self._require(instance)
        if self._attached_volume(instance.id) is None:
            raise ProviderError(f"instance {instance.id} has no volume attached; attach one first")
        writers = self._services(instance.id, writers=True)
        if writers:
            self._compose(instance.id, "up", "-d", "--no-recreate", "--pull", "never", *writers)

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
        self, volume_id: str, size_bytes: int, label: str, filesystem: str = "ext4"
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
        for c in self._containers(iid):
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

    def snapshot_volume(self, volume: VolumeHandle, name: str) -> Path:
        """A read-only btrfs snapshot under `.swapyard-snapshots/` of the volume itself."""
        return self.volumes.snapshot(volume.id, name)

    def delete_volume_snapshot(self, volume: VolumeHandle, name: str) -> None:
        """Delete a snapshot taken by `snapshot_volume`; a no-op when it is gone."""
        self.volumes.delete_snapshot(volume.id, name)

    # -- traffic -----------------------------------------------------------
    def switch_traffic(self, route: Route) -> None:
        """Point the edge's routes for `route.domains` at the instance (atomic config load)."""
        self.edge.switch(route)

    def remove_traffic(self, domains: tuple[str, ...]) -> None:
        """Drop `domains` from the edge."""
        self.edge.remove(domains)

    def routes(self) -> list[Route]:
        """The edge's current routes."""
        return self.edge.routes()

    def ex_stop_edge(self) -> None:
        """Stop the edge Caddy process (tests, service shutdown)."""
        self.edge.stop()
