"""The service's settings: defaults, then a YAML file, then `SWAPYARD_*` variables.

Every setting is declared once in `SETTINGS` with its default and a
description, so `swapyard serve --help`-style docs can be generated from it.
A secret setting may also be given as `<NAME>_FILE` (a path whose content is
the value), which is how container secrets are usually mounted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from schemas.errors import SwapyardError
from schemas.limits import Limits

ENV_PREFIX = "SWAPYARD_"


class ServiceConfigError(SwapyardError, ValueError):
    """The service's own configuration is missing or wrong; the message says how to fix it."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("DATA_DIR", "./swapyard-data", "Directory for the SQLite database and git mirrors."),
    Setting("DATABASE_URL", None, "SQLAlchemy URL; default SQLite (WAL) in DATA_DIR."),
    Setting("WEBHOOK_SECRET", None, "Shared secret of the forge webhooks.", secret=True),
    Setting(
        "ALLOW_UNSIGNED", False, "Accept unsigned webhooks when no secret is set (tests only)."
    ),
    Setting("MAX_BODY_BYTES", 5 * 1024 * 1024, "Largest webhook body accepted; larger gets 413."),
    Setting("PUBLIC_URL", "http://127.0.0.1:8080", "Base URL of this service, used in links."),
    Setting(
        "API_TOKEN", None, "Bearer token for /api/*; without one the API is closed.", secret=True
    ),
    Setting("WORKERS", 4, "Worker threads in `swapyard serve`/`worker` (0: web only)."),
    Setting(
        "LEASE_SECONDS",
        60,
        "How long a claimed event or instance, or the schedule, stays held without renewal.",
    ),
    Setting("POLL_SECONDS", 0.5, "How often an idle worker looks for new work."),
    Setting("RECONCILE_SECONDS", 0.0, "How often to look for pushes without a webhook (0: off)."),
    Setting(
        "REPOSITORIES",
        {},
        "Repository full name -> clone URL (any URL git fetches: https://, ssh://, git://, "
        "file:// or a path); when set, only these are processed.",
    ),
    Setting("GITHUB_API_URL", "https://api.github.com", "GitHub (Enterprise) REST API base URL."),
    Setting("GITHUB_TOKEN", None, "Token that may post commit statuses on GitHub.", secret=True),
    Setting("GITEA_API_URL", None, "Gitea/Forgejo API base URL, e.g. https://git.example/api/v1."),
    Setting("GITEA_TOKEN", None, "Token that may post commit statuses on Gitea.", secret=True),
    Setting(
        "GITLAB_API_URL",
        "https://gitlab.com/api/v4",
        "GitLab REST API v4 base URL, e.g. https://gitlab.example/api/v4 when self-managed.",
    ),
    Setting(
        "GITLAB_TOKEN",
        None,
        "Token (scope `api`, role Developer or more) that may post commit statuses on GitLab.",
        secret=True,
    ),
    Setting("STATUS_MAX_ATTEMPTS", 50, "Attempts before a commit status is given up."),
    Setting("STATUS_BACKOFF_SECONDS", 2.0, "First retry delay of a status; doubles each time."),
    Setting("STATUS_BACKOFF_MAX_SECONDS", 300.0, "Longest delay between two status attempts."),
    Setting("STATUS_TIMEOUT_SECONDS", 10.0, "HTTP timeout of one call to the forge API."),
    Setting("DEPLOY", True, "Deploy pushes to mapped branches (false: validate and plan only)."),
    Setting("PROVIDER", "local", "Provider that runs the instances (deploy.providers.registry)."),
    Setting(
        "STATE_DIR", None, "Provider state (local: instances, volumes); default DATA_DIR/state."
    ),
    Setting(
        "SECRETS_DIR", None, "The secret store: one file per secret; default DATA_DIR/secrets."
    ),
    Setting("EDGE_LISTEN", "127.0.0.1:8000", "Local edge: comma-separated host:port to serve on."),
    Setting("EDGE_ADMIN", "127.0.0.1:2119", "Local edge: address of its Caddy admin API."),
    Setting("IMAGE_MAP", {}, "Image -> replacement image (offline machines, tests)."),
    Setting("RENDER_HTTPS", None, "Override every instance's `https` (false for local use)."),
    Setting("READY_TIMEOUT", 120.0, "Seconds a new instance may take to become ready."),
    Setting(
        "HEALTH_TIMEOUT",
        60.0,
        "Seconds every app has to answer its health check (after a swap, and behind the "
        "maintenance page after a backup, restore or rollback).",
    ),
    Setting(
        "DEPLOY_LOCK_WAIT_SECONDS",
        1800.0,
        "Seconds a deploy waits for a backup or restore of its instance to end (0: fail at once).",
    ),
    Setting("BACKUPS", True, "Schedule restic backups of deployed instances (with DEPLOY)."),
    # What a pushed config repository may cost the worker (schemas.limits declares them).
    *(
        Setting(f.name.upper(), f.default, f.metadata["help"] + f" In {f.metadata['unit']}.")
        for f in fields(Limits)
    ),
)
DEFAULTS = {s.name: s.default for s in SETTINGS}
SECRETS = tuple(s.name for s in SETTINGS if s.secret)


def _coerce(name: str, raw: str) -> Any:
    """An environment string turned into the type of the setting's default."""
    default = DEFAULTS[name]
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, dict):
            value = yaml.safe_load(raw)
            if not isinstance(value, dict):
                raise ValueError(raw)
            return value
    except ValueError:
        kind = type(default).__name__
        raise ServiceConfigError(
            f"{ENV_PREFIX}{name}={raw!r}: expected a {kind} like {default!r}"
        ) from None
    return raw


def _read_file_setting(name: str, path: str, origin: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServiceConfigError(
            f"{origin}: cannot read {name} from {path!r} ({exc.strerror}); "
            "point it to a readable file holding the value"
        ) from None


def _apply(values: dict[str, Any], layer: Mapping[str, Any], origin: str) -> None:
    for key, value in layer.items():
        name = str(key).upper()
        if name.endswith("_FILE") and name[:-5] in SECRETS:
            if value:
                values[name[:-5]] = _read_file_setting(name[:-5], str(value), origin)
            continue
        if name not in DEFAULTS:
            known = ", ".join(sorted(n.lower() for n in DEFAULTS))
            raise ServiceConfigError(f"{origin}: unknown setting {key!r}; known: {known}")
        values[name] = value


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ServiceConfigError(
            f"{path}: cannot read the service config ({exc.strerror})"
        ) from None
    except yaml.YAMLError as exc:
        raise ServiceConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ServiceConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Defaults, then the YAML file (`SWAPYARD_CONFIG`/`config_file`), env, then overrides."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    values = dict(DEFAULTS)
    config_file = overrides.pop("config_file", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        _apply(values, load_yaml_file(config_file), str(config_file))
    env_layer: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}CONFIG":
            continue
        name = key[len(ENV_PREFIX) :]
        if name.endswith("_FILE") and name[:-5] in SECRETS:
            env_layer[name] = raw
        elif name in DEFAULTS:
            env_layer[name] = _coerce(name, raw)
    _apply(values, env_layer, "environment")
    _apply(values, overrides, "create_app(config=...)")
    return check(values)


def check(values: dict[str, Any]) -> dict[str, Any]:
    if not values["WEBHOOK_SECRET"] and not values["ALLOW_UNSIGNED"]:
        raise ServiceConfigError(
            "no webhook secret configured: set SWAPYARD_WEBHOOK_SECRET (or "
            "SWAPYARD_WEBHOOK_SECRET_FILE, or webhook_secret in the config file); "
            "to accept unsigned webhooks anyway set SWAPYARD_ALLOW_UNSIGNED=true"
        )
    data_dir = Path(values["DATA_DIR"]).resolve()
    values["DATA_DIR"] = str(data_dir)
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{data_dir / 'swapyard.db'}"
    values["PUBLIC_URL"] = str(values["PUBLIC_URL"]).rstrip("/")
    if int(values["MAX_BODY_BYTES"]) <= 0:
        raise ServiceConfigError("max_body_bytes must be a positive number of bytes")
    config_limits(values)
    return values


def config_limits(values: Mapping[str, Any]) -> Limits:
    """The `Limits` a pushed config repository is read within, from the settings."""
    try:
        return Limits(**{f.name: values.get(f.name.upper(), f.default) for f in fields(Limits)})
    except (ValueError, TypeError) as exc:
        raise ServiceConfigError(f"{exc} (a setting of the service config)") from None


def settings_markdown() -> str:
    """The settings table of docs/service.md, generated from `SETTINGS`."""
    lines = [
        "| setting (YAML key) | environment | default | description |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        env = f"`{ENV_PREFIX}{s.name}`" + (f", `{ENV_PREFIX}{s.name}_FILE`" if s.secret else "")
        default = "*(secret)*" if s.secret else f"`{s.default!r}`"
        lines.append(f"| `{s.name.lower()}` | {env} | {default} | {s.description} |")
    return "\n".join(lines) + "\n"


def update_settings_doc(path: str | Path) -> None:
    """Rewrite the generated settings table between the markers in `path` (docs/service.md)."""
    doc = Path(path).read_text(encoding="utf-8")
    start = doc.index("-->\n", doc.index("<!-- settings:")) + len("-->\n")
    end = doc.index("<!-- /settings -->")
    Path(path).write_text(doc[:start] + settings_markdown() + doc[end:], encoding="utf-8")
