"""The `memory` driver: instances, volumes and routes held in this process, for fast tests.

It keeps the rules of the contract the `local` driver keeps (a volume is
attached to one instance at most, attach refuses while it is elsewhere,
writers start only with the volume attached, detach stops them, destroying
an instance detaches its volume and never deletes it) and raises the same
errors, so the swap engine's state machine runs against it in milliseconds
instead of seconds of Docker.

The health check is the engine's own, over HTTP: each instance answers
through a loopback server standing in for its front proxy (`frontproxy.py`),
whose apps are declared with `ex_apps` and whose answers a test sets per
app (`ex_set_status`). Volume contents are real files in a directory under
the state directory (restic and restores read them through `volume_path`);
their state (attachment, label) lives here.

Test controls carry the `ex_` prefix: `ex_fail` and `ex_pause` (`faults.py`),
`ex_calls`, `ex_reboot()` (lose what a host reboot loses: attachments,
running writers, routes) and `ex_close()`. State is per object: a
"restarted worker" is a new engine and journal on the same provider object.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.providers.base import InstanceHandle, Provider, Route, VolumeHandle
from deploy.providers.memory.faults import Faults, PausePoint, faultable
from deploy.providers.memory.frontproxy import FrontProxy, MemoryApp
from deploy.providers.types import (
    SNAPSHOT_DIR,
    IgnitionError,
    InstanceNotFound,
    InstanceState,
    ProviderError,
    VolumeInUse,
    VolumeState,
)
from renderers.layout import RETRY_AFTER_SECONDS

__all__ = ["MemoryApp", "MemoryProvider", "PausePoint"]


@dataclass
class _Instance:
    id: str
    project: str
    name: str
    proxy: FrontProxy
    address: str  # what `dns_addresses` gives: a TEST-NET-1 address, one per instance
    state: InstanceState = InstanceState.PENDING


@dataclass
class _Volume:
    id: str
    label: str
    size_bytes: int
    filesystem: str
    attached_to: str | None = None  # an instance id, or the host path of `mount_on_host`
    on_host: bool = False
    snapshots: set[str] = field(default_factory=set)


class MemoryProvider(Provider):
    """Instances, volumes and routes in memory; a loopback HTTP server per instance."""

    name = "memory"

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        ex_apps: Iterable[MemoryApp] = (),
        ex_retry_after: int = RETRY_AFTER_SECONDS,
    ):
        self._own_dir = state_dir is None
        root = Path(tempfile.mkdtemp(prefix="swapyard-memory-") if state_dir is None else state_dir)
        self.state_dir = root.resolve()
        self.volumes_dir = self.state_dir / "volumes"
        self.volumes_dir.mkdir(parents=True, exist_ok=True)
        self.apps = tuple(ex_apps)
        self.retry_after = ex_retry_after
        self.faults = Faults()
        self._lock = threading.RLock()
        self._instances: dict[str, _Instance] = {}
        self._volumes: dict[str, _Volume] = {}
        self._routes: dict[str, tuple[str, tuple[str, int]]] = {}  # domain -> (id, endpoint)
        self._statuses: dict[str, int] = {}  # app -> status of instances created from now on
        self._created = 0

    # -- test controls -------------------------------------------------------
    def ex_fail(self, method: str, error: BaseException | None = None, *, times: int = 1) -> None:
        """Make the next `times` calls of `method` raise `error` (default a `ProviderError`)."""
        self.faults.fail(method, error, times)

    def ex_pause(self, method: str) -> PausePoint:
        """Hold the next call of `method` at its start until the returned point is released."""
        return self.faults.pause(method)

    @property
    def ex_calls(self) -> list[tuple[str, str]]:
        """The contract calls made so far: (method, the id or name it acted on)."""
        return self.faults.calls

    def ex_set_status(self, app: str, status: int, *, instance_id: str | None = None) -> None:
        """The HTTP status `app` answers: in `instance_id` now, or in instances created later."""
        if not 100 <= status <= 599:
            raise ProviderError(f"status {status} of app {app!r} is not an HTTP status")
        if self.apps and app not in {a.name for a in self.apps}:
            known = ", ".join(a.name for a in self.apps)
            raise ProviderError(f"app {app!r} is not declared in ex_apps (declared: {known})")
        with self._lock:
            if instance_id is None:
                self._statuses[app] = status
            else:
                self._instance(instance_id).proxy.statuses[app] = status

    def ex_reboot(self) -> None:
        """Lose what a host reboot loses: volume attachments, running writers, routes."""
        with self._lock:
            for volume in self._volumes.values():
                volume.attached_to, volume.on_host = None, False
            for inst in self._instances.values():
                inst.proxy.writers = False
            self._routes.clear()

    def ex_close(self) -> None:
        """Stop every instance's HTTP server; remove the state directory if it was made here."""
        with self._lock:
            proxies = [inst.proxy for inst in self._instances.values()]
            self._instances.clear()
        for proxy in proxies:
            proxy.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- instances ---------------------------------------------------------
    def _instance(self, instance_id: str) -> _Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise InstanceNotFound(f"instance {instance_id} does not exist on the memory provider")
        return inst

    def _handle(self, inst: _Instance) -> InstanceHandle:
        return InstanceHandle(
            id=inst.id,
            project=inst.project,
            name=inst.name,
            state=inst.state,
            endpoint=inst.proxy.endpoint,
            extra={
                "maintenance": inst.proxy.maintenance,
                "writers": inst.proxy.writers,
                "address": inst.address,
            },
        )

    @faultable
    def create_instance(
        self, project: str, name: str, ignition: bytes, *, shortid: str
    ) -> InstanceHandle:
        """Check the Ignition config and start the instance's front proxy; idempotent."""
        iid = self.instance_id(project, name, shortid)
        _check_ignition(iid, ignition)
        with self._lock:
            if iid not in self._instances:
                proxy = FrontProxy(
                    iid,
                    self.apps,
                    dict(self._statuses),
                    self.retry_after,
                    self._lock,
                    lambda: self._volume_dir(iid),
                )
                self._created += 1
                address = f"192.0.2.{self._created % 254 + 1}"  # TEST-NET-1: never routed
                self._instances[iid] = _Instance(iid, project, name, proxy, address)
            return self._handle(self._instances[iid])

    @faultable
    def wait_until_ready(self, instance: InstanceHandle, timeout: float = 120) -> InstanceHandle:
        """Ready at once (its server already listens); `InstanceNotFound` when it is gone."""
        with self._lock:
            inst = self._instance(instance.id)
            inst.state = InstanceState.RUNNING
            return self._handle(inst)

    @faultable
    def destroy_instance(self, instance: InstanceHandle) -> None:
        """Detach its volume, stop its server and forget it; a no-op when it is gone."""
        with self._lock:
            inst = self._instances.pop(instance.id, None)
            for volume in self._volumes.values():
                if volume.attached_to == instance.id:
                    volume.attached_to = None
        if inst is not None:
            inst.proxy.stop()

    @faultable
    def get_instance(self, instance_id: str) -> InstanceHandle | None:
        """The instance with this id, or None."""
        with self._lock:
            inst = self._instances.get(instance_id)
            return self._handle(inst) if inst else None

    @faultable
    def list_instances(self) -> list[InstanceHandle]:
        """Every instance, in the order they were created."""
        with self._lock:
            return [self._handle(i) for i in self._instances.values()]

    # -- inside an instance ------------------------------------------------
    @faultable
    def set_maintenance(self, instance: InstanceHandle, on: bool) -> None:
        """Turn the front proxy's maintenance page on or off."""
        with self._lock:
            self._instance(instance.id).proxy.maintenance = on

    @faultable
    def set_health_pass(self, instance: InstanceHandle, token: str | None) -> None:
        """Admit requests carrying `token` past the page (None withdraws the pass)."""
        with self._lock:
            self._instance(instance.id).proxy.health_pass = token

    @faultable
    def stop_writers(self, instance: InstanceHandle) -> None:
        """Stop the writer apps; idempotent."""
        with self._lock:
            self._instance(instance.id).proxy.writers = False

    @faultable
    def start_writers(self, instance: InstanceHandle) -> None:
        """Start the writer apps; refuses while no volume is attached to the instance."""
        with self._lock:
            inst = self._instance(instance.id)
            if self._attached(inst.id) is None:
                raise ProviderError(f"instance {inst.id} has no volume attached; attach one first")
            inst.proxy.writers = True

    # -- volumes -----------------------------------------------------------
    def _volume(self, volume_id: str) -> _Volume:
        volume = self._volumes.get(volume_id)
        if volume is None:
            raise ProviderError(f"volume {volume_id} does not exist on the memory provider")
        return volume

    def _attached(self, instance_id: str) -> _Volume | None:
        return next((v for v in self._volumes.values() if v.attached_to == instance_id), None)

    def _volume_dir(self, instance_id: str) -> Path | None:
        with self._lock:
            volume = self._attached(instance_id)
            return self._data(volume.id) if volume else None

    def _data(self, volume_id: str) -> Path:
        return self.volumes_dir / volume_id

    def _volume_handle(self, volume: _Volume) -> VolumeHandle:
        return VolumeHandle(
            id=volume.id,
            label=volume.label,
            size_bytes=volume.size_bytes,
            filesystem=volume.filesystem,
            state=VolumeState.ATTACHED if volume.attached_to else VolumeState.AVAILABLE,
            attached_to=volume.attached_to,
            extra={"data": str(self._data(volume.id))},
        )

    @faultable
    def create_volume(
        self,
        volume_id: str,
        size_bytes: int,
        label: str,
        filesystem: str = "ext4",
        *,
        project: str | None = None,
    ) -> VolumeHandle:
        """Create an empty volume; an existing one is returned as it is (never formatted again)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", volume_id):
            raise ProviderError(f"volume id {volume_id!r}: letters, digits, '_', '.' and '-' only")
        with self._lock:
            if volume_id not in self._volumes:
                self._data(volume_id).mkdir(parents=True, exist_ok=True)
                self._volumes[volume_id] = _Volume(volume_id, label, size_bytes, filesystem)
            return self._volume_handle(self._volumes[volume_id])

    @faultable
    def get_volume(self, volume_id: str) -> VolumeHandle | None:
        """The volume with this id, or None."""
        with self._lock:
            volume = self._volumes.get(volume_id)
            return self._volume_handle(volume) if volume else None

    @faultable
    def list_volumes(self) -> list[VolumeHandle]:
        """Every volume."""
        with self._lock:
            return [self._volume_handle(v) for v in self._volumes.values()]

    @faultable
    def attach_volume(self, volume: VolumeHandle, instance: InstanceHandle) -> VolumeHandle:
        """Attach to the instance; idempotent for it, `VolumeInUse` when held elsewhere."""
        with self._lock:
            state, inst = self._volume(volume.id), self._instance(instance.id)
            if state.attached_to not in (None, inst.id):
                raise VolumeInUse(
                    f"volume {state.id} is attached to {state.attached_to}; "
                    f"detach it before attaching it to {inst.id}"
                )
            other = self._attached(inst.id)
            if other is not None and other.id != state.id:
                raise VolumeInUse(f"instance {inst.id} already has volume {other.id} attached")
            state.attached_to = inst.id
            return self._volume_handle(state)

    @faultable
    def detach_volume(self, volume: VolumeHandle) -> VolumeHandle:
        """Detach from whatever holds it, stopping the holder's writers first; idempotent."""
        with self._lock:
            state = self._volume(volume.id)
            holder = self._instances.get(state.attached_to or "")
            if holder is not None:
                holder.proxy.writers = False
            state.attached_to, state.on_host = None, False
            return self._volume_handle(state)

    @faultable
    def destroy_volume(self, volume: VolumeHandle) -> None:
        """Detach and delete the volume with its data; a no-op when it is gone."""
        with self._lock:
            state = self._volumes.pop(volume.id, None)
            holder = self._instances.get(state.attached_to or "") if state else None
            if holder is not None:
                holder.proxy.writers = False
        shutil.rmtree(self._data(volume.id), ignore_errors=True)

    # -- backups -----------------------------------------------------------
    @faultable
    def volume_path(self, volume: VolumeHandle) -> Path:
        """The directory holding the attached volume's files."""
        return self._attached_data(volume.id)

    def _attached_data(self, volume_id: str) -> Path:
        with self._lock:
            if self._volume(volume_id).attached_to is None:
                raise ProviderError(f"volume {volume_id} is attached nowhere; nothing to read")
        return self._data(volume_id)

    @faultable
    def mount_on_host(self, volume: VolumeHandle) -> Path:
        """Hold the detached volume for the host (`VolumeInUse` when an instance has it)."""
        with self._lock:
            state = self._volume(volume.id)
            if state.attached_to is not None and not state.on_host:
                raise VolumeInUse(f"volume {state.id} is attached to {state.attached_to}")
            state.attached_to, state.on_host = str(self._data(state.id)), True
        return self._data(volume.id)

    @faultable
    def exchange_volume_data(self, a: VolumeHandle, b: VolumeHandle) -> None:
        """Swap the two volumes' directories; both must be detached (`VolumeInUse`)."""
        with self._lock:
            for state in (self._volume(a.id), self._volume(b.id)):
                if state.attached_to is not None:
                    raise VolumeInUse(f"volume {state.id} is attached to {state.attached_to}")
            parked = self.volumes_dir / f".exchange-{a.id}"
            self._data(a.id).rename(parked)
            self._data(b.id).rename(self._data(a.id))
            parked.rename(self._data(b.id))

    @faultable
    def can_snapshot(self, volume: VolumeHandle) -> bool:
        """True while the volume is attached (a snapshot is a copy of its directory)."""
        with self._lock:
            state = self._volumes.get(volume.id)
            return bool(state and state.attached_to)

    @faultable
    def flush_volume(self, volume: VolumeHandle) -> None:
        """Nothing to flush: files are written through."""
        with self._lock:
            self._volume(volume.id)

    @faultable
    def snapshot_volume(self, volume: VolumeHandle, name: str) -> Path:
        """Copy the attached volume's files to `.swapyard-snapshots/<name>` in it."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ProviderError(f"snapshot name {name!r}: letters, digits, '_', '.' and '-' only")
        source = self._attached_data(volume.id)
        target = source / SNAPSHOT_DIR / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(SNAPSHOT_DIR))
        with self._lock:
            self._volume(volume.id).snapshots.add(name)
        return target

    @faultable
    def delete_volume_snapshot(self, volume: VolumeHandle, name: str) -> None:
        """Delete a snapshot taken by `snapshot_volume`; a no-op when it is gone."""
        with self._lock:
            state = self._volumes.get(volume.id)
            if state is None or name not in state.snapshots:
                return
            state.snapshots.discard(name)
        shutil.rmtree(self._data(volume.id) / SNAPSHOT_DIR / name, ignore_errors=True)

    # -- traffic -----------------------------------------------------------
    @faultable
    def switch_traffic(self, route: Route) -> None:
        """Point every domain of the route at the instance, all at once."""
        if not route.domains:
            raise ProviderError(f"a route to {route.instance_id} names no domain")
        with self._lock:
            for domain in route.domains:
                self._routes[domain] = (route.instance_id, route.endpoint)

    @faultable
    def remove_traffic(self, domains: tuple[str, ...]) -> None:
        """Stop routing `domains`; unknown domains are ignored."""
        with self._lock:
            for domain in domains:
                self._routes.pop(domain, None)

    @faultable
    def routes(self) -> list[Route]:
        """One route per (instance, endpoint), its domains in the order they were switched."""
        with self._lock:
            grouped: dict[tuple[str, tuple[str, int]], list[str]] = {}
            for domain, target in self._routes.items():
                grouped.setdefault(target, []).append(domain)
        return [Route(tuple(d), iid, endpoint) for (iid, endpoint), d in grouped.items()]

    def dns_addresses(self, instance: InstanceHandle) -> tuple[str, ...]:
        """The instance's own TEST-NET-1 address (a new one per instance, as a cloud's are)."""
        address = instance.extra.get("address") if instance.extra else None
        return (str(address),) if address else ()


def _check_ignition(instance_id: str, ignition: bytes) -> None:
    """Refuse what is not an Ignition 3.x config, as a real machine would."""
    try:
        config = json.loads(ignition)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IgnitionError(
            f"instance {instance_id}: the Ignition config is not JSON: {exc}"
        ) from None
    header = config.get("ignition") if isinstance(config, dict) else None
    version = header.get("version") if isinstance(header, dict) else None
    if not (isinstance(version, str) and version.startswith("3.")):
        raise IgnitionError(
            f"instance {instance_id}: ignition.version is {version!r}; only Ignition 3.x is read"
        )
