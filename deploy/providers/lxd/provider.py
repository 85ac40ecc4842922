"""The `lxd` provider: each instance an LXD (or Incus) container or VM, booted by cloud-init.

An instance is created stopped from the shared base image (`image.py`) in
its project's LXD project (`site.py`), with a static address on the
project's bridge and the cloud-init user-data rendered from its Ignition
config (`renderers.cloudinit`): the same compose project, Caddyfile and
units that Flatcar would run. Before its first start the provider pushes the
instance's TLS server certificate and key (issued by swapyard's own CA,
`deploy.providers.remote.pki`) into it through LXD's file API, so no key is in
user-data. The instance's own systemd then runs docker and the units;
app-prepare pulls (online) and creates the containers.

From then on swapyard reaches inside only through the instance's Docker
Engine API over mutual TLS (`deploy.providers.remote.engine`): offline it
copies the images the control host's engine holds into the instance's engine
(app-prepare retries until they are there), it starts the non-writers, stops
and starts writers, turns the maintenance page on and off and sets the
health pass. No login exists: no SSH server, no user with a password or key.

The data volume is an LXD custom volume (`volumes.py`) attached as a disk
device at /mnt/data; the edge Caddy on the control host
(`deploy.providers.edge`) proxies each domain to the live instance's
address, port 80.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from deploy.providers.base import InstanceHandle, Option, Provider, VolumeHandle
from deploy.providers.edge.proxy import Edge
from deploy.providers.edge.traffic import EDGE_OPTIONS, EdgeTraffic, parse_addresses
from deploy.providers.lxd.api import Endpoint, LxdClient, LxdError, LxdNotFound
from deploy.providers.lxd.image import ENGINE_PORT, TLS_DIR, ensure_base_image
from deploy.providers.lxd.site import DATA_PATH, OWNER_KEY, PROJECT_KEY, Sites
from deploy.providers.lxd.volumes import DEVICE, LxdVolume, Volumes
from deploy.providers.remote.engine import RemoteEngine
from deploy.providers.remote.pki import CertificateAuthority
from deploy.providers.remote.restic import RESTIC_LABEL, EngineRunner, restic_image
from deploy.providers.runner import LocalRunner, VolumeRunner
from deploy.providers.types import (
    IgnitionError,
    InstanceNotFound,
    InstanceNotReady,
    InstanceState,
    ProviderError,
    VolumeInUse,
    VolumeState,
)
from renderers import layout
from renderers.cloudinit import render_cloudinit

log = logging.getLogger(__name__)

NAME_KEY = "user.swapyard.name"
# when a data volume was first attached (Unix time): containers started before it
# bound the empty directory, and start_writers restarts them once
FIRST_ATTACH_KEY = "user.swapyard.first-attach"
ADDRESS_KEY = "user.swapyard.address"
COMPOSE_KEY = "user.swapyard.compose"  # JSON: the compose project's name, services, images
INSTANCE_TYPES = ("container", "virtual-machine")
COMPOSE_FILE = f"{layout.ROOT}/{layout.COMPOSE}"
LIMITS_FILE = f"{layout.ROOT}/{layout.LIMITS}"
# compose names a project without `name:` after its directory (/opt/swapyard)
DEFAULT_COMPOSE_PROJECT = "swapyard"


class LxdProvider(EdgeTraffic, Provider):
    """Instances as LXD/Incus instances, volumes as custom storage volumes, an edge Caddy."""

    name = "lxd"
    options = (
        Option(
            "lxd_socket",
            str | None,
            None,
            "The daemon's unix socket; default: the first of LXD's and Incus's usual sockets.",
        ),
        Option(
            "lxd_url",
            str | None,
            None,
            "A remote daemon's HTTPS address (https://host:8443); needs client_cert and "
            "client_key, trusted by the daemon (`lxc config trust add`).",
        ),
        Option("lxd_client_cert", str | None, None, "PEM file of the client certificate (remote)."),
        Option("lxd_client_key", str | None, None, "PEM file of the client key (remote)."),
        Option(
            "lxd_server_cert",
            str | None,
            None,
            "PEM file of the remote daemon's certificate, pinned (its certificates are "
            "self-signed).",
        ),
        Option(
            "lxd_pool", str, "swapyard", "Storage pool for root disks and data volumes (btrfs)."
        ),
        Option(
            "lxd_subnets",
            str,
            "10.213.0.0/16",
            "Address space for the projects' bridges, one /24 each.",
        ),
        Option(
            "lxd_project_prefix",
            str,
            "swapyard-",
            "Prefix of the LXD project made for each swapyard project.",
        ),
        Option(
            "lxd_instance_type",
            str,
            "container",
            "`container` (system container) or `virtual-machine` (needs KVM and a VM image "
            "with the base image's contents, given as lxd_image).",
        ),
        Option(
            "lxd_image",
            str | None,
            None,
            "Alias of the image instances boot; default: swapyard's base image, built when "
            "missing (`swapyard images build-base`).",
        ),
        Option(
            "copy_images",
            bool,
            True,
            "Copy images the control host's engine holds into each instance before its apps "
            "start (offline hosts); the instance pulls the others.",
        ),
        *EDGE_OPTIONS,
        Option(
            "restic_image",
            str | None,
            None,
            "Image the instances run restic from for backups and restores (e.g. "
            "restic/restic:0.16.4, pulled by the instance); default: swapyard-local/restic, "
            "built here from Debian's restic and copied into the instance (offline).",
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
        ex_lxd_socket: str | None = None,
        ex_lxd_url: str | None = None,
        ex_lxd_client_cert: str | None = None,
        ex_lxd_client_key: str | None = None,
        ex_lxd_server_cert: str | None = None,
        ex_lxd_pool: str = "swapyard",
        ex_lxd_subnets: str = "10.213.0.0/16",
        ex_lxd_project_prefix: str = "swapyard-",
        ex_lxd_instance_type: str = "container",
        ex_lxd_image: str | None = None,
        ex_copy_images: bool = True,
        ex_edge_listen: tuple[str, ...] = ("127.0.0.1:8000",),
        ex_edge_admin: str = "127.0.0.1:2119",
        ex_edge_addresses: tuple[str, ...] = (),
        ex_stop_timeout: int = 10,
        ex_restic_image: str | None = None,
        ex_local_docker: Any = None,
    ):
        if ex_lxd_instance_type not in INSTANCE_TYPES:
            raise ProviderError(
                f"SWAPYARD_LXD_INSTANCE_TYPE {ex_lxd_instance_type!r}: expected one of "
                + ", ".join(INSTANCE_TYPES)
            )
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if ex_lxd_url:
            endpoint = Endpoint(
                url=ex_lxd_url,
                client_cert=ex_lxd_client_cert,
                client_key=ex_lxd_client_key,
                server_cert=ex_lxd_server_cert,
            )
        else:
            endpoint = Endpoint.local(ex_lxd_socket)
        self.client = LxdClient(endpoint)
        self.owner = "sy" + hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        self.instance_type = ex_lxd_instance_type
        self.sites = Sites(
            self.client,
            owner=self.owner,
            pool=ex_lxd_pool,
            prefix=ex_lxd_project_prefix,
            subnets=ex_lxd_subnets,
            lock_dir=self.state_dir / "locks",
            state_dir=self.state_dir,
        )
        lxd_dir = Path(endpoint.socket).parent if endpoint.socket else None
        self.volumes = Volumes(self.client, ex_lxd_pool, self.owner, lxd_dir)
        self.pool = ex_lxd_pool
        self.image = ex_lxd_image
        self.copy_images = ex_copy_images
        self.stop_timeout = ex_stop_timeout
        self._restic_image = ex_restic_image
        self.ca = CertificateAuthority(self.state_dir / "pki")
        self.edge = Edge(self.state_dir, ex_edge_listen, ex_edge_admin)
        self.edge_addresses = parse_addresses(ex_edge_addresses, "EDGE_ADDRESSES")
        self._local_docker = ex_local_docker
        self._engines: dict[str, RemoteEngine] = {}

    # -- plumbing ------------------------------------------------------------
    def instance_id(self, project: str, name: str, shortid: str) -> str:
        """`sy-<project>-<name>-<shortid>`, a valid LXD instance name (a hostname, <= 63)."""
        raw = re.sub(r"[^a-z0-9-]", "-", f"sy-{project}-{name}-{shortid}".lower())
        if len(raw) > 63:
            raw = raw[:50] + "-" + hashlib.sha256(raw.encode()).hexdigest()[:12]
        return raw

    @property
    def local_docker(self) -> Any:
        """The control host's Docker engine (source of copied images), or None."""
        if self._local_docker is None and self.copy_images:
            import docker

            try:
                self._local_docker = docker.from_env()
                self._local_docker.ping()
            except Exception as exc:  # no engine here: the instances pull
                log.info("no local Docker engine to copy images from: %s", exc)
                self._local_docker = False
        return self._local_docker or None

    def _raw(self, instance_id: str, lxd_project: str | None = None) -> dict[str, Any] | None:
        """The instance as LXD reports it (only this provider's), or None.

        With its LXD project known (a handle's `extra`) one GET finds it;
        otherwise every project is listed.
        """
        if lxd_project:
            try:
                raw = self.client.in_project(lxd_project).get(f"/1.0/instances/{instance_id}")
            except LxdNotFound:
                raw = None
            if raw is not None and (raw.get("config") or {}).get(OWNER_KEY) == self.owner:
                raw.setdefault("project", lxd_project)
                return raw
            if raw is not None:
                return None
        found = self.client.in_project("default").get(
            "/1.0/instances",
            params={"recursion": "1", "all-projects": "true"},
            project=False,
        )
        for raw in found:
            if (
                raw.get("name") == instance_id
                and (raw.get("config") or {}).get(OWNER_KEY) == self.owner
            ):
                return raw
        return None

    def _require(self, instance: InstanceHandle) -> dict[str, Any]:
        raw = self._raw(instance.id, (instance.extra or {}).get("lxd_project"))
        if raw is None:
            raise InstanceNotFound(f"instance {instance.id} does not exist on the lxd provider")
        return raw

    def _handle(self, raw: dict[str, Any]) -> InstanceHandle:
        config = raw.get("config") or {}
        status = str(raw.get("status", "")).lower()
        state = {
            "running": InstanceState.RUNNING,
            "stopped": InstanceState.STOPPED,
            "starting": InstanceState.PENDING,
        }.get(status, InstanceState.UNKNOWN)
        address = config.get(ADDRESS_KEY)
        return InstanceHandle(
            id=raw["name"],
            project=config.get(PROJECT_KEY, ""),
            name=config.get(NAME_KEY, ""),
            state=state,
            endpoint=(address, 80) if address else None,
            extra={
                "lxd_project": raw.get("project", "default"),
                "address": address,
                "type": raw.get("type"),
                "status": raw.get("status"),
                "compose": _compose_tag(config.get(COMPOSE_KEY)),
                "data_volume": self.volumes.attached_volume(raw),
            },
        )

    def _engine(self, handle: InstanceHandle) -> RemoteEngine:
        address = handle.extra.get("address") if handle.extra else None
        if not address:
            raw = self._require(handle)
            handle = self._handle(raw)
            address = handle.extra["address"]
        key = f"{handle.id}@{address}"
        engine = self._engines.get(key)
        if engine is None:
            engine = RemoteEngine(
                handle.id,
                address,
                ENGINE_PORT,
                self.ca.client(),
                handle.extra["compose"]["name"] or DEFAULT_COMPOSE_PROJECT,
            )
            self._engines[key] = engine
        return engine

    def _image_alias(self) -> str:
        if self.image:
            return self.image
        return ensure_base_image(self.client).alias

    def own_addresses(self, instance: InstanceHandle) -> tuple[str, ...]:
        """The instance's static address on its project's bridge (right for DNS when the bridge
        is routed, or for a zone only this network resolves; else set EDGE_ADDRESSES)."""
        address = instance.extra.get("address") if instance.extra else None
        return (str(address),) if address else ()

    # -- instances -------------------------------------------------------------
    def create_instance(
        self, project: str, name: str, ignition_config: bytes, *, shortid: str
    ) -> InstanceHandle:
        """Create the instance stopped, push its TLS files, start it; idempotent per `shortid`."""
        iid = self.instance_id(project, name, shortid)
        existing = self._raw(iid)
        if existing is not None:
            if str(existing.get("status", "")).lower() != "running":
                self._start(existing)
                existing = self._raw(iid) or existing
            return self._handle(existing)
        compose = compose_of(ignition_config)
        limits = limits_of(ignition_config)
        user_data = render_cloudinit(ignition_config)
        site = self.sites.ensure(project)
        alias = self._image_alias()
        client = self.client.in_project(site.lxd_project)
        key = (
            "cloud-init.user-data" if self.client.has_extension("cloud_init") else "user.user-data"
        )
        with self.sites.lock(f"addresses-{site.network}"):
            address = self.sites.free_address(site)
            body = {
                "name": iid,
                "type": self.instance_type,
                "description": f"swapyard {project}/{name} ({shortid})",
                "source": {"type": "image", "alias": alias, "project": "default"},
                "profiles": ["default"],
                "config": {
                    key: user_data.decode(),
                    OWNER_KEY: self.owner,
                    PROJECT_KEY: project,
                    NAME_KEY: name,
                    ADDRESS_KEY: str(address),
                    COMPOSE_KEY: json.dumps(compose, sort_keys=True),
                    **limits,
                    **({"security.nesting": "true"} if self.instance_type == "container" else {}),
                },
                "devices": {
                    "eth0": {
                        "type": "nic",
                        "name": "eth0",
                        "network": site.network,
                        "ipv4.address": str(address),
                    }
                },
                "start": False,
            }
            client.request("POST", "/1.0/instances", body=body, wait=600)
        tls = self.ca.issue_server(iid, [str(address)], [iid])
        raw = self._raw(iid)
        assert raw is not None
        if self.instance_type == "container":
            self._push_tls(client, iid, tls)  # into the stopped container: dockerd finds them
            self._start(raw)
        else:
            # A VM's files are written by its agent, which runs only once it has booted;
            # its dockerd fails for want of the certificates until then, so restart it.
            self._start(raw)
            self._push_tls(client, iid, tls, wait=180)
            code, _, err = client.execute(iid, ["systemctl", "restart", "docker.service"])
            if code != 0:
                raise ProviderError(f"instance {iid}: docker did not restart with TLS: {err}")
        return self._handle(self._raw(iid) or raw)

    def _push_tls(self, client: LxdClient, iid: str, tls: Any, wait: float = 0) -> None:
        """The engine's CA, certificate and key into /etc/swapyard/tls (retried for `wait` s)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                client.make_directory(iid, "/etc/swapyard", mode=0o755)
                break
            except LxdError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(2)
        client.make_directory(iid, TLS_DIR, mode=0o700)
        client.push_file(iid, f"{TLS_DIR}/ca.pem", tls.ca, mode=0o644)
        client.push_file(iid, f"{TLS_DIR}/server.pem", tls.certificate, mode=0o644)
        client.push_file(iid, f"{TLS_DIR}/server-key.pem", tls.key, mode=0o600)

    def _start(self, raw: dict[str, Any]) -> None:
        client = self.client.in_project(raw.get("project", "default"))
        client.request(
            "PUT",
            f"/1.0/instances/{raw['name']}/state",
            body={"action": "start", "timeout": 60},
            wait=120,
        )

    def wait_until_ready(self, instance: InstanceHandle, timeout: float = 120) -> InstanceHandle:
        """Engine reachable, images copied, containers created, non-writers up, Caddy answering."""
        deadline = time.monotonic() + timeout
        handle = self._handle(self._require(instance))
        engine = self._engine(handle)
        compose = handle.extra["compose"]

        def left() -> float:
            """Seconds left of `timeout`; `InstanceNotReady` once it is spent."""
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InstanceNotReady(f"instance {instance.id} is not ready after {timeout:g} s")
            return remaining

        engine.wait_until_reachable(left())
        if self.local_docker is not None:
            engine.copy_images(self.local_docker, sorted(compose["images"]))
        engine.wait_for_project(sorted(compose["services"]), left())
        engine.start(writers=False)
        self._wait_http(handle, left())
        return self._handle(self._require(instance))

    def _wait_http(self, handle: InstanceHandle, timeout: float) -> None:
        import requests

        assert handle.endpoint is not None
        host, port = handle.endpoint
        deadline = time.monotonic() + timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://{host}:{port}/", timeout=2)
                return
            except requests.RequestException as exc:
                problem = str(exc)
            time.sleep(0.3)
        raise InstanceNotReady(
            f"instance {handle.id}: its front proxy at {host}:{port} does not answer: {problem}"
        )

    def destroy_instance(self, instance: InstanceHandle) -> None:
        """Detach the data volume, stop and delete the instance (its key goes with it)."""
        raw = self._raw(instance.id)
        if raw is None:
            return
        client = self.client.in_project(raw.get("project", "default"))
        if self.volumes.attached_volume(raw):
            self._remove_device(raw)
        if str(raw.get("status", "")).lower() == "running":
            with contextlib.suppress(LxdNotFound):
                client.request(
                    "PUT",
                    f"/1.0/instances/{instance.id}/state",
                    body={"action": "stop", "force": True, "timeout": 30},
                    wait=120,
                )
        with contextlib.suppress(LxdNotFound):
            client.request("DELETE", f"/1.0/instances/{instance.id}", wait=300)
        for key in [k for k in self._engines if k.startswith(f"{instance.id}@")]:
            self._engines.pop(key).close()

    def get_instance(self, instance_id: str) -> InstanceHandle | None:
        """The instance with this id, or None."""
        raw = self._raw(instance_id)
        return self._handle(raw) if raw else None

    def list_instances(self) -> list[InstanceHandle]:
        """Every instance this provider made, in every swapyard project."""
        found = self.client.in_project("default").get(
            "/1.0/instances",
            params={"recursion": "1", "all-projects": "true"},
            project=False,
        )
        return [
            self._handle(raw)
            for raw in found
            if (raw.get("config") or {}).get(OWNER_KEY) == self.owner
        ]

    # -- inside an instance ------------------------------------------------------
    def set_maintenance(self, instance: InstanceHandle, on: bool) -> None:
        """The maintenance flag in the instance's Caddy, through its Docker API."""
        self._engine(self._handle(self._require(instance))).set_maintenance(on)

    def set_health_pass(self, instance: InstanceHandle, token: str | None) -> None:
        """The health pass file in the instance's Caddy, through its Docker API."""
        self._engine(self._handle(self._require(instance))).set_health_pass(token)

    def stop_writers(self, instance: InstanceHandle) -> None:
        """Stop the writer containers, gracefully within the stop timeout."""
        self._engine(self._handle(self._require(instance))).stop_writers(self.stop_timeout)

    def start_writers(self, instance: InstanceHandle) -> None:
        """Start the writers; refuses while no volume is attached to the instance.

        Non-writers that bind something on the data path (Caddy's certificates)
        started before the volume arrived and see the instance's empty
        directory: they are restarted once, so they see the volume.
        """
        raw = self._require(instance)
        if not self.volumes.attached_volume(raw):
            raise ProviderError(f"instance {instance.id} has no volume attached; attach one first")
        handle = self._handle(raw)
        engine = self._engine(handle)
        engine.start_writers()
        first = float((raw.get("config") or {}).get(FIRST_ATTACH_KEY) or 0)
        if first and engine.restart_early_binds(DATA_PATH, first):
            self._wait_http(handle, 60)  # the front proxy answers again before we return

    # -- volumes ----------------------------------------------------------------
    def _volume(self, vol: LxdVolume) -> VolumeHandle:
        holder = vol.used_by[0] if vol.used_by else None
        return VolumeHandle(
            id=vol.name,
            label=vol.label,
            size_bytes=vol.size_bytes,
            filesystem=vol.filesystem,
            state=VolumeState.ATTACHED if holder else VolumeState.AVAILABLE,
            attached_to=holder,
            extra={"lxd_project": vol.lxd_project, "used_by": list(vol.used_by)},
        )

    def _find(self, volume_id: str) -> LxdVolume:
        vol = self.volumes.find(volume_id)
        if vol is None:
            raise ProviderError(f"volume {volume_id} does not exist on the lxd provider")
        return vol

    def create_volume(
        self,
        volume_id: str,
        size_bytes: int,
        label: str,
        filesystem: str = "ext4",
        *,
        project: str | None = None,
    ) -> VolumeHandle:
        """Create a custom volume in the project's LXD project; an existing one is kept."""
        existing = self.volumes.find(volume_id)
        if existing is not None:
            return self._volume(existing)
        if project is None:
            raise ProviderError(
                f"volume {volume_id}: the lxd provider keeps each project's volumes in its own "
                "LXD project, so it needs to know the project"
            )
        site = self.sites.ensure(project)
        vol = self.volumes.create(
            site.lxd_project, project, volume_id, size_bytes, label, filesystem
        )
        return self._volume(vol)

    def get_volume(self, volume_id: str) -> VolumeHandle | None:
        """The volume and its attachment as LXD reports it, or None."""
        vol = self.volumes.find(volume_id)
        return self._volume(vol) if vol else None

    def list_volumes(self) -> list[VolumeHandle]:
        """Every volume this provider made."""
        return [self._volume(v) for v in self.volumes.all()]

    def attach_volume(self, volume: VolumeHandle, instance: InstanceHandle) -> VolumeHandle:
        """Add the disk device to the instance (`VolumeInUse` when another instance holds it)."""
        vol = self._find(volume.id)
        others = [name for name in vol.used_by if name != instance.id]
        if others:
            raise VolumeInUse(
                f"volume {volume.id} is attached to {others[0]}; detach it before attaching "
                f"it to {instance.id}"
            )
        if instance.id in vol.used_by:
            return self._volume(vol)
        raw = self._require(instance)
        if raw.get("project") != vol.lxd_project:
            raise ProviderError(
                f"volume {volume.id} is in LXD project {vol.lxd_project}, instance "
                f"{instance.id} in {raw.get('project')}: a volume serves one project"
            )
        current = self.volumes.attached_volume(raw)
        if current and current != vol.name:
            raise ProviderError(f"instance {instance.id} already holds volume {current}")
        config = {}
        if not (raw.get("config") or {}).get(FIRST_ATTACH_KEY):
            config[FIRST_ATTACH_KEY] = f"{time.time():.6f}"
        self._update_devices(raw, add={DEVICE: self.volumes.device(vol)}, config=config)
        return self._volume(self._find(volume.id))

    def detach_volume(self, volume: VolumeHandle) -> VolumeHandle:
        """Remove the disk device from whatever instance holds the volume; idempotent."""
        vol = self._find(volume.id)
        for name in vol.used_by:
            raw = self._raw(name)
            if raw is None:
                continue
            if self.volumes.attached_volume(raw) == vol.name:
                self._remove_device(raw)
                raw = self._raw(name) or raw
            jobs = tuple(self.volumes.devices_of(raw, vol.name))
            if jobs:  # a restic job's mount (a crash left it): no writer uses it
                self._update_devices(raw, remove=jobs)
        return self._volume(self._find(volume.id))

    def _remove_device(self, raw: dict[str, Any]) -> None:
        handle = self._handle(raw)
        if str(raw.get("status", "")).lower() == "running":
            with contextlib.suppress(Exception):  # an unreachable engine has no writers to stop
                self._engine(handle).stop_writers(self.stop_timeout)
        self._update_devices(raw, remove=(DEVICE,))

    def _update_devices(
        self,
        raw: dict[str, Any],
        *,
        add: dict[str, dict[str, str]] | None = None,
        remove: tuple[str, ...] = (),
        config: dict[str, str] | None = None,
    ) -> None:
        """Change the instance's own devices with its ETag, so a concurrent change is refused."""
        client = self.client.in_project(raw.get("project", "default"))
        path = f"/1.0/instances/{raw['name']}"
        for _attempt in range(5):
            response = client.request("GET", path, raw=True)
            etag = response.headers.get("ETag", "")
            current = response.json()["metadata"]
            devices = dict(current.get("devices") or {})
            for name in remove:
                devices.pop(name, None)
            devices.update(add or {})
            body = {
                "architecture": current.get("architecture"),
                "config": {**(current.get("config") or {}), **(config or {})},
                "devices": devices,
                "ephemeral": current.get("ephemeral", False),
                "profiles": current.get("profiles") or [],
                "description": current.get("description", ""),
            }
            try:
                client.request(
                    "PUT", path, body=body, headers={"If-Match": etag} if etag else {}, wait=120
                )
                return
            except LxdError as exc:
                if exc.code != 412:  # precondition failed: someone changed it meanwhile
                    raise
        raise ProviderError(f"instance {raw['name']}: its devices kept changing under us")

    def destroy_volume(self, volume: VolumeHandle) -> None:
        """Detach and delete the volume with its data and snapshots."""
        vol = self.volumes.find(volume.id)
        if vol is None:
            return
        self.detach_volume(volume)
        self.volumes.delete(vol)

    # -- backups ------------------------------------------------------------------
    def volume_path(self, volume: VolumeHandle) -> Path:
        """The attached volume's directory on this host (a daemon on this host only)."""
        vol = self._find(volume.id)
        if not vol.used_by:
            raise ProviderError(f"volume {volume.id} is attached nowhere; nothing to read")
        return self.volumes.host_path(vol)

    def mount_on_host(self, volume: VolumeHandle) -> Path:
        """A detached volume's directory on this host, for restores and drills."""
        vol = self._find(volume.id)
        if vol.used_by:
            raise VolumeInUse(f"volume {volume.id} is attached to {vol.used_by[0]}")
        return self.volumes.host_path(vol)

    def exchange_volume_data(self, a: VolumeHandle, b: VolumeHandle) -> None:
        """Swap the two detached volumes' names, so each id now holds the other's data."""
        va, vb = self._find(a.id), self._find(b.id)
        for v in (va, vb):
            if v.used_by:
                raise VolumeInUse(f"volume {v.name} is attached to {v.used_by[0]}")
        if va.lxd_project != vb.lxd_project:
            raise ProviderError(f"volumes {a.id} and {b.id} are in different LXD projects")
        spare = f"{va.name}-exchange"
        self.volumes.rename(va, spare)
        self.volumes.rename(vb, va.name)
        moved = self.volumes.find(spare)
        assert moved is not None
        self.volumes.rename(moved, vb.name)

    def can_snapshot(self, volume: VolumeHandle) -> bool:
        """True: LXD snapshots a custom volume on every storage driver."""
        return True

    def snapshot_volume(self, volume: VolumeHandle, name: str) -> Path | None:
        """An LXD snapshot of the volume; its directory on this host, None for a remote daemon."""
        vol = self._find(volume.id)
        self.volumes.snapshot(vol, name)
        return self.volumes.host_path(vol, name) if self.volumes.lxd_dir is not None else None

    def delete_volume_snapshot(self, volume: VolumeHandle, name: str) -> None:
        """Delete the LXD snapshot `name` and the temporary copy a backup made of it."""
        copy = self.volumes.find(_snapshot_copy(volume.id, name))
        if copy is not None:
            for holder in copy.used_by:  # a dead run's restic job may still bind the copy
                raw = self._raw(holder)
                if raw is None or str(raw.get("status", "")).lower() != "running":
                    continue
                engine = self._engine(self._handle(raw))
                for dev in self.volumes.devices_of(raw, copy.name).values():
                    engine.remove_jobs(RESTIC_LABEL, source=dev["path"])
            self.destroy_volume(self._volume(copy))
        vol = self.volumes.find(volume.id)
        if vol is not None:
            self.volumes.delete_snapshot(vol, name)

    # -- restic on the instance ------------------------------------------------------
    @property
    def restic_image(self) -> str:
        """The image restic jobs run (the setting, else the local one, built on first use)."""
        if self._restic_image is None:
            if self.local_docker is None:
                raise ProviderError(
                    "no Docker engine on this host to build swapyard-local/restic from; set "
                    "SWAPYARD_RESTIC_IMAGE to an image the instances can pull "
                    "(e.g. restic/restic:0.16.4)"
                )
            self._restic_image = restic_image()
        return self._restic_image

    def _job_host(self, vol: LxdVolume, prefer: tuple[str, ...]) -> dict[str, Any]:
        """A running instance of ours in the volume's LXD project, those in `prefer` first."""
        candidates = [self._raw(name) for name in prefer]
        candidates += [
            self._raw(i.id)
            for i in self.list_instances()
            if i.extra["lxd_project"] == vol.lxd_project
        ]
        for raw in candidates:
            running = raw is not None and str(raw.get("status", "")).lower() == "running"
            if running and raw is not None and raw.get("project") == vol.lxd_project:
                return raw
        raise ProviderError(
            f"volume {vol.name}: no running instance in LXD project {vol.lxd_project} to run "
            "restic on; deploy the instance first"
        )

    @contextlib.contextmanager
    def _job_mount(self, raw: dict[str, Any], vol: LxdVolume, *, writable: bool) -> Iterator[str]:
        """Attach `vol` to the instance at a job path for the context; yields that path."""
        device, spec = self.volumes.job_device(vol, writable=writable)
        self._update_devices(raw, add={device: spec})
        try:
            yield spec["path"]
        finally:
            self._update_devices(self._raw(raw["name"]) or raw, remove=(device,))

    @contextlib.contextmanager
    def volume_runner(
        self,
        volume: VolumeHandle,
        *,
        snapshot: str | None = None,
        restore: bool = False,
        repository: str | None = None,
    ) -> Iterator[VolumeRunner]:
        """restic in a job container on an instance's engine, never reading a host path.

        The attached volume is read where its instance mounts it; a snapshot is
        copied to a temporary volume (`<volume>-<snapshot>`) mounted read-only
        beside the data on the instance holding the volume; a restore target is
        mounted writable on a running instance of the project. Mounts and the
        copy go when the context exits (`delete_volume_snapshot` removes a copy
        a crash left).

        A repository that is a directory on this host (the quick start's) is
        out of the instances' reach: with the daemon on this host, a backup
        then runs restic here, reading the volume (or its LXD snapshot) in the
        storage pool's directory; a restore into it is refused (the files it
        wrote here would belong to no one inside the unprivileged instance).
        """
        vol = self._find(volume.id)
        image = self.restic_image
        here = _local_repository(repository)
        if here is not None:
            if restore or self.volumes.lxd_dir is None:
                where = "restores on lxd" if restore else "a remote LXD daemon's instances"
                raise ProviderError(
                    f"restic repository {here} is a directory on this host, out of reach of "
                    f"{where}: use one the instances can reach (s3:, rest:, sftp:, b2:, ...)"
                )
            if snapshot is None and not vol.used_by:
                raise ProviderError(f"volume {volume.id} is attached nowhere; nothing to read")
            yield LocalRunner(self.volumes.host_path(vol, snapshot))
            return
        if snapshot is None and not restore:
            holders = [r for r in map(self._raw, vol.used_by) if r is not None]
            for raw in holders:
                for dev in self.volumes.devices_of(raw, vol.name).values():
                    engine = self._engine(self._handle(raw))
                    yield EngineRunner(engine, dev["path"], image, local=self.local_docker)
                    return
            raise ProviderError(f"volume {volume.id} is attached nowhere; nothing to read")
        if restore:
            if vol.used_by:
                raise VolumeInUse(f"volume {volume.id} is attached to {vol.used_by[0]}")
            raw = self._job_host(vol, ())
            with self._job_mount(raw, vol, writable=True) as path:
                engine = self._engine(self._handle(raw))
                yield EngineRunner(engine, path, image, writable=True, local=self.local_docker)
            return
        assert snapshot is not None
        copy = self.volumes.copy_snapshot(vol, snapshot, _snapshot_copy(vol.name, snapshot))
        try:
            raw = self._job_host(copy, vol.used_by)
            with self._job_mount(raw, copy, writable=False) as path:
                engine = self._engine(self._handle(raw))
                yield EngineRunner(engine, path, image, local=self.local_docker)
        finally:
            self.destroy_volume(self._volume(self.volumes.find(copy.name) or copy))

    # -- extras --------------------------------------------------------------------
    def ex_execute(self, instance: InstanceHandle, argv: list[str]) -> tuple[int, str, str]:
        """Run a command inside the instance through LXD (tests and diagnostics, not the swap)."""
        raw = self._require(instance)
        return self.client.in_project(raw["project"]).execute(instance.id, argv)

    def ex_remove_project(self, project: str) -> None:
        """Delete the LXD project, profile and bridge of a project with nothing left in it."""
        self.sites.remove(project)


def _local_repository(repository: str | None) -> str | None:
    """The directory of a restic repository on this host (`/path` or `local:/path`), or None."""
    if not repository:
        return None
    path = repository.removeprefix("local:")
    return path if path.startswith("/") else None


def _snapshot_copy(volume: str, snapshot: str) -> str:
    """The name of the temporary volume a backup copies snapshot `snapshot` of `volume` to."""
    return f"{volume}-{snapshot}"


def _ignition_file(ignition: bytes, path: str) -> bytes | None:
    """The bytes of the file at `path` in the Ignition config (a base64 data URL), or None."""
    try:
        files = json.loads(ignition)["storage"]["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IgnitionError(f"not an Ignition config swapyard rendered: {exc}") from None
    for entry in files:
        if entry.get("path") == path:
            source = entry.get("contents", {}).get("source", "")
            meta, _, payload = source.partition(",")
            data = base64.b64decode(payload) if meta.endswith(";base64") else payload.encode()
            if entry.get("contents", {}).get("compression") == "gzip":
                data = gzip.decompress(data)
            return data
    return None


def compose_of(ignition: bytes) -> dict[str, Any]:
    """The compose project's name, services and images, read from the Ignition config."""
    data = _ignition_file(ignition, COMPOSE_FILE)
    if data is None:
        raise IgnitionError(f"the Ignition config has no {COMPOSE_FILE}")
    return _compose_summary(data)


def limits_of(ignition: bytes) -> dict[str, str]:
    """LXD's `limits.*` config for the instance's limits.json (renderers.limits), if any."""
    data = _ignition_file(ignition, LIMITS_FILE)
    if data is None:
        return {}
    try:
        limits = json.loads(data)
    except ValueError as exc:
        raise IgnitionError(f"{LIMITS_FILE}: not JSON: {exc}") from None
    config = {}
    if isinstance(limits.get("cpus"), int):
        config["limits.cpu"] = str(limits["cpus"])
    if isinstance(limits.get("memory_bytes"), int):
        config["limits.memory"] = str(limits["memory_bytes"])
    return config


def _compose_summary(data: bytes) -> dict[str, Any]:
    document = yaml.safe_load(data) or {}
    services = document.get("services") or {}
    images = {s["image"] for s in services.values() if isinstance(s, dict) and s.get("image")}
    return {
        "name": str(document.get("name", "")),
        "services": sorted(services),
        "images": sorted(images),
    }


def _compose_tag(text: str | None) -> dict[str, Any]:
    """The compose summary kept in the instance's config (empty for a foreign instance)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        value = {}
    return {
        "name": str(value.get("name", "")),
        "services": list(value.get("services", [])),
        "images": list(value.get("images", [])),
    }
