"""Built-in apps: each a recipe that expands one `apps:` entry into services.

A catalog app takes `settings` (validated against the entry's own cerberus
schema, with secret fields marked) and turns into the same `App`/`Service`
values a custom app produces, so renderers know nothing about the catalog.
Images are real upstream images with pinned tags; the service config can map
any of them to another name (offline machines and tests do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.model import App, DataMount, Healthcheck, SecretRef, Service, Value

Settings = dict[str, Any]


def secret_field(description: str, required: bool = True) -> dict[str, Any]:
    """A settings field that only takes a `secret:NAME` reference."""
    return {
        "type": "string",
        "required": required,
        "regex": r"secret:[A-Za-z0-9_.-]+",
        "meta": {"description": description, "secret": True},
    }


def _str(description: str, default: str) -> dict[str, Any]:
    return {"type": "string", "default": default, "meta": {"description": description}}


def _bool(description: str, default: bool) -> dict[str, Any]:
    return {"type": "boolean", "default": default, "meta": {"description": description}}


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    images: tuple[str, ...]
    settings: dict[str, Any]
    build: Callable[[str, tuple[str, ...], Settings], App]


def _env(**pairs: object) -> tuple[tuple[str, Value], ...]:
    out: list[tuple[str, Value]] = []
    for key, value in pairs.items():
        ref = SecretRef.parse(value)
        out.append((key, ref if ref else str(value)))
    return tuple(sorted(out, key=lambda kv: kv[0]))


def _url(domains: tuple[str, ...]) -> str:
    return f"https://{domains[0]}"


POSTGRES = "postgres:16.6-alpine"
REDIS = "redis:7.4.1-alpine"
MYSQL = "mysql:8.0.40"
MARIADB = "mariadb:11.4.4"


def _db_health(kind: str) -> Healthcheck:
    tests = {
        "postgres": ("CMD-SHELL", "pg_isready -U $$POSTGRES_USER"),
        "mysql": ("CMD-SHELL", "mysqladmin ping -h 127.0.0.1 --silent"),
        "mariadb": ("CMD", "healthcheck.sh", "--connect", "--innodb_initialized"),
        "redis": ("CMD", "redis-cli", "ping"),
    }
    return Healthcheck(test=tests[kind], interval=10, timeout=5, retries=10, start_period=20)


def _static(name: str, domains: tuple[str, ...], s: Settings) -> App:
    return App(name=name, kind="static", domains=domains, static_root=s["root"])


def _nextcloud(name: str, domains: tuple[str, ...], s: Settings) -> App:
    db = Service(
        name=f"{name}-db",
        image=POSTGRES,
        environment=_env(
            POSTGRES_DB="nextcloud",
            POSTGRES_USER="nextcloud",
            POSTGRES_PASSWORD=s["db_password"],
        ),
        data=(DataMount(f"{name}/postgres", "/var/lib/postgresql/data"),),
        writer=True,
        healthcheck=_db_health("postgres"),
    )
    cache = Service(name=f"{name}-redis", image=REDIS, healthcheck=_db_health("redis"))
    web = Service(
        name=name,
        image="nextcloud:30.0.4-apache",
        environment=_env(
            POSTGRES_HOST=db.name,
            POSTGRES_DB="nextcloud",
            POSTGRES_USER="nextcloud",
            POSTGRES_PASSWORD=s["db_password"],
            NEXTCLOUD_ADMIN_USER=s["admin_user"],
            NEXTCLOUD_ADMIN_PASSWORD=s["admin_password"],
            NEXTCLOUD_TRUSTED_DOMAINS=" ".join(domains),
            OVERWRITEPROTOCOL="https",
            REDIS_HOST=cache.name,
        ),
        data=(DataMount(f"{name}/html", "/var/www/html"),),
        writer=True,
        exposed=True,
        port=80,
        depends_on=(db.name, cache.name),
    )
    return _exposed_app("nextcloud", domains, "/status.php", web, db, cache)


def _exposed_app(
    kind: str, domains: tuple[str, ...], health: str, web: Service, *backing: Service
) -> App:
    """An app whose first service faces the internet and the rest back it."""
    return App(
        name=web.name,
        kind=kind,
        domains=domains,
        upstream=web.name,
        port=web.port,
        health_path=health,
        services=(web, *backing),
    )


def _mysql_like(name: str, s: Settings, flavour: str, image: str, database: str) -> Service:
    """The MySQL or MariaDB container of an app (their images take the same variables)."""
    prefix = flavour.upper()
    return Service(
        name=f"{name}-db",
        image=image,
        environment=_env(
            **{
                f"{prefix}_DATABASE": database,
                f"{prefix}_USER": database,
                f"{prefix}_PASSWORD": s["db_password"],
                f"{prefix}_ROOT_PASSWORD": s["db_root_password"],
            }
        ),
        data=(DataMount(f"{name}/{flavour}", "/var/lib/mysql"),),
        writer=True,
        healthcheck=_db_health(flavour),
    )


def _ghost(name: str, domains: tuple[str, ...], s: Settings) -> App:
    db = _mysql_like(name, s, "mysql", MYSQL, "ghost")
    web = Service(
        name=name,
        image="ghost:5.105.0-alpine",
        environment=_env(
            url=_url(domains),
            database__client="mysql",
            database__connection__host=db.name,
            database__connection__user="ghost",
            database__connection__password=s["db_password"],
            database__connection__database="ghost",
            NODE_ENV="production",
        ),
        data=(DataMount(f"{name}/content", "/var/lib/ghost/content"),),
        writer=True,
        exposed=True,
        port=2368,
        depends_on=(db.name,),
    )
    return _exposed_app("ghost", domains, "/ghost/api/admin/site/", web, db)


def _wordpress(name: str, domains: tuple[str, ...], s: Settings) -> App:
    db = _mysql_like(name, s, "mariadb", MARIADB, "wordpress")
    web = Service(
        name=name,
        image="wordpress:6.7.1-apache",
        environment=_env(
            WORDPRESS_DB_HOST=db.name,
            WORDPRESS_DB_USER="wordpress",
            WORDPRESS_DB_PASSWORD=s["db_password"],
            WORDPRESS_DB_NAME="wordpress",
        ),
        data=(DataMount(f"{name}/html", "/var/www/html"),),
        writer=True,
        exposed=True,
        port=80,
        depends_on=(db.name,),
    )
    return _exposed_app("wordpress", domains, "/wp-login.php", web, db)


def _single(
    kind: str, image: str, port: int, data: str, health: str
) -> Callable[[str, tuple[str, ...], Settings], App]:
    """A catalog app made of one container that keeps everything under one data path."""

    def build(name: str, domains: tuple[str, ...], s: Settings) -> App:
        web = Service(
            name=name,
            image=image,
            environment=_ENV_BUILDERS[kind](domains, s),
            data=(DataMount(f"{name}/data", data),),
            writer=True,
            exposed=True,
            port=port,
        )
        return _exposed_app(kind, domains, health, web)

    return build


def _vaultwarden_env(domains: tuple[str, ...], s: Settings) -> tuple[tuple[str, Value], ...]:
    pairs: dict[str, object] = {
        "DOMAIN": _url(domains),
        "SIGNUPS_ALLOWED": str(s["signups_allowed"]).lower(),
    }
    if s.get("admin_token"):
        pairs["ADMIN_TOKEN"] = s["admin_token"]
    return _env(**pairs)


def _forgejo_env(domains: tuple[str, ...], s: Settings) -> tuple[tuple[str, Value], ...]:
    return _env(
        USER_UID="1000",
        USER_GID="1000",
        FORGEJO__server__ROOT_URL=_url(domains) + "/",
        FORGEJO__server__DOMAIN=domains[0],
        FORGEJO__database__DB_TYPE="sqlite3",
        FORGEJO__service__DISABLE_REGISTRATION=str(s["disable_registration"]).lower(),
    )


def _kuma_env(domains: tuple[str, ...], s: Settings) -> tuple[tuple[str, Value], ...]:
    return ()


_ENV_BUILDERS = {
    "vaultwarden": _vaultwarden_env,
    "forgejo": _forgejo_env,
    "uptime-kuma": _kuma_env,
}

_DB_SECRETS = {
    "db_password": secret_field("Password of the app's database user."),
    "db_root_password": secret_field("Password of the database's root user."),
}

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            "static",
            "A static site: files from the instance's files/ directory, served by Caddy.",
            (),
            {
                "root": {
                    "type": "string",
                    "default": "site",
                    "regex": r"[A-Za-z0-9_][A-Za-z0-9_./-]*",
                    "meta": {"description": "Directory under files/ that holds the site."},
                }
            },
            _static,
        ),
        CatalogEntry(
            "nextcloud",
            "Nextcloud with PostgreSQL and Redis.",
            ("nextcloud:30.0.4-apache", POSTGRES, REDIS),
            {
                "admin_user": _str("Name of the first admin account.", "admin"),
                "admin_password": secret_field("Password of the first admin account."),
                "db_password": _DB_SECRETS["db_password"],
            },
            _nextcloud,
        ),
        CatalogEntry(
            "ghost",
            "Ghost blog with MySQL.",
            ("ghost:5.105.0-alpine", MYSQL),
            dict(_DB_SECRETS),
            _ghost,
        ),
        CatalogEntry(
            "wordpress",
            "WordPress with MariaDB.",
            ("wordpress:6.7.1-apache", MARIADB),
            dict(_DB_SECRETS),
            _wordpress,
        ),
        CatalogEntry(
            "vaultwarden",
            "Vaultwarden, a Bitwarden-compatible password server.",
            ("vaultwarden/server:1.32.7",),
            {
                "admin_token": secret_field("Token for the /admin page; unset disables it.", False),
                "signups_allowed": _bool("Whether anyone may create an account.", False),
            },
            _single("vaultwarden", "vaultwarden/server:1.32.7", 80, "/data", "/alive"),
        ),
        CatalogEntry(
            "forgejo",
            "Forgejo git forge (SQLite).",
            ("codeberg.org/forgejo/forgejo:9.0.3",),
            {"disable_registration": _bool("Close sign-up after the first account.", True)},
            _single("forgejo", "codeberg.org/forgejo/forgejo:9.0.3", 3000, "/data", "/api/healthz"),
        ),
        CatalogEntry(
            "uptime-kuma",
            "Uptime Kuma status monitor.",
            ("louislam/uptime-kuma:1.23.16",),
            {},
            _single("uptime-kuma", "louislam/uptime-kuma:1.23.16", 3001, "/app/data", "/"),
        ),
    )
}
