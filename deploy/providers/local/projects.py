"""The local provider's instances as compose projects: files on disk, containers on the engine.

An instance `sy-<project>-<name>-<shortid>` lives in
`<state_dir>/instances/<id>/`: `rootfs/` holds what its Ignition config
writes (so `/opt/swapyard` is `rootfs/opt/swapyard`, exported to compose as
`SWAPYARD_ROOT`), `data/` is where its volume is mounted (`SWAPYARD_DATA`).
A compose override publishes the instance's Caddy on an ephemeral loopback
port instead of 80/443. Actions go through the docker-compose binary;
inspection through the Docker SDK. `ComposeProjects` knows nothing of
volumes or traffic: `deploy.providers.local.provider` puts the pieces together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
import yaml

from deploy.providers.base import InstanceHandle
from deploy.providers.commands import run
from deploy.providers.local import compose, ignition
from deploy.providers.local.compose import (
    FRONT,
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    deferred_services,
    service_of,
)
from deploy.providers.types import IgnitionError, InstanceState

OPT = "opt/swapyard"


class ComposeProjects:
    """The instance directories under `instances_dir` and their compose projects."""

    def __init__(self, instances_dir: Path, compose_bin: str, docker: Any = None):
        self.instances_dir = instances_dir
        self.compose_bin = compose_bin
        self._docker = docker

    @property
    def docker(self) -> Any:
        """The Docker SDK client, created on first use."""
        if self._docker is None:
            import docker

            self._docker = docker.from_env()
        return self._docker

    def dir(self, iid: str) -> Path:
        """The instance's directory (`meta.json`, `override.yaml`, `rootfs/`, `data/`)."""
        return self.instances_dir / iid

    def root(self, iid: str) -> Path:
        """Where the Ignition config put `/opt/swapyard` (the compose project directory)."""
        return self.dir(iid) / "rootfs" / OPT

    def materialize(self, iid: str, project: str, name: str, shortid: str, config: bytes) -> None:
        """Write what the Ignition config holds, the compose override and `meta.json`.

        `IgnitionError` when the config has no compose project with a front proxy.
        """
        d = self.dir(iid)
        ignition.materialize(config, d / "rootfs")
        compose_file = self.root(iid) / "compose.yaml"
        if not compose_file.exists():
            raise IgnitionError(f"the Ignition config writes no /{OPT}/compose.yaml")
        services = (yaml.safe_load(compose_file.read_text()) or {}).get("services", {})
        if FRONT not in services:
            raise IgnitionError(f"/{OPT}/compose.yaml has no {FRONT!r} service (the front proxy)")
        (d / "override.yaml").write_text(compose.override(services, d / "front-data"))
        meta = {"project": project, "name": name, "shortid": shortid}
        (d / "meta.json").write_text(json.dumps(meta))

    def has_files(self, iid: str) -> bool:
        """Whether the compose files are there (a half-created instance may lack them)."""
        return (self.dir(iid) / "override.yaml").exists() and (
            self.root(iid) / "compose.yaml"
        ).exists()

    def compose(self, iid: str, *args: str, timeout: float = 300) -> str:
        """Run `docker-compose <args>` on the instance's project; its stdout."""
        root = self.root(iid)
        argv = [
            self.compose_bin,
            "-p",
            iid,
            "--project-directory",
            str(root),
            "-f",
            str(root / "compose.yaml"),
            "-f",
            str(self.dir(iid) / "override.yaml"),
            *args,
        ]
        env = {"SWAPYARD_ROOT": str(root), "SWAPYARD_DATA": str(self.dir(iid) / "data")}
        return run(argv, env=env, timeout=timeout).stdout

    def containers(self, iid: str) -> list[Any]:
        """The project's containers, running or not."""
        return self.docker.containers.list(
            all=True, ignore_removed=True, filters={"label": f"{PROJECT_LABEL}={iid}"}
        )

    def services(self, iid: str, writers: bool) -> list[str]:
        """Services started after the volume (`writers=True`: see local.compose), or not."""
        containers = self.containers(iid)
        deferred = deferred_services(containers, self.dir(iid) / "data")
        names = {service_of(c) for c in containers} - {""}
        return sorted(deferred if writers else names - deferred)

    def ids(self) -> list[str]:
        """Every instance: its directories, and projects whose working directory lies here.

        So a directory lost with its containers still running is found, and
        other state directories on the same engine are not.
        """
        ids = {p.name for p in self.instances_dir.iterdir() if p.is_dir()}
        for c in self.docker.containers.list(
            all=True, ignore_removed=True, filters={"label": PROJECT_LABEL}
        ):
            workdir = c.labels.get(WORKDIR_LABEL, "")
            if workdir.startswith(f"{self.instances_dir}/"):
                ids.add(c.labels.get(PROJECT_LABEL, ""))
        return sorted(ids)

    def endpoint(self, iid: str) -> tuple[str, int] | None:
        """The loopback address where the instance's front proxy is published."""
        for c in self.containers(iid):
            if c.labels.get(SERVICE_LABEL) != FRONT:
                continue
            c.reload()
            bindings = (c.attrs["NetworkSettings"].get("Ports") or {}).get("80/tcp") or []
            for b in bindings:
                if b.get("HostPort"):
                    return ("127.0.0.1", int(b["HostPort"]))
        return None

    def handle(self, iid: str) -> InstanceHandle | None:
        """The instance as the provider interface shows it, or None when nothing is left."""
        meta_path = self.dir(iid) / "meta.json"
        containers = self.containers(iid)
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
            endpoint=self.endpoint(iid) if front else None,
            extra={
                "state_dir": str(self.dir(iid)),
                "root": str(self.root(iid)),
                "data": str(self.dir(iid) / "data"),
                "shortid": meta.get("shortid"),
            },
        )

    def not_ready(self, iid: str) -> str | None:
        """Why the instance is not ready yet (`exited...`: it will not get better), or None."""
        containers = self.containers(iid)
        if not containers:
            return "no containers"
        deferred = deferred_services(containers, self.dir(iid) / "data")
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
        endpoint = self.endpoint(iid)
        if endpoint is None:
            return f"service {FRONT} publishes no port"
        try:  # an HTTP answer, not a TCP accept: docker-proxy accepts before Caddy listens
            requests.get(f"http://{endpoint[0]}:{endpoint[1]}/", timeout=2)
        except requests.RequestException as exc:
            return f"service {FRONT} does not answer HTTP on port {endpoint[1]}: {exc}"
        return None
