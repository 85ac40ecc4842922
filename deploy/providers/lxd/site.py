"""Where a swapyard project lives on the daemon: its LXD project, bridge, profile and addresses.

Each swapyard project gets (Sovereign Stack's arrangement):
- an LXD project `<prefix><project>` with its own instances, profiles and
  storage volumes, and the images of the `default` project (so one base
  image serves every project);
- a bridge of its own, `sy<8 hex>` (interface names are capped at 15
  characters), with a /24 taken from the subnet pool and no NAT: instances
  reach the control host, the control host reaches them, and nothing else
  is routed. Bridges live in the `default` project because LXD 5.0 creates
  only OVN networks inside projects; the project uses it through its profile;
- a `default` profile in that project: root disk on the storage pool, eth0
  on the bridge. (Nesting, which a container needs to run its own Docker
  engine, is set per instance: VMs take no such key.)

Each instance gets a static address in its project's /24, chosen before it
is created so its TLS certificate can name it; LXD's DHCP hands it out.
Everything is tagged `user.swapyard.owner`, derived from the provider's state
directory, so two swapyard installations (or two test runs) sharing a daemon
never see each other's instances.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.providers.lxd.api import LxdClient, LxdError, LxdNotFound

OWNER_KEY = "user.swapyard.owner"
STATE_KEY = "user.swapyard.state-dir"  # the owner's state directory, for finding leftovers
PROJECT_KEY = "user.swapyard.project"
FIRST_HOST = 10  # .1 is the bridge; .2-.9 stay free for the operator
DATA_PATH = "/mnt/data"


class SiteError(LxdError):
    """The daemon lacks something the provider needs (pool, subnet space), said how to fix."""


@dataclass(frozen=True)
class Site:
    """One swapyard project on the daemon."""

    project: str  # swapyard's name
    lxd_project: str
    network: str
    subnet: ipaddress.IPv4Network


def network_name(lxd_project: str) -> str:
    """The bridge's name: short enough for a Linux interface, stable for the project."""
    return "sy" + hashlib.sha256(lxd_project.encode()).hexdigest()[:8]


class Sites:
    """Creates and finds the LXD side of swapyard projects; idempotent throughout."""

    def __init__(
        self,
        client: LxdClient,
        *,
        owner: str,
        pool: str,
        prefix: str,
        subnets: str,
        lock_dir: Path,
        instance_config: dict[str, str] | None = None,
        state_dir: Path | None = None,
    ):
        self.client = client
        self.owner = owner
        self.pool = pool
        self.prefix = prefix
        self.subnets = ipaddress.ip_network(subnets)
        self.lock_dir = lock_dir
        self.instance_config = dict(instance_config or {})
        self.state_dir = state_dir
        self._known: dict[str, Site] = {}

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, *, host_wide: bool = False) -> Iterator[None]:
        """An exclusive lock (threads and processes) around choosing subnets or addresses.

        `host_wide` locks for every swapyard on this control host (subnets are
        chosen among all of the daemon's networks, whoever made them).
        """
        folder = Path(tempfile.gettempdir()) if host_wide else self.lock_dir
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"swapyard-lxd-{name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- projects ------------------------------------------------------------
    def lxd_project(self, project: str) -> str:
        """The LXD project of a swapyard project."""
        return f"{self.prefix}{project}"

    def ensure(self, project: str) -> Site:
        """The site of `project`, creating its LXD project, bridge and profile when missing."""
        if project in self._known:
            return self._known[project]
        self.check_pool()
        name = self.lxd_project(project)
        default = self.client.in_project("default")
        if not default.exists(f"/1.0/projects/{name}"):
            try:
                default.request(
                    "POST",
                    "/1.0/projects",
                    body={
                        "name": name,
                        "description": f"swapyard project {project}",
                        "config": {
                            "features.images": "false",
                            "features.profiles": "true",
                            "features.storage.volumes": "true",
                            "features.networks": "false",
                            OWNER_KEY: self.owner,
                            PROJECT_KEY: project,
                            **({STATE_KEY: str(self.state_dir)} if self.state_dir else {}),
                        },
                    },
                    project=False,
                )
            except LxdError as exc:
                if exc.code != 409 and "already exists" not in str(exc):
                    raise
        net, subnet = self._ensure_network(name, project)
        self._ensure_profile(name, net)
        site = Site(project, name, net, subnet)
        self._known[project] = site
        return site

    def check_pool(self) -> None:
        """Raise `SiteError` saying how to create the storage pool when it is missing."""
        try:
            pool = self.client.in_project("default").get(f"/1.0/storage-pools/{self.pool}")
        except LxdNotFound:
            raise SiteError(
                f"LXD has no storage pool {self.pool!r}: create one (btrfs, so volume "
                f"snapshots work), e.g. `lxc storage create {self.pool} btrfs size=20GiB`, "
                "or run scripts/setup --lxd"
            ) from None
        if pool.get("driver") != "btrfs":
            # Works, but snapshots of the data volume then copy instead of sharing blocks.
            pass

    def _ensure_network(self, lxd_project: str, project: str) -> tuple[str, ipaddress.IPv4Network]:
        name = network_name(lxd_project)
        default = self.client.in_project("default")
        with self.lock("networks", host_wide=True):
            try:
                net = default.get(f"/1.0/networks/{name}", project=False)
                return name, ipaddress.IPv4Interface(net["config"]["ipv4.address"]).network
            except LxdNotFound:
                pass
            subnet = self._free_subnet()
            gateway = next(subnet.hosts())
            default.request(
                "POST",
                "/1.0/networks",
                body={
                    "name": name,
                    "type": "bridge",
                    "description": f"swapyard project {project} ({lxd_project})",
                    "config": {
                        "ipv4.address": f"{gateway}/{subnet.prefixlen}",
                        "ipv4.nat": "false",
                        "ipv4.dhcp": "true",
                        "ipv6.address": "none",
                        OWNER_KEY: self.owner,
                        PROJECT_KEY: project,
                    },
                },
                project=False,
            )
            return name, subnet

    def _free_subnet(self) -> ipaddress.IPv4Network:
        used = []
        for net in self.client.in_project("default").get(
            "/1.0/networks", params={"recursion": "1"}, project=False
        ):
            address = (net.get("config") or {}).get("ipv4.address")
            if address and address != "none":
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.ip_interface(address).network)
        used += _host_networks()
        for candidate in self.subnets.subnets(new_prefix=max(24, self.subnets.prefixlen)):
            if not any(candidate.overlaps(u) for u in used):
                return candidate  # type: ignore[return-value]
        raise SiteError(
            f"no free /24 left in the subnet pool {self.subnets}: widen SWAPYARD_LXD_SUBNETS "
            "or remove unused swapyard projects"
        )

    def _ensure_profile(self, lxd_project: str, network: str) -> None:
        client = self.client.in_project(lxd_project)
        wanted = {
            "config": dict(self.instance_config),
            "description": "swapyard instances",
            "devices": {
                "root": {"type": "disk", "path": "/", "pool": self.pool},
                "eth0": {"type": "nic", "name": "eth0", "network": network},
            },
        }
        current = client.get("/1.0/profiles/default")
        if (
            current.get("config") == wanted["config"]
            and current.get("devices") == wanted["devices"]
        ):
            return
        client.request("PUT", "/1.0/profiles/default", body=wanted)

    # -- addresses ------------------------------------------------------------
    def free_address(self, site: Site) -> ipaddress.IPv4Address:
        """An address of the site's subnet no instance of the project holds (call under `lock`)."""
        client = self.client.in_project(site.lxd_project)
        taken = set()
        for inst in client.get("/1.0/instances", params={"recursion": "1"}):
            nic = (inst.get("devices") or {}).get("eth0") or {}
            if nic.get("ipv4.address"):
                taken.add(ipaddress.ip_address(nic["ipv4.address"]))
        with contextlib.suppress(LxdError):
            for lease in self.client.in_project("default").get(
                f"/1.0/networks/{site.network}/leases", project=False
            ):
                with contextlib.suppress(ValueError):
                    taken.add(ipaddress.ip_address(lease.get("address", "")))
        for n, host in enumerate(site.subnet.hosts()):
            if n + 1 >= FIRST_HOST and host not in taken:
                return host
        raise SiteError(f"no free address left in {site.subnet} for project {site.project}")

    # -- teardown (tests, `swapyard` admin commands) -----------------------------
    def remove(self, project: str) -> None:
        """Delete the project's LXD project, profile and bridge; refuses while instances remain."""
        name = self.lxd_project(project)
        client = self.client.in_project(name)
        try:
            leftovers = client.get("/1.0/instances")
        except LxdNotFound:
            leftovers = []
        if leftovers:
            raise SiteError(f"LXD project {name} still has instances: {leftovers}")
        with contextlib.suppress(LxdNotFound):
            for volume in client.get(f"/1.0/storage-pools/{self.pool}/volumes/custom"):
                raise SiteError(f"LXD project {name} still has volume {volume}")
        with contextlib.suppress(LxdNotFound):
            client.request(
                "PUT",
                "/1.0/profiles/default",
                body={"config": {}, "devices": {}, "description": ""},
            )
        with contextlib.suppress(LxdNotFound):
            self.client.in_project("default").request(
                "DELETE", f"/1.0/projects/{name}", project=False
            )
        with contextlib.suppress(LxdNotFound):
            self.client.in_project("default").request(
                "DELETE", f"/1.0/networks/{network_name(name)}", project=False
            )
        self._known.pop(project, None)

    def projects(self) -> list[dict[str, Any]]:
        """The LXD projects this provider made (its owner tag)."""
        found = self.client.in_project("default").get(
            "/1.0/projects", params={"recursion": "1"}, project=False
        )
        return [p for p in found if (p.get("config") or {}).get(OWNER_KEY) == self.owner]


def _host_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks already on this host's interfaces (a new bridge must not overlap them)."""
    nets = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 8:
                continue
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            if int(mask):
                with contextlib.suppress(ValueError):
                    nets.append(ipaddress.IPv4Network(f"{dest}/{mask}"))
    return nets
