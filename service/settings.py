"""The service's settings: defaults, then a YAML file, then `SWAPYARD_*` variables.

`Settings` is the one declaration: each field is a setting with its type,
default and description, and `load_settings` builds a frozen `Settings` once
per process (the app keeps it, `settings_of(app)`), so the rest of the service
reads typed values and converts nothing. Three more groups join the same flat
namespace of names: the limits a pushed config repository is read within
(`schemas.limits.Limits`, kept whole as `Settings.limits`), and the options the
chosen provider driver declares (`deploy.providers.base.Option`, kept as
`Settings.provider_options`), so a new driver brings its settings with it and
the service never names them.

A value is checked against its type where it is read, so a mistake names the
setting and where it came from: the YAML file, the `SWAPYARD_*` variable, or
`create_app(config=...)`. Variables are text and are converted; the YAML file
and overrides must already hold the right type. A secret setting may also be
given as `<NAME>_FILE` (a path whose content is the value), which is how
container secrets are usually mounted.
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from deploy.providers.base import Option
from deploy.providers.registry import DRIVERS, get_driver
from deploy.providers.types import UnknownProvider
from schemas.errors import SwapyardError
from schemas.limits import Limits

ENV_PREFIX = "SWAPYARD_"
KEY = "swapyard.settings"  # where an app keeps its Settings (`settings_of`)
OVERRIDES = "create_app(config=...)"


class ServiceConfigError(SwapyardError, ValueError):
    """The service's own configuration is missing or wrong; the message says how to fix it."""


def _declare(default: Any, description: str, *, secret: bool = False) -> Any:
    meta = {"description": description, "secret": secret}
    if isinstance(default, dict):
        return field(default_factory=lambda: types.MappingProxyType(dict(default)), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, typed; built by `load_settings`, never changed."""

    data_dir: Path = _declare(  # noqa: RUF009 (a field, like `field`)
        Path("swapyard-data"), "Directory for the SQLite database and git mirrors."
    )
    database_url: str = _declare("", "SQLAlchemy URL; default (empty) SQLite (WAL) in DATA_DIR.")
    webhook_secret: str | None = _declare(None, "Shared secret of the forge webhooks.", secret=True)
    allow_unsigned: bool = _declare(
        False, "Accept unsigned webhooks when no secret is set (tests only)."
    )
    max_body_bytes: int = _declare(
        5 * 1024 * 1024, "Largest webhook body accepted; larger gets 413."
    )
    public_url: str = _declare("http://127.0.0.1:8080", "Base URL of this service, used in links.")
    api_token: str | None = _declare(
        None, "Bearer token for /api/*; without one the API is closed.", secret=True
    )
    workers: int = _declare(4, "Worker threads in `swapyard serve`/`worker` (0: web only).")
    lease_seconds: float = _declare(
        60.0,
        "How long a claimed event or instance, or the schedule, stays held without renewal.",
    )
    poll_seconds: float = _declare(0.5, "How often an idle worker looks for new work.")
    reconcile_seconds: float = _declare(
        0.0, "How often to look for pushes without a webhook (0: off)."
    )
    repositories: Mapping[str, str] = _declare(
        {},
        "Repository full name -> clone URL (any URL git fetches: https://, ssh://, git://, "
        "file:// or a path); when set, only these are processed.",
    )
    github_api_url: str = _declare(
        "https://api.github.com", "GitHub (Enterprise) REST API base URL."
    )
    github_token: str | None = _declare(
        None, "Token that may post commit statuses on GitHub.", secret=True
    )
    gitea_api_url: str | None = _declare(
        None, "Gitea/Forgejo API base URL, e.g. https://git.example/api/v1."
    )
    gitea_token: str | None = _declare(
        None, "Token that may post commit statuses on Gitea.", secret=True
    )
    gitlab_api_url: str = _declare(
        "https://gitlab.com/api/v4",
        "GitLab REST API v4 base URL, e.g. https://gitlab.example/api/v4 when self-managed.",
    )
    gitlab_token: str | None = _declare(
        None,
        "Token (scope `api`, role Developer or more) that may post commit statuses on GitLab.",
        secret=True,
    )
    status_max_attempts: int = _declare(50, "Attempts before a commit status is given up.")
    status_backoff_seconds: float = _declare(
        2.0, "First retry delay of a status; doubles each time."
    )
    status_backoff_max_seconds: float = _declare(
        300.0, "Longest delay between two status attempts."
    )
    status_timeout_seconds: float = _declare(10.0, "HTTP timeout of one call to the forge API.")
    deploy: bool = _declare(
        True, "Deploy pushes to mapped branches (false: validate and plan only)."
    )
    provider: str = _declare(
        "local",
        "Provider that runs the instances (deploy.providers.registry); its own settings are "
        "listed below, under the provider.",
    )
    state_dir: Path | None = _declare(  # noqa: RUF009 (a field, like `field`)
        None, "Provider state (local: instances, volumes); default DATA_DIR/state."
    )
    secrets_dir: Path | None = _declare(  # noqa: RUF009 (a field, like `field`)
        None, "The secret store: one file per secret; default DATA_DIR/secrets."
    )
    image_map: Mapping[str, str] = _declare(
        {}, "Image -> replacement image (offline machines, tests)."
    )
    render_https: bool | None = _declare(
        None, "Override every instance's `https` (false for local use)."
    )
    ready_timeout: float = _declare(120.0, "Seconds a new instance may take to become ready.")
    health_timeout: float = _declare(
        60.0,
        "Seconds every app has to answer its health check (after a swap, and behind the "
        "maintenance page after a backup, restore or rollback).",
    )
    deploy_lock_wait_seconds: float = _declare(
        1800.0,
        "Seconds a deploy waits for a backup or restore of its instance to end (0: fail at once).",
    )
    dns_owner: str = _declare(
        "swapyard",
        "This installation's name in the ownership mark beside every DNS record it writes "
        "(TXT `_swapyard.<name>`); two installations writing one zone need different ones.",
    )
    backups: bool = _declare(True, "Schedule restic backups of deployed instances (with DEPLOY).")
    # The groups below are declared elsewhere and given as flat settings too.
    limits: Limits = field(default_factory=Limits)
    provider_options: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))


GROUPS = ("limits", "provider_options")  # Settings fields that are not one setting each


@dataclass(frozen=True)
class Setting:
    """One declared setting: `name` as in the environment (upper case), its type and default."""

    name: str
    type: Any
    default: Any
    description: str
    secret: bool = False


def _default(f: Field[Any]) -> Any:
    factory: Any = f.default_factory
    return f.default if factory is MISSING else factory()


def _service_settings() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(Settings)
    declared = [
        Setting(
            f.name.upper(),
            hints[f.name],
            _default(f),
            f.metadata["description"],
            f.metadata["secret"],
        )
        for f in fields(Settings)
        if f.name not in GROUPS
    ]
    # What a pushed config repository may cost the worker (schemas.limits declares them).
    declared += [
        Setting(f.name.upper(), int, f.default, f.metadata["help"] + f" In {f.metadata['unit']}.")
        for f in fields(Limits)
    ]
    return tuple(declared)


SETTINGS: tuple[Setting, ...] = _service_settings()
DEFAULTS = {s.name: s.default for s in SETTINGS}
SECRETS = tuple(s.name for s in SETTINGS if s.secret)
LIMIT_NAMES = tuple(f.name.upper() for f in fields(Limits))


def provider_settings(options: tuple[Option, ...]) -> tuple[Setting, ...]:
    """A driver's declared options as settings (`edge_listen` -> `EDGE_LISTEN`)."""
    return tuple(Setting(o.name.upper(), o.type, o.default, o.help) for o in options)


# -- reading one value -------------------------------------------------------


@dataclass(frozen=True)
class _Given:
    """One value as given: `where` names its source for messages; `text` when from a variable."""

    key: str
    value: Any
    where: str
    text: bool


def _describe(kind: Any) -> str:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return f"{_describe(inner)}, or null"
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a whole number (0 or more)"
    if kind is float:
        return "a number (0 or more)"
    if kind in (str, Path):
        return "a string"
    if typing.get_origin(kind) is tuple:
        return "a list of strings (or one comma-separated string)"
    return "a mapping of strings to strings"


def _convert(kind: Any, value: Any, text: bool) -> Any:
    """`value` as `kind`; raises ValueError when it is not one. `text`: from a variable."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None or (text and value == ""):
            return None
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _convert(inner, value, text)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text and value.lower() in ("1", "true", "yes", "on"):
            return True
        if text and value.lower() in ("0", "false", "no", "off", ""):
            return False
    elif kind in (int, float):
        if text:
            value = int(value) if kind is int else float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(value)
        if kind is int and not isinstance(value, int):
            raise ValueError(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(value)
        return kind(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is Path:
        if isinstance(value, str | Path) and str(value):
            return Path(value)
    elif origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
            found = tuple(i.strip() for i in items if i.strip())
            if found:
                return found
    else:  # a mapping of strings to strings
        mapping = yaml.safe_load(value) if text else value
        if isinstance(mapping, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            return types.MappingProxyType(dict(mapping))
    raise ValueError(value)


def _read(setting: Setting, given: _Given) -> Any:
    try:
        return _convert(setting.type, given.value, given.text)
    except (ValueError, TypeError, AttributeError, yaml.YAMLError):
        shown = "*****" if setting.secret else repr(given.value)
        where = given.where if given.text else f"{given.where}: {given.key}"
        raise ServiceConfigError(
            f"{where}: expected {_describe(setting.type)}, found {shown}"
        ) from None


# -- the layers ----------------------------------------------------------------


def _read_file_setting(name: str, path: str, origin: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServiceConfigError(
            f"{origin}: cannot read {name} from {path!r} ({exc.strerror}); "
            "point it to a readable file holding the value"
        ) from None


def _gather(given: dict[str, _Given], layer: Mapping[str, Any], origin: str) -> None:
    """Note a YAML file's or the overrides' values (later layers replace earlier ones)."""
    for key, value in layer.items():
        name = str(key).upper()
        if name.endswith("_FILE") and name[:-5] in SECRETS:
            if value:
                secret = _read_file_setting(name[:-5], str(value), origin)
                given[name[:-5]] = _Given(str(key)[:-5], secret, origin, False)
            continue
        given[name] = _Given(str(key), value, origin, False)


def _gather_environment(given: dict[str, _Given], environ: Mapping[str, str]) -> None:
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable == f"{ENV_PREFIX}CONFIG":
            continue
        name = variable[len(ENV_PREFIX) :]
        if name.endswith("_FILE") and name[:-5] in SECRETS:
            secret = _read_file_setting(name[:-5], raw, "environment")
            given[name[:-5]] = _Given(name[:-5].lower(), secret, variable, False)
        else:
            given[name] = _Given(name.lower(), raw, f"{variable}={raw!r}", True)


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


def driver_options(provider: str, where: str = "provider") -> tuple[Option, ...]:
    """The options the driver registered as `provider` declares (a clear error if none is)."""
    try:
        options = get_driver(provider).options
    except UnknownProvider as exc:
        raise ServiceConfigError(f"{where}: {exc}") from None
    for option in options:
        if option.name.upper() in DEFAULTS:
            raise ServiceConfigError(
                f"provider {provider!r} declares the option {option.name!r}, which is already "
                "a setting of the service; the driver must rename it"
            )
    return options


def _unknown(key: str, chosen: str, known: Mapping[str, Setting]) -> str:
    """Why `key` is refused: an option of another driver says so, anything else lists the known."""
    owners = [
        name
        for name in sorted(DRIVERS)
        if name != chosen and any(o.name == key.lower() for o in driver_options(name))
    ]
    if owners:
        return (
            f"{key!r} is a setting of the {' and '.join(owners)} provider, and provider is "
            f"{chosen!r}: remove it, or set provider to {owners[0]!r}"
        )
    return f"unknown setting {key!r}; known: {', '.join(sorted(n.lower() for n in known))}"


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the YAML file (`SWAPYARD_CONFIG`/`config_file`), env, then overrides."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    given: dict[str, _Given] = {}
    config_file = overrides.pop("config_file", None) or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        _gather(given, load_yaml_file(config_file), str(config_file))
    _gather_environment(given, environ)
    _gather(given, overrides, OVERRIDES)

    by_name = {s.name: s for s in SETTINGS}
    provider = _Given("provider", DEFAULTS["PROVIDER"], "default", False)
    provider = given.get("PROVIDER", provider)
    chosen = str(_read(by_name["PROVIDER"], provider))
    extra = provider_settings(driver_options(chosen, f"{provider.where}: provider"))
    by_name |= {s.name: s for s in extra}

    values = {s.name: s.default for s in by_name.values()}
    for name, value in given.items():
        if name not in by_name:
            if value.text:  # other SWAPYARD_* variables are not ours to refuse
                continue
            raise ServiceConfigError(f"{value.where}: {_unknown(value.key, chosen, by_name)}")
        values[name] = _read(by_name[name], value)
    return _settle(values, given, tuple(s.name for s in extra))


def _settle(
    values: dict[str, Any], given: Mapping[str, _Given], option_names: tuple[str, ...]
) -> Settings:
    """The checks between settings, the derived defaults, and the frozen `Settings`."""
    if not values["WEBHOOK_SECRET"] and not values["ALLOW_UNSIGNED"]:
        raise ServiceConfigError(
            "no webhook secret configured: set SWAPYARD_WEBHOOK_SECRET (or "
            "SWAPYARD_WEBHOOK_SECRET_FILE, or webhook_secret in the config file); "
            "to accept unsigned webhooks anyway set SWAPYARD_ALLOW_UNSIGNED=true"
        )
    if values["MAX_BODY_BYTES"] <= 0:
        where = given["MAX_BODY_BYTES"].where
        raise ServiceConfigError(f"{where}: max_body_bytes must be a positive number of bytes")
    data_dir = values["DATA_DIR"].resolve()
    values["DATA_DIR"] = data_dir
    if not values["DATABASE_URL"]:
        values["DATABASE_URL"] = f"sqlite:///{data_dir / 'swapyard.db'}"
    values["PUBLIC_URL"] = values["PUBLIC_URL"].rstrip("/")
    try:
        limits = Limits(**{n.lower(): values.pop(n) for n in LIMIT_NAMES})
    except ValueError as exc:
        name = str(exc).split(":", 1)[0].upper()
        where = f"{given[name].where}: " if name in given else ""
        raise ServiceConfigError(f"{where}{exc} (a setting of the service config)") from None
    options = {n.lower(): values.pop(n) for n in option_names}
    return Settings(
        **{n.lower(): v for n, v in values.items()},
        limits=limits,
        provider_options=types.MappingProxyType(options),
    )


def settings_of(app: Any) -> Settings:
    """The settings the app was built with (`service.web.app.create_app` stores them)."""
    settings: Settings = app.extensions[KEY]
    return settings


# -- the generated doc -----------------------------------------------------------


def _shown(default: Any) -> str:
    if isinstance(default, Path):
        default = str(default)
    elif isinstance(default, Mapping):
        default = dict(default)
    elif isinstance(default, tuple):
        default = ",".join(default)
    return f"`{default!r}`"


def _table(settings: tuple[Setting, ...]) -> list[str]:
    lines = [
        "| setting (YAML key) | environment | default | description |",
        "|---|---|---|---|",
    ]
    for s in settings:
        env = f"`{ENV_PREFIX}{s.name}`" + (f", `{ENV_PREFIX}{s.name}_FILE`" if s.secret else "")
        default = "*(secret)*" if s.secret else _shown(s.default)
        lines.append(f"| `{s.name.lower()}` | {env} | {default} | {s.description} |")
    return lines


def settings_markdown() -> str:
    """The settings tables of docs/service.md: the service's, then each driver's options."""
    lines = _table(SETTINGS)
    for provider in sorted(DRIVERS):
        options = provider_settings(driver_options(provider))
        if not options:
            lines += ["", f"The `{provider}` provider declares no settings of its own."]
            continue
        lines += [
            "",
            f"Settings of the `{provider}` provider (declared by its driver; read only when "
            f"`provider` is `{provider}`):",
            "",
            *_table(options),
        ]
    return "\n".join(lines) + "\n"


def update_settings_doc(path: str | Path) -> None:
    """Rewrite the generated settings table between the markers in `path` (docs/service.md)."""
    doc = Path(path).read_text(encoding="utf-8")
    start = doc.index("-->\n", doc.index("<!-- settings:")) + len("-->\n")
    end = doc.index("<!-- /settings -->")
    Path(path).write_text(doc[:start] + settings_markdown() + doc[end:], encoding="utf-8")
