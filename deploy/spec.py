"""What the swap engine is asked to deploy: a `DeploySpec`, and the health check of its apps.

The spec carries the Ignition config (the one artifact a provider receives),
the apps to health-check (name, one domain, path) and the data volume. It is
built from the validated model by `DeploySpec.from_instance`, so the engine
itself depends on neither the renderer nor the config format.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from deploy.dns.records import DnsSpec
from deploy.providers.types import HealthCheckFailed
from schemas.model import Instance, SecretRef


@dataclass(frozen=True)
class AppCheck:
    """Health check of one app: GET `path` with `Host: domain` through the front proxy."""

    app: str
    domain: str
    path: str = "/"


@dataclass(frozen=True)
class VolumeSpec:
    """The data volume of an instance; `id` is stable across swaps."""

    id: str
    label: str
    size_bytes: int
    filesystem: str = "ext4"


@dataclass(frozen=True)
class DeploySpec:
    """One instance at one commit, ready to hand to a provider."""

    project: str
    name: str
    commit: str
    ignition: bytes
    apps: tuple[AppCheck, ...]
    volume: VolumeSpec
    domains: tuple[str, ...] = ()
    dns: DnsSpec | None = None  # None: no records are written (`dns.provider: none`)

    @property
    def key(self) -> str:
        """`project/name`, as in commit status contexts and lock keys."""
        return f"{self.project}/{self.name}"

    @property
    def digest(self) -> str:
        """Digest of the Ignition config: equal digests mean a `noop`."""
        return "sha256:" + hashlib.sha256(self.ignition).hexdigest()

    @property
    def all_domains(self) -> tuple[str, ...]:
        """The domains the edge routes to the instance (default: every app's health domain).

        Each once: apps sharing a domain under different paths (a site and its
        /api) must not repeat it in the edge's host matcher, which Caddy refuses.
        """
        return tuple(dict.fromkeys(self.domains or (a.domain for a in self.apps)))

    @classmethod
    def from_instance(
        cls, instance: Instance, ignition: bytes, commit: str, *, dns_owner: str = "swapyard"
    ) -> DeploySpec:
        """Build the spec of a validated instance and its rendered Ignition config.

        `dns_owner` is this installation's owner id in the records' marks (DNS_OWNER).
        """
        apps = tuple(
            AppCheck(app.name, app.domains[0], app.health_path)
            for app in instance.apps
            if app.domains
        )
        volume = VolumeSpec(
            id=f"sy-{instance.project}-{instance.name}",
            label=instance.volume.label,
            size_bytes=instance.volume.size_bytes,
            filesystem=instance.volume.filesystem,
        )
        return cls(
            instance.project,
            instance.name,
            commit,
            ignition,
            apps,
            volume,
            instance.domains,
            dns_spec(instance, dns_owner),
        )

    def to_json(self) -> dict[str, Any]:
        """The journaled part of the spec (no Ignition config: it may hold secrets)."""
        return {
            "apps": [[a.app, a.domain, a.path] for a in self.apps],
            "domains": list(self.all_domains),
            "volume": [
                self.volume.id,
                self.volume.label,
                self.volume.size_bytes,
                self.volume.filesystem,
            ],
            **({"dns": self.dns.to_json()} if self.dns is not None else {}),
        }


def dns_spec(instance: Instance, owner: str = "swapyard") -> DnsSpec | None:
    """The DNS part of an instance's deploy (None for `dns.provider: none`): its `dns:` block
    with secrets as `secret:NAME` references, which the journal may keep."""
    dns = instance.dns
    if dns.provider == "none":
        return None
    settings = {
        key: f"secret:{value.name}" if isinstance(value, SecretRef) else value
        for key, value in vars(dns).items()
        if value is not None
    }
    return DnsSpec(settings, owner)


def healthy(status: int) -> bool:
    """An answer counts as healthy when it is not an error (auth walls count as up)."""
    return status < 400 or status in (401, 403)


def check_apps(
    endpoint: tuple[str, int],
    apps: tuple[AppCheck, ...],
    timeout: float,
    interval: float = 0.5,
    get: Callable[..., Any] = requests.get,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Wait until every app answers healthy through `endpoint`; `HealthCheckFailed` otherwise.

    All apps share one deadline of `timeout` seconds; the message names the
    first app that never answered healthy and its last answer. `headers` go
    with every request (the health pass behind a maintenance page).
    """
    deadline = time.monotonic() + timeout
    host, port = endpoint
    for app in apps:
        last = "no answer"
        while True:
            try:
                resp = get(
                    f"http://{host}:{port}{app.path}",
                    headers={**(headers or {}), "Host": app.domain},
                    timeout=min(5.0, max(timeout, 0.5)),
                    allow_redirects=False,
                )
                if healthy(resp.status_code):
                    break
                last = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise HealthCheckFailed(
                    f"health check of {app.app} timed out after {timeout:g} s "
                    f"(GET {app.path} for {app.domain}: {last})"
                )
            time.sleep(interval)
