"""Value objects and the provider base class (libcloud's `base.py`).

A provider creates and destroys instances from an Ignition config, creates,
attaches and detaches data volumes, toggles an instance's maintenance mode
and writer services, and switches traffic. The swap engine (`deploy.swap.engine`)
uses only this interface. A method a driver lacks raises
`NotImplementedError("<method> not implemented for this driver")`; options
only one driver understands carry an `ex_` prefix, and driver leftovers go in
a handle's `extra` dict.

A driver declares those options in `Provider.options` (name, type, default,
help), the way pyinfra's connectors declare their data: whoever builds the
driver (the service's settings) reads the declaration to accept, check,
convert and document them, then passes each as the `ex_<name>` keyword of the
constructor (`option_arguments`). So a new driver brings its own settings and
nothing outside its folder needs to know them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deploy.providers.runner import LocalRunner, VolumeRunner
from deploy.providers.types import InstanceState, VolumeState


@dataclass(frozen=True)
class InstanceHandle:
    """One instance as a provider knows it; `id` is stable and unique per provider."""

    id: str
    project: str
    name: str
    state: InstanceState = InstanceState.UNKNOWN
    endpoint: tuple[str, int] | None = None  # where its front proxy answers HTTP
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeHandle:
    """A data volume; `attached_to` is the id of the instance it is attached to."""

    id: str
    label: str
    size_bytes: int
    filesystem: str = "ext4"
    state: VolumeState = VolumeState.AVAILABLE
    attached_to: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """Traffic for `domains` goes to the front proxy of `instance_id` at `endpoint`."""

    domains: tuple[str, ...]
    instance_id: str
    endpoint: tuple[str, int]


@dataclass(frozen=True)
class Option:
    """One option a driver takes: the service setting `name` (upper-cased), given as `ex_<name>`.

    `type` is what the value must be once read: `bool`, `int`, `float`, `str`,
    `tuple[str, ...]` (a list, or one comma-separated string), or one of those
    `| None`. `default` is used when the setting is not given.
    """

    name: str
    type: Any
    default: Any
    help: str


def option_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """A driver's constructor keywords for its option values (`edge_admin` -> `ex_edge_admin`)."""
    return {f"ex_{name}": value for name, value in values.items()}


def _missing(method: str) -> NotImplementedError:
    return NotImplementedError(f"{method} not implemented for this driver")


class Provider:
    """Base class of every provider driver; see the module docstring for the contract."""

    name: ClassVar[str] = "base"
    options: ClassVar[tuple[Option, ...]] = ()  # what this driver takes; see `Option`

    # -- instances ---------------------------------------------------------
    def instance_id(self, project: str, name: str, shortid: str) -> str:
        """The id `create_instance` will give this instance (journaled before creating it)."""
        raw = f"sy-{project}-{name}-{shortid}".lower()
        return re.sub(r"[^a-z0-9_-]", "-", raw)

    def create_instance(
        self, project: str, name: str, ignition: bytes, *, shortid: str
    ) -> InstanceHandle:
        """Create an instance from an Ignition config; idempotent for the same `shortid`.

        The caller picks `shortid` (and journals it) before calling, so a
        retry after a crash finds the instance it already created.
        """
        raise _missing("create_instance")

    def wait_until_ready(self, instance: InstanceHandle, timeout: float = 120) -> InstanceHandle:
        """Block until the instance is ready (non-writers running, front proxy answering).

        Writers are not started: they wait for the data volume.
        Raises `InstanceNotReady` after `timeout` seconds.
        """
        raise _missing("wait_until_ready")

    def destroy_instance(self, instance: InstanceHandle) -> None:
        """Destroy the instance; an attached volume is detached first, never deleted."""
        raise _missing("destroy_instance")

    def get_instance(self, instance_id: str) -> InstanceHandle | None:
        """Return the instance with this id, or None when it does not exist."""
        raise _missing("get_instance")

    def list_instances(self) -> list[InstanceHandle]:
        """List every instance this provider manages (for restart reconciliation)."""
        raise _missing("list_instances")

    # -- inside an instance ------------------------------------------------
    def set_maintenance(self, instance: InstanceHandle, on: bool) -> None:
        """Turn the instance's maintenance page on or off (503 with Retry-After)."""
        raise _missing("set_maintenance")

    def set_health_pass(self, instance: InstanceHandle, token: str | None) -> None:
        """Let requests carrying `token` past the maintenance page (None withdraws every pass).

        The token travels in the `X-Swapyard-Health` header
        (`renderers.layout.HEALTH_PASS_HEADER`); with it the health check
        reaches apps restarted behind the page, which stays on for everyone
        else (`deploy.maintenance`).
        """
        raise _missing("set_health_pass")

    def stop_writers(self, instance: InstanceHandle) -> None:
        """Stop the services that write to the data volume; idempotent."""
        raise _missing("stop_writers")

    def start_writers(self, instance: InstanceHandle) -> None:
        """Start the writer services; the volume must be attached. Idempotent."""
        raise _missing("start_writers")

    # -- volumes -----------------------------------------------------------
    def create_volume(
        self,
        volume_id: str,
        size_bytes: int,
        label: str,
        filesystem: str = "ext4",
        *,
        project: str | None = None,
    ) -> VolumeHandle:
        """Create a volume and format it with `label`; idempotent.

        An existing volume, or one that already holds a filesystem, is never
        formatted again. `project` is the swapyard project the volume serves:
        a driver that keeps projects apart (an LXD project each) creates it
        there, and may refuse a volume without one.
        """
        raise _missing("create_volume")

    def get_volume(self, volume_id: str) -> VolumeHandle | None:
        """Return the volume with this id, its attachment read from reality, or None."""
        raise _missing("get_volume")

    def list_volumes(self) -> list[VolumeHandle]:
        """List every volume this provider manages."""
        raise _missing("list_volumes")

    def attach_volume(self, volume: VolumeHandle, instance: InstanceHandle) -> VolumeHandle:
        """Attach and mount the volume in the instance; idempotent for the same instance.

        Raises `VolumeInUse` when it is attached to another instance.
        """
        raise _missing("attach_volume")

    def detach_volume(self, volume: VolumeHandle) -> VolumeHandle:
        """Unmount and detach the volume from whatever holds it; idempotent."""
        raise _missing("detach_volume")

    def destroy_volume(self, volume: VolumeHandle) -> None:
        """Delete the volume and its data; only on an explicit request."""
        raise _missing("destroy_volume")

    # -- backups -----------------------------------------------------------
    def volume_path(self, volume: VolumeHandle) -> Path:
        """Where this host reads the files of the attached volume (restic's source).

        Raises `ProviderError` when the volume is attached nowhere.
        """
        raise _missing("volume_path")

    def mount_on_host(self, volume: VolumeHandle) -> Path:
        """Mount a detached volume where this host can write it (restores, drills).

        Undo with `detach_volume`. Raises `VolumeInUse` when it is attached
        to an instance.
        """
        raise _missing("mount_on_host")

    def exchange_volume_data(self, a: VolumeHandle, b: VolumeHandle) -> None:
        """Exchange what two detached volumes hold; their ids stay (a restore takes the live id).

        Raises `VolumeInUse` when either is attached.
        """
        raise _missing("exchange_volume_data")

    def can_snapshot(self, volume: VolumeHandle) -> bool:
        """True when `snapshot_volume` works for this volume (e.g. a mounted btrfs)."""
        return False

    def flush_volume(self, volume: VolumeHandle) -> None:
        """Write the attached volume's dirty data to its disk (that filesystem only).

        Called before a snapshot while the apps still serve, so the snapshot
        inside the maintenance window has little left to write. The base
        does nothing: a snapshot is consistent without it, only slower.
        """

    def snapshot_volume(self, volume: VolumeHandle, name: str) -> Path | None:
        """Take a read-only snapshot `name` of the attached volume; return where this host
        reads it, or None when it cannot (`volume_runner(snapshot=name)` reads it then).

        The snapshot is consistent as of this call, so writers need to be
        stopped only while it is taken; taking an existing one again returns it.
        Delete it with `delete_volume_snapshot`, which also removes whatever
        `volume_runner` made of it.
        """
        raise _missing("snapshot_volume")

    def delete_volume_snapshot(self, volume: VolumeHandle, name: str) -> None:
        """Delete snapshot `name` of the volume; a no-op when it does not exist."""
        raise _missing("delete_volume_snapshot")

    @contextmanager
    def volume_runner(
        self,
        volume: VolumeHandle,
        *,
        snapshot: str | None = None,
        restore: bool = False,
        repository: str | None = None,
    ) -> Iterator[VolumeRunner]:
        """Where restic runs against the volume's files (`deploy.providers.runner`).

        `repository` is the restic repository the runner will be used with: a
        driver that runs restic elsewhere may have to make a repository on
        this host (a plain path) reachable there, or refuse it clearly.

        Three uses: the attached volume, read (a stop-mode backup); its
        snapshot `snapshot`, taken before by `snapshot_volume`, read; a
        detached volume, written (`restore=True`: a restore into a new
        volume). What the context set up (a mount, a temporary copy, a
        device) is undone when it exits, even on an error.

        The base runs restic on this host, on `volume_path`, the path
        `snapshot_volume` returns, or `mount_on_host` (which the caller
        undoes with `detach_volume`). A driver whose volumes this host
        cannot read runs it where they are.
        """
        if restore:
            yield LocalRunner(self.mount_on_host(volume))
        elif snapshot is not None:
            path = self.snapshot_volume(volume, snapshot)
            if path is None:
                raise NotImplementedError(
                    "volume_runner not implemented for this driver's snapshots"
                )
            yield LocalRunner(path)
        else:
            yield LocalRunner(self.volume_path(volume))

    # -- traffic -----------------------------------------------------------
    def switch_traffic(self, route: Route) -> None:
        """Send traffic for `route.domains` to the instance, atomically."""
        raise _missing("switch_traffic")

    def remove_traffic(self, domains: tuple[str, ...]) -> None:
        """Stop routing `domains` anywhere (used by an explicit destroy)."""
        raise _missing("remove_traffic")

    def routes(self) -> list[Route]:
        """The routes currently in effect."""
        raise _missing("routes")

    def dns_addresses(self, instance: InstanceHandle) -> tuple[str, ...]:
        """The addresses the instance's domains should resolve to (A and AAAA values).

        An instance with an address of its own (a cloud server's public
        address) gives it, so the records follow a swap; one reached through
        a shared front (an edge on the host) gives the front's, which a swap
        does not change. Empty when the driver knows of none: the deploy's
        DNS step then refuses, asking for the setting that names them.
        """
        return ()
