"""The validated config model: what renderers and the deploy engine consume.

Everything here is an immutable value built by `schemas.validate` from YAML
that passed the cerberus schemas and the cross-checks, with defaults merged
and catalog apps expanded into plain services. Renderers never see raw YAML.

Secret values never live in this model: a field that holds a secret holds a
`SecretRef`, resolved only when a provider is handed a resolved render.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class SecretRef:
    """A reference to a value in the service's secret store (`secret:NAME` in YAML)."""

    name: str

    PREFIX = "secret:"

    @property
    def placeholder(self) -> str:
        return f"<{self.PREFIX}{self.name}>"

    @classmethod
    def parse(cls, value: object) -> SecretRef | None:
        if isinstance(value, str) and value.startswith(cls.PREFIX):
            return cls(value[len(cls.PREFIX) :])
        return None


Value = str | SecretRef


@dataclass(frozen=True)
class Healthcheck:
    """A container healthcheck (compose's `healthcheck`), in seconds."""

    test: tuple[str, ...]
    interval: int = 30
    timeout: int = 10
    retries: int = 3
    start_period: int = 30


@dataclass(frozen=True)
class DataMount:
    """A directory on the data volume bound into a container."""

    subpath: str  # relative to the data mount, e.g. "blog/content"
    target: str  # absolute path inside the container


@dataclass(frozen=True)
class FileMount:
    """A file or directory shipped from `instances/<name>/files/` into a container."""

    source: str  # relative to the instance's files/ directory
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Service:
    """One container of an app. `writer` services are stopped for backups and swaps."""

    name: str
    image: str
    environment: tuple[tuple[str, Value], ...] = ()
    command: tuple[str, ...] | None = None
    data: tuple[DataMount, ...] = ()
    files: tuple[FileMount, ...] = ()
    writer: bool = False
    exposed: bool = False
    port: int | None = None
    healthcheck: Healthcheck | None = None
    depends_on: tuple[str, ...] = ()
    user: str | None = None

    @property
    def secret_environment(self) -> tuple[tuple[str, SecretRef], ...]:
        return tuple((k, v) for k, v in self.environment if isinstance(v, SecretRef))

    @property
    def plain_environment(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, v in self.environment if isinstance(v, str))


@dataclass(frozen=True)
class App:
    """A user-facing app: one or more domains routed to one service (or static files)."""

    name: str
    kind: str  # a catalog name, or "custom"
    domains: tuple[str, ...]
    path: str = "/"
    services: tuple[Service, ...] = ()
    upstream: str | None = None  # the exposed service; None for a static site
    port: int | None = None
    static_root: str | None = None  # files/ subdirectory served by Caddy itself
    health_path: str = "/"

    @property
    def writers(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services if s.writer)


@dataclass(frozen=True)
class Volume:
    size: str
    size_bytes: int
    filesystem: str
    label: str
    delete_on_destroy: bool = False


@dataclass(frozen=True)
class Retention:
    daily: int = 7
    weekly: int = 4
    monthly: int = 6
    yearly: int = 0


@dataclass(frozen=True)
class Backup:
    enabled: bool
    schedule: str
    repository: str | None
    password: SecretRef | None
    retention: Retention = field(default_factory=Retention)
    check_schedule: str = "0 5 * * 0"
    environment: tuple[tuple[str, Value], ...] = ()
    drill_schedule: str | None = None


@dataclass(frozen=True)
class Dns:
    """Where the instance's domains get their address records (`none`: nowhere)."""

    provider: str  # "none", "rfc2136", "route53", "hetzner"
    zone: str | None = None
    ttl: int = 300
    server: str | None = None
    key_name: str | None = None
    key_secret: SecretRef | None = None
    key_algorithm: str = "hmac-sha256"
    token_secret: SecretRef | None = None
    access_key_id: str | None = None
    secret_access_key: SecretRef | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class Instance:
    """One immutable server: the unit that is rendered, planned and swapped."""

    project: str
    name: str
    source: str  # the apps.config path, relative to the repository root
    provider: str | None  # None: whichever provider the service deploys with
    size: str
    region: str
    channel: str
    timezone: str
    https: bool
    acme_email: str | None
    volume: Volume
    apps: tuple[App, ...]
    dns: Dns
    backup: Backup
    state: str = "present"  # "absent" asks for destroy
    cpus: int | None = None  # limits, where the provider sets them (lxd)
    memory_bytes: int | None = None
    files: tuple[tuple[str, bytes], ...] = ()  # shipped files: (relative path, content)

    @property
    def key(self) -> str:
        return f"{self.project}/{self.name}"

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(d for app in self.apps for d in app.domains)

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(s for app in self.apps for s in app.services)


@dataclass(frozen=True)
class Project:
    name: str
    branches: tuple[str, ...]
    instances: tuple[str, ...]  # name globs; "!glob" excludes

    def selects(self, instance: str) -> bool:
        """Whether this project deploys `instance`: the last glob that matches decides."""
        chosen = False
        for pattern in self.instances:
            negated = pattern.startswith("!")
            if fnmatch.fnmatchcase(instance, pattern.lstrip("!")):
                chosen = not negated
        return chosen


@dataclass(frozen=True)
class RepoConfig:
    """A whole validated config repository: every project's instances."""

    root: str
    projects: tuple[Project, ...]
    instances: tuple[Instance, ...]
    warnings: tuple[str, ...] = ()

    def project_for_branch(self, branch: str) -> Project | None:
        return next((p for p in self.projects if branch in p.branches), None)

    def instances_of(self, project: str) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.project == project)
