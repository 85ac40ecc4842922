"""Cross-checks on schema-valid configs, and building the model from them.

`instance_checks` finds what a per-field schema cannot: two apps with one
name, a custom-app field on a catalog app, a shipped file that is missing, a
backup without a repository. `instance` then turns the normalized mapping
into `model.Instance`, expanding catalog apps into services.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any, Protocol

from schemas.catalog import CATALOG
from schemas.errors import Problem
from schemas.model import (
    App,
    Backup,
    DataMount,
    Dns,
    FileMount,
    Healthcheck,
    Instance,
    Retention,
    SecretRef,
    Service,
    Value,
    Volume,
)

CUSTOM_ONLY = ("image", "port", "command", "data", "files", "healthcheck", "user", "services")
RESERVED_SERVICES = {"caddy"}
_LABEL_LIMITS = {"ext4": 16, "xfs": 12, "btrfs": 255}


class Locator(Protocol):
    def locate(self, path: tuple[Any, ...]) -> tuple[str, int | None, tuple[Any, ...]]: ...


def _at(source: Locator, path: tuple[Any, ...], message: str) -> Problem:
    from schemas.yamlfile import field_path

    filename, line, located = source.locate(path)
    return Problem(filename, line, field_path(located), message)


def service_names(index: int, app: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Compose service names an app will create, with the config path that names each."""
    name = app["name"]
    if app.get("catalog"):
        built = CATALOG[app["catalog"]].build(name, tuple(app["domains"]), app["settings"])
        return [(("apps", index, "name"), s.name) for s in built.services]
    names: list[tuple[tuple[Any, ...], str]] = [(("apps", index, "name"), name)]
    for j, extra in enumerate(app.get("services") or []):
        names.append((("apps", index, "services", j, "name"), f"{name}-{extra['name']}"))
    return names


def instance_checks(
    config: dict[str, Any], files: dict[str, bytes], source: Locator
) -> list[Problem]:
    """Problems a per-field schema cannot see, inside one instance."""
    problems: list[Problem] = []
    seen_apps: dict[str, int] = {}
    seen_services: dict[str, tuple[Any, ...]] = {}
    routes: dict[tuple[str, str], str] = {}
    for index, app in enumerate(config["apps"]):
        name = app["name"]
        if name in seen_apps:
            problems.append(
                _at(
                    source,
                    ("apps", index, "name"),
                    f"app name {name!r} is also used by apps[{seen_apps[name]}]; "
                    "expected unique app names",
                )
            )
            continue
        seen_apps[name] = index
        problems.extend(_app_checks(index, app, files, source))
        if problems:
            continue
        for path, service in service_names(index, app):
            if service in RESERVED_SERVICES:
                problems.append(
                    _at(
                        source,
                        path,
                        f"{service!r} is reserved for the instance's Caddy; expected another name",
                    )
                )
            elif service in seen_services:
                problems.append(
                    _at(
                        source,
                        path,
                        f"makes a container named {service!r}, "
                        "which another app makes too; expected unique names",
                    )
                )
            seen_services[service] = path
        for d, domain in enumerate(app["domains"]):
            route = (domain, app["path"])
            if route in routes:
                problems.append(
                    _at(
                        source,
                        ("apps", index, "domains", d),
                        f"{domain}{app['path']} is already served by app "
                        f"{routes[route]!r}; expected one app per domain and path",
                    )
                )
            routes[route] = name
    problems.extend(_backup_checks(config["backup"], source))
    problems.extend(_dns_checks(config["dns"], config["apps"], source))
    volume = config["volume"]
    limit = _LABEL_LIMITS[volume["filesystem"]]
    if len(volume["label"]) > limit:
        problems.append(
            _at(
                source,
                ("volume", "label"),
                f"found {volume['label']!r} ({len(volume['label'])} characters); "
                f"expected at most {limit} for {volume['filesystem']}",
            )
        )
    return problems


def _app_checks(
    index: int, app: dict[str, Any], files: dict[str, bytes], source: Locator
) -> list[Problem]:
    problems = []
    here = ("apps", index)
    if app.get("catalog"):
        for key in CUSTOM_ONLY:
            if app.get(key):
                problems.append(
                    _at(
                        source,
                        (*here, key),
                        f"is a custom-app field; catalog app "
                        f"{app['catalog']!r} takes its settings under `settings:`",
                    )
                )
        if app["catalog"] == "static":
            root = app["settings"]["root"].rstrip("/")
            if not any(f.startswith(root + "/") for f in files):
                problems.append(
                    _at(
                        source,
                        (*here, "settings", "root"),
                        f"files/{root}/ is missing or empty; expected the site's files there",
                    )
                )
        return problems
    if not app.get("image"):
        problems.append(
            _at(
                source,
                (*here,),
                "expected either `catalog:` (one of "
                f"{', '.join(sorted(CATALOG))}) or `image:` for a custom app",
            )
        )
    if app.get("settings"):
        problems.append(
            _at(
                source,
                (*here, "settings"),
                "only catalog apps take settings; expected env/secrets instead",
            )
        )
    if app.get("image") and not app.get("port"):
        problems.append(
            _at(
                source,
                (*here, "port"),
                "is required for a custom app; expected the port it listens on",
            )
        )
    for j, extra in enumerate(app.get("services") or []):
        if not extra.get("image"):
            problems.append(_at(source, (*here, "services", j, "image"), "is required but missing"))
    for src in app.get("files") or {}:
        if src not in files and not any(f.startswith(src.rstrip("/") + "/") for f in files):
            problems.append(
                _at(
                    source,
                    (*here, "files", src),
                    f"files/{src} does not exist in the instance directory",
                )
            )
    for path_key, items in (("data", app.get("data") or []),):
        if len(set(items)) != len(items):
            problems.append(_at(source, (*here, path_key), "lists a path twice"))
    return problems


def _backup_checks(backup: dict[str, Any], source: Locator) -> list[Problem]:
    if not backup["enabled"]:
        return []
    return [
        _at(source, ("backup", key), f"is required when backups are enabled; expected {what}")
        for key, what in (
            ("repository", "a restic repository"),
            ("password", "secret:NAME of the repository password"),
        )
        if not backup.get(key)
    ]


_DNS_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "rfc2136": (
        ("zone", "the zone name"),
        ("server", "the primary server"),
        ("key_name", "the TSIG key name"),
        ("key_secret", "secret:NAME"),
    ),
    "route53": (("zone", "the hosted zone's name"),),
    "hetzner": (("zone", "the zone name"), ("token_secret", "secret:NAME of the API token")),
}
_DNS_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "server": ("rfc2136",),
    "key_name": ("rfc2136",),
    "key_secret": ("rfc2136",),
    "token_secret": ("hetzner",),
    "access_key_id": ("route53",),
    "secret_access_key": ("route53",),
    "endpoint": ("route53", "hetzner"),
}


def _dns_checks(dns: dict[str, Any], apps: list[dict[str, Any]], source: Locator) -> list[Problem]:
    provider = dns["provider"]
    if provider == "none":
        return []
    problems = [
        _at(source, ("dns", key), f"is required for {provider}; expected {what}")
        for key, what in _DNS_NEEDS[provider]
        if not dns.get(key)
    ]
    problems += [
        _at(
            source,
            ("dns", key),
            f"is a setting of {' and '.join(owners)}, and dns.provider is {provider!r}; remove it",
        )
        for key, owners in _DNS_ONLY_FOR.items()
        if dns.get(key) and provider not in owners
    ]
    if provider == "route53" and bool(dns.get("access_key_id")) != bool(
        dns.get("secret_access_key")
    ):
        problems.append(
            _at(
                source,
                ("dns", "secret_access_key"),
                "and access_key_id go together; expected both, or neither (the service's "
                "own AWS credentials)",
            )
        )
    if provider == "hetzner" and dns["ttl"] < 60:
        problems.append(
            _at(source, ("dns", "ttl"), f"found {dns['ttl']}; Hetzner DNS takes 60 or more")
        )
    zone = dns.get("zone")
    if zone:
        problems += [
            _at(
                source,
                ("apps", index, "domains", d),
                f"{domain} is not in dns.zone {zone}; expected {zone} or a name below it",
            )
            for index, app in enumerate(apps)
            for d, domain in enumerate(app.get("domains") or ())
            if not (domain == zone or domain.endswith("." + zone))
        ]
    return problems


def _secret_refs(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_refs(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_refs(item, (*path, index))
    elif (ref := SecretRef.parse(value)) is not None:
        yield path, ref.name


def secret_checks(config: dict[str, Any], known: Collection[str], source: Locator) -> list[Problem]:
    """Every `secret:NAME` names a secret the store holds."""
    return [
        _at(
            source,
            path,
            f"secret {name!r} is not in the secret store; expected one of the "
            f"stored names, or add it (swapyard never reads secrets from git)",
        )
        for path, name in _secret_refs(config, ())
        if name not in known
    ]


def cross_project_checks(instances: Sequence[Instance]) -> list[Problem]:
    """A domain belongs to one instance per project (DNS can point only one way)."""
    problems = []
    owner: dict[tuple[str, str], str] = {}
    for instance in instances:
        for a, app in enumerate(instance.apps):
            for d, domain in enumerate(app.domains):
                other = owner.setdefault((instance.project, domain), instance.name)
                if other != instance.name:
                    problems.append(
                        Problem(
                            instance.source,
                            None,
                            f"apps[{a}].domains[{d}]",
                            f"{domain} is also served by instance {other!r} in project "
                            f"{instance.project!r}; expected each domain on one instance",
                        )
                    )
    return problems


def _env(plain: dict[str, str], secrets: dict[str, str]) -> tuple[tuple[str, Value], ...]:
    pairs: dict[str, Value] = dict(plain)
    for key, ref in secrets.items():
        parsed = SecretRef.parse(ref)
        assert parsed is not None  # the schema only lets references through
        pairs[key] = parsed
    return tuple(sorted(pairs.items()))


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "-") or "root"


def _data_dir(app_name: str, service: str) -> str:
    """`blog` -> `blog`; `blog-db` -> `blog/db`: each app owns one directory on the volume."""
    return app_name if service == app_name else f"{app_name}/{service[len(app_name) + 1 :]}"


def _container(
    app_name: str,
    name: str,
    spec: dict[str, Any],
    exposed: bool,
    port: int | None,
    depends_on: tuple[str, ...] = (),
) -> Service:
    data = tuple(
        DataMount(f"{_data_dir(app_name, name)}/{_slug(p)}", p) for p in spec.get("data") or []
    )
    health = spec.get("healthcheck")
    writer = spec.get("writer")
    return Service(
        name=name,
        image=spec["image"],
        environment=_env(spec.get("env") or {}, spec.get("secrets") or {}),
        command=tuple(spec["command"]) if spec.get("command") else None,
        data=data,
        files=tuple(FileMount(src, dst) for src, dst in sorted((spec.get("files") or {}).items())),
        writer=bool(data) if writer is None else writer,
        exposed=exposed,
        port=port,
        healthcheck=Healthcheck(
            test=("CMD", *health["command"]),
            interval=health["interval"],
            timeout=health["timeout"],
            retries=health["retries"],
            start_period=health["start_period"],
        )
        if health
        else None,
        depends_on=depends_on,
        user=spec.get("user"),
    )


def _app(app: dict[str, Any]) -> App:
    name, domains = app["name"], tuple(app["domains"])
    if app.get("catalog"):
        built = CATALOG[app["catalog"]].build(name, domains, app["settings"])
        health = app.get("health_path") or built.health_path
        return App(**{**built.__dict__, "path": app["path"], "health_path": health})
    extras = tuple(
        _container(name, f"{name}-{s['name']}", s, exposed=False, port=None)
        for s in app.get("services") or []
    )
    main = _container(
        name, name, app, exposed=True, port=app["port"], depends_on=tuple(s.name for s in extras)
    )
    return App(
        name=name,
        kind="custom",
        domains=domains,
        path=app["path"],
        services=(main, *extras),
        upstream=name,
        port=app["port"],
        health_path=app.get("health_path") or "/",
    )


def instance(
    project: str, name: str, source: str, config: dict[str, Any], files: dict[str, bytes]
) -> Instance:
    """The model of one validated, normalized `apps.config` in one project."""
    from schemas.rules import parse_size

    inst, vol, dns, backup = (config[k] for k in ("instance", "volume", "dns", "backup"))
    size_bytes = parse_size(vol["size"])
    assert size_bytes is not None
    password = SecretRef.parse(backup.get("password"))
    key_secret = SecretRef.parse(dns.get("key_secret"))
    return Instance(
        project=project,
        name=name,
        source=source,
        provider=inst["provider"],
        size=inst["size"],
        region=inst["region"],
        channel=inst["channel"],
        timezone=inst["timezone"],
        https=inst["https"],
        acme_email=inst.get("acme_email"),
        volume=Volume(
            vol["size"], size_bytes, vol["filesystem"], vol["label"], vol["delete_on_destroy"]
        ),
        apps=tuple(_app(a) for a in config["apps"]),
        dns=Dns(
            dns["provider"],
            dns.get("zone"),
            dns["ttl"],
            dns.get("server"),
            dns.get("key_name"),
            key_secret,
            dns["key_algorithm"],
            SecretRef.parse(dns.get("token_secret")),
            dns.get("access_key_id"),
            SecretRef.parse(dns.get("secret_access_key")),
            dns.get("endpoint"),
        ),
        backup=Backup(
            enabled=backup["enabled"],
            schedule=backup["schedule"],
            repository=backup.get("repository"),
            password=password,
            retention=Retention(**backup["retention"]),
            check_schedule=backup["check_schedule"],
            drill_schedule=backup.get("drill_schedule"),
            environment=_env({}, backup.get("env") or {}),
        ),
        state=config["state"],
        files=tuple(sorted(files.items())),
        cpus=inst.get("cpus"),
        memory_bytes=parse_size(inst["memory"]) if inst.get("memory") else None,
    )
