"""The cerberus schemas of `apps.config` and `swapyard.yaml`, declared as data.

Every field carries `meta.description`; the config reference
(docs/config-reference.md) and the JSON Schema export are generated from
these declarations, so they are the single source of truth. Fields whose
`meta.secret` is true only take `secret:NAME` references. `meta.expected`
words what a `check_with` rule wants, for error messages and docs.
"""

from __future__ import annotations

from typing import Any

from schemas.catalog import CATALOG

Schema = dict[str, Any]

HOSTNAME = r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
NAME = r"[a-z][a-z0-9-]{0,29}"
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
SECRET_REF = r"secret:[A-Za-z0-9_.-]+"
ABS_PATH = r"/[A-Za-z0-9_.@/-]*"
REL_PATH = r"[A-Za-z0-9_][A-Za-z0-9_.@/-]*"


def field(kind: str, description: str, **rules: Any) -> Schema:
    """A schema field: its cerberus type, its description, and further rules."""
    meta = {"description": description}
    for key in ("secret", "expected", "example"):
        if key in rules:
            meta[key] = rules.pop(key)
    return {"type": kind, "meta": meta, **rules}


def secret(description: str, **rules: Any) -> Schema:
    return field(
        "string", description, regex=SECRET_REF, secret=True, expected="secret:NAME", **rules
    )


def env_map(description: str) -> Schema:
    return field(
        "dict",
        description,
        keysrules={"type": "string", "regex": ENV_NAME},
        valuesrules={
            "type": ["string", "integer", "float", "boolean"],
            "coerce": "to_env_string",
        },
        default={},
    )


def secret_map(description: str) -> Schema:
    return field(
        "dict",
        description,
        keysrules={"type": "string", "regex": ENV_NAME},
        valuesrules={"type": "string", "regex": SECRET_REF},
        secret=True,
        expected="a mapping of VARIABLE: secret:NAME",
        default={},
    )


def healthcheck() -> Schema:
    return field(
        "dict",
        "Container healthcheck; compose waits for it before starting dependants.",
        nullable=True,
        default=None,
        schema={
            "command": field(
                "list",
                "Command run inside the container; exit 0 means healthy.",
                required=True,
                minlength=1,
                schema={"type": "string"},
            ),
            "interval": field("integer", "Seconds between checks.", min=1, default=30),
            "timeout": field(
                "integer", "Seconds before a check counts as failed.", min=1, default=10
            ),
            "retries": field("integer", "Failures in a row before unhealthy.", min=1, default=3),
            "start_period": field("integer", "Seconds of grace after start.", min=0, default=30),
        },
    )


def container_fields() -> Schema:
    """Fields shared by a custom app's main container and its extra services."""
    return {
        "image": field(
            "string",
            "Container image with an explicit tag or digest, e.g. `ghcr.io/acme/api:1.4.2`.",
            check_with="image",
            expected="an image with a tag, e.g. name:1.2.3",
        ),
        "command": field(
            "list",
            "Overrides the image's command.",
            schema={"type": "string"},
            nullable=True,
            default=None,
        ),
        "env": env_map("Environment variables with plain values (never secrets)."),
        "secrets": secret_map("Environment variables whose values come from the secret store."),
        "data": field(
            "list",
            "Container paths that hold data; they live on the data volume and survive swaps.",
            schema={"type": "string", "regex": ABS_PATH},
            default=[],
        ),
        "writer": field(
            "boolean",
            "Whether the container writes to the data volume; writers are stopped during "
            "backups and swaps. Defaults to true when `data` is set.",
            nullable=True,
            default=None,
        ),
        "healthcheck": healthcheck(),
        "user": field(
            "string",
            "User (and group) the container runs as, e.g. `1000:1000`.",
            nullable=True,
            default=None,
        ),
    }


APP = {
    "name": field(
        "string",
        "App name: unique in the instance; names its containers and data directory.",
        required=True,
        regex=NAME,
        expected="lowercase letters, digits and '-', starting with a letter, at most 30",
    ),
    "catalog": field(
        "string",
        "A built-in app: " + ", ".join(sorted(CATALOG)) + ". Leave out for a custom app.",
        allowed=sorted(CATALOG),
        nullable=True,
        default=None,
    ),
    "domains": field(
        "list",
        "Domains the app answers on; each gets a Caddy site with automatic HTTPS.",
        required=True,
        minlength=1,
        schema={"type": "string", "regex": HOSTNAME},
    ),
    "path": field(
        "string",
        "Path prefix routed to the app, for several apps on one domain.",
        regex=r"/[A-Za-z0-9_.~/-]*",
        default="/",
    ),
    "settings": field("dict", "Settings of a catalog app (see the catalog below).", default={}),
    "port": field(
        "integer",
        "Port the custom app listens on inside its container.",
        min=1,
        max=65535,
        nullable=True,
        default=None,
    ),
    "health_path": field(
        "string",
        "HTTP path checked through Caddy before traffic moves to a new instance.",
        regex=r"/[^\s]*",
        nullable=True,
        default=None,
    ),
    "files": field(
        "dict",
        "Files shipped from the instance's `files/` directory into the container: "
        "source (relative to files/) -> absolute target path, mounted read-only.",
        keysrules={"type": "string", "regex": REL_PATH},
        valuesrules={"type": "string", "regex": ABS_PATH},
        default={},
    ),
    **container_fields(),
    "services": field(
        "list",
        "Extra containers of a custom app (a database, a worker); reachable by name.",
        default=[],
        schema={
            "type": "dict",
            "schema": {
                "name": field("string", "Service name within the app.", required=True, regex=NAME),
                **container_fields(),
            },
        },
    ),
}

INSTANCE = {
    "provider": field(
        "string",
        "Where the instance runs (`local`, `lxd`, ...); unset: the service's provider. "
        "A service does not deploy an instance that names another provider.",
        regex=NAME,
        nullable=True,
        default=None,
    ),
    "size": field(
        "string",
        "Server type in the provider's words (e.g. `cx22`).",
        regex=r"[A-Za-z0-9._-]+",
        default="small",
    ),
    "region": field(
        "string", "Provider region or location.", regex=r"[A-Za-z0-9._-]+", default="local"
    ),
    "cpus": field(
        "integer",
        "CPU limit where the provider sets one (lxd: `limits.cpu`); unset: no limit.",
        min=1,
        max=1024,
        nullable=True,
        default=None,
    ),
    "memory": field(
        "string",
        "Memory limit where the provider sets one (lxd: `limits.memory`), e.g. `2G`; "
        "unset: no limit.",
        check_with="size",
        expected="a size such as 512M, 10G or 1T (at least 64M)",
        nullable=True,
        default=None,
    ),
    "channel": field(
        "string",
        "Flatcar release channel.",
        allowed=["stable", "beta", "alpha", "lts"],
        default="stable",
    ),
    "timezone": field(
        "string",
        "IANA timezone, used for the instance and its backup schedule.",
        check_with="timezone",
        expected="an IANA timezone, e.g. Europe/Berlin",
        default="UTC",
    ),
    "https": field("boolean", "Automatic HTTPS in Caddy; turn off for local use.", default=True),
    "acme_email": field(
        "string",
        "Contact address for the ACME account.",
        regex=r"[^@\s]+@[^@\s]+",
        nullable=True,
        default=None,
    ),
}

VOLUME = {
    "size": field(
        "string",
        "Size of the data volume, e.g. `10G` or `512M`.",
        check_with="size",
        expected="a size such as 512M, 10G or 1T (at least 64M)",
        default="10G",
    ),
    "filesystem": field(
        "string",
        "Filesystem; `btrfs` enables short snapshot backups.",
        allowed=["ext4", "xfs", "btrfs"],
        default="ext4",
    ),
    "label": field(
        "string",
        "Filesystem label the instance mounts the volume by.",
        regex=r"[A-Za-z0-9_-]{1,16}",
        default="swdata",
    ),
    "delete_on_destroy": field(
        "boolean", "Delete the volume when the instance is destroyed.", default=False
    ),
}

DNS = {
    "provider": field(
        "string",
        "Where the apps' domains get their address records: `none` (swapyard writes no "
        "records), `rfc2136` (dynamic updates signed with TSIG: BIND, PowerDNS, Knot), "
        "`route53` (Amazon Route 53) or `hetzner` (Hetzner DNS).",
        allowed=["none", "rfc2136", "route53", "hetzner"],
        default="none",
    ),
    "zone": field(
        "string",
        "Zone the records are written to; every domain of the instance must be in it.",
        regex=HOSTNAME,
        nullable=True,
        default=None,
    ),
    "ttl": field(
        "integer",
        "TTL of the records, in seconds; after a swap that moves them, the old instance "
        "serves this long before it is destroyed.",
        min=30,
        max=86400,
        default=300,
    ),
    "server": field(
        "string",
        "rfc2136: the zone's primary server, `host`, `host:port` or `[IPv6]:port`.",
        regex=r"[A-Za-z0-9.:\[\]-]+",
        nullable=True,
        default=None,
    ),
    "key_name": field("string", "rfc2136: TSIG key name.", nullable=True, default=None),
    "key_algorithm": field(
        "string",
        "rfc2136: TSIG algorithm.",
        allowed=["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"],
        default="hmac-sha256",
    ),
    "key_secret": secret("rfc2136: TSIG key secret (base64).", nullable=True, default=None),
    "token_secret": secret("hetzner: API token.", nullable=True, default=None),
    "access_key_id": field(
        "string",
        "route53: AWS access key id (default: the service's own AWS credentials).",
        regex=r"[A-Z0-9]{16,128}",
        nullable=True,
        default=None,
    ),
    "secret_access_key": secret(
        "route53: AWS secret access key, with `access_key_id`.", nullable=True, default=None
    ),
    "endpoint": field(
        "string",
        "route53, hetzner: the API's base URL, for a compatible service (default: the "
        "provider's public API).",
        regex=r"https?://[^\s]+",
        nullable=True,
        default=None,
    ),
}

BACKUP = {
    "enabled": field("boolean", "Back up the data volume with restic.", default=False),
    "schedule": field(
        "string",
        "Cron schedule in the instance's timezone.",
        check_with="cron",
        expected="a 5-field cron expression, e.g. '0 3 * * *'",
        default="0 3 * * *",
    ),
    "check_schedule": field(
        "string",
        "Cron schedule of `restic check`.",
        check_with="cron",
        expected="a 5-field cron expression",
        default="0 5 * * 0",
    ),
    "drill_schedule": field(
        "string",
        "Cron schedule of a restore drill: the latest snapshot restored into a scratch "
        "volume and compared with its file list; unset, drills run only on demand.",
        check_with="cron",
        expected="a 5-field cron expression",
        nullable=True,
        default=None,
    ),
    "repository": field(
        "string",
        "restic repository: an absolute path, `s3:`, `b2:` or `rest:` URL. The project and "
        "instance are appended, so one repository can serve many instances.",
        regex=r"(/|s3:|b2:|rest:)\S*",
        expected="an absolute path or an s3:, b2: or rest: URL",
        nullable=True,
        default=None,
    ),
    "password": secret("restic repository password.", nullable=True, default=None),
    "retention": field(
        "dict",
        "Snapshots kept by `restic forget --prune`.",
        default={},
        schema={
            k: field("integer", f"Keep the last N {k} snapshots.", min=0, default=d)
            for k, d in (("daily", 7), ("weekly", 4), ("monthly", 6), ("yearly", 0))
        },
    ),
    "env": secret_map("Credentials for the repository backend, e.g. AWS_ACCESS_KEY_ID."),
}

APPS_CONFIG: Schema = {
    "instance": field("dict", "The server itself.", schema=INSTANCE, default={}),
    "state": field(
        "string",
        "`absent` destroys the instance; removing its directory does not.",
        allowed=["present", "absent"],
        default="present",
    ),
    "volume": field(
        "dict", "The persistent data volume, moved across swaps.", schema=VOLUME, default={}
    ),
    "apps": field(
        "list",
        "The apps the instance runs.",
        required=True,
        minlength=1,
        schema={"type": "dict", "schema": APP},
    ),
    "dns": field("dict", "DNS records for the apps' domains.", schema=DNS, default={}),
    "backup": field("dict", "Daily restic backups of the data volume.", schema=BACKUP, default={}),
}

_DEFAULTABLE = ("instance", "volume", "dns", "backup")

PROJECT = {
    "branches": field(
        "list",
        "Branches whose pushes deploy to this project.",
        schema={"type": "string", "regex": r"[^\s~^:?*\[\\]+"},
        required=True,
        minlength=1,
    ),
    "instances": field(
        "list",
        "Instance names (globs) in this project; `!glob` excludes.",
        schema={"type": "string", "regex": r"!?[a-z0-9*?\[\]-]+"},
        default=["*"],
    ),
    "defaults": field(
        "dict",
        "Defaults for this project's instances, over the repo-wide ones.",
        schema={k: dict(APPS_CONFIG[k], default=None, nullable=True) for k in _DEFAULTABLE},
        default={},
    ),
}

REPO_CONFIG: Schema = {
    "defaults": field(
        "dict",
        "Repo-wide defaults merged under every `apps.config`.",
        schema={k: dict(APPS_CONFIG[k], default=None, nullable=True) for k in _DEFAULTABLE},
        default={},
    ),
    "projects": field(
        "dict",
        "Projects by name, each with the branches that deploy to it. Default: "
        "`production` from `main`.",
        keysrules={"type": "string", "regex": NAME},
        valuesrules={"type": "dict", "schema": PROJECT},
        default={"production": {"branches": ["main"]}},
    ),
}
