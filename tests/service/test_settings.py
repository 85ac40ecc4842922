"""Service settings: defaults < YAML file < SWAPYARD_* environment < create_app(config)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from deploy.providers import registry
from deploy.providers.base import Option, Provider
from service.settings import (
    DEFAULTS,
    SETTINGS,
    ServiceConfigError,
    Settings,
    load_settings,
    settings_markdown,
)


def test_layers_in_order(tmp_path):
    config = tmp_path / "swapyard.yaml"
    config.write_text(
        yaml.safe_dump(
            {"webhook_secret": "from-file", "workers": 3, "public_url": "https://ci.example.org/"}
        )
    )
    env = {
        "SWAPYARD_CONFIG": str(config),
        "SWAPYARD_WORKERS": "7",
        "SWAPYARD_ALLOW_UNSIGNED": "yes",
        "SWAPYARD_DATA_DIR": str(tmp_path / "d"),
        "OTHER": "ignored",
    }
    s = load_settings({"lease_seconds": 5}, environ=env)
    assert s.webhook_secret == "from-file"
    assert s.workers == 7 and s.allow_unsigned is True and s.lease_seconds == 5.0
    assert s.public_url == "https://ci.example.org"
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'swapyard.db'}"


def test_secrets_from_files(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "token").write_text("tok\n")
    s = load_settings(
        {"api_token_file": str(tmp_path / "token")},
        environ={"SWAPYARD_WEBHOOK_SECRET_FILE": str(tmp_path / "secret")},
    )
    assert (s.webhook_secret, s.api_token) == ("s3cret", "tok")
    with pytest.raises(ServiceConfigError, match="cannot read WEBHOOK_SECRET from"):
        load_settings(environ={"SWAPYARD_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    "layer, environ, message",
    [
        ({"webhok_secret": "x"}, {}, "unknown setting 'webhok_secret'"),
        ({}, {"SWAPYARD_WORKERS": "many"}, "SWAPYARD_WORKERS='many': expected a whole number"),
        ({}, {"SWAPYARD_ALLOW_UNSIGNED": "perhaps"}, "expected true or false"),
        ({"allow_unsigned": False}, {}, "no webhook secret configured"),
        (
            {"allow_unsigned": True, "max_yaml_depth": 0},
            {},
            "create_app(config=...): max_yaml_depth: expected a positive whole number, found 0",
        ),
        (
            {"allow_unsigned": True},
            {"SWAPYARD_MAX_YAML_DEPTH": "5000"},
            "SWAPYARD_MAX_YAML_DEPTH='5000': max_yaml_depth: expected at most 100, found 5000",
        ),
        ({"allow_unsigned": True, "max_file_bytes": "1M"}, {}, "max_file_bytes: expected a"),
    ],
)
def test_mistakes_say_what_to_fix(layer, environ, message):
    with pytest.raises(ServiceConfigError, match=re.escape(message)):
        load_settings(layer, environ=environ)


def test_limits_are_settings_like_the_others():
    s = load_settings({"allow_unsigned": True}, environ={"SWAPYARD_MAX_FILE_BYTES": "2048"})
    assert s.limits.max_file_bytes == 2048
    assert s.limits.max_yaml_nodes == 20_000


def test_bad_yaml_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("workers: [1,\n")
    with pytest.raises(ServiceConfigError, match="not valid YAML"):
        load_settings(environ={"SWAPYARD_CONFIG": str(config)})


def test_every_setting_is_described():
    for setting in SETTINGS:
        assert setting.description.endswith((".", ")")), setting.name


def test_docs_list_every_setting():
    from service.settings import settings_markdown
    from tests.service.conftest import ROOT

    doc = (ROOT / "docs" / "service.md").read_text()
    start = doc.index("-->\n", doc.index("<!-- settings:")) + len("-->\n")
    generated = doc[start : doc.index("<!-- /settings -->")]
    assert generated == settings_markdown(), (
        "docs/service.md is stale: regenerate its settings table with `make docs`"
    )


def test_values_are_typed_and_frozen(tmp_path):
    env = {
        "SWAPYARD_ALLOW_UNSIGNED": "true",
        "SWAPYARD_LEASE_SECONDS": "7",
        "SWAPYARD_REPOSITORIES": "{acme/site: /srv/site.git}",
        "SWAPYARD_RENDER_HTTPS": "off",
        "SWAPYARD_STATE_DIR": str(tmp_path / "state"),
        "SWAPYARD_GITHUB_TOKEN": "",
    }
    s = load_settings({"data_dir": str(tmp_path / "d"), "status_timeout_seconds": 3}, environ=env)
    assert isinstance(s, Settings)
    assert s.lease_seconds == 7.0 and isinstance(s.lease_seconds, float)
    assert s.status_timeout_seconds == 3.0 and isinstance(s.status_timeout_seconds, float)
    assert s.workers == 4 and isinstance(s.workers, int)
    assert s.data_dir == (tmp_path / "d").resolve() and s.state_dir == tmp_path / "state"
    assert s.repositories == {"acme/site": "/srv/site.git"} and s.render_https is False
    assert s.github_token is None  # an empty variable is no token
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.workers = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.repositories["other/repo"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.provider_options["edge_admin"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "setting, value, expected",
    [
        ("workers", "4", "a whole number"),
        ("workers", 2.5, "a whole number"),
        ("workers", True, "a whole number"),
        ("workers", -1, "a whole number (0 or more)"),
        ("poll_seconds", float("nan"), "a number"),
        ("poll_seconds", "fast", "a number"),
        ("deploy", "yes", "true or false"),
        ("repositories", ["acme/site"], "a mapping of strings to strings"),
        ("repositories", {"acme/site": 5}, "a mapping of strings to strings"),
        ("public_url", ["http://x"], "a string"),
        ("render_https", "no", "true or false, or null"),
        ("data_dir", "", "a string"),
    ],
)
def test_an_ill_typed_value_names_the_setting_and_its_source(tmp_path, setting, value, expected):
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump({"allow_unsigned": True, setting: value}))
    with pytest.raises(ServiceConfigError) as info:
        load_settings(environ={"SWAPYARD_CONFIG": str(config)})
    assert str(info.value).startswith(f"{config}: {setting}: expected {expected}"), info.value
    with pytest.raises(ServiceConfigError, match=rf"^create_app\(config=\.\.\.\): {setting}: "):
        load_settings({"allow_unsigned": True, setting: value}, environ={})


def test_a_bad_variable_names_itself(tmp_path):
    for variable, raw in [
        ("SWAPYARD_LEASE_SECONDS", "soon"),
        ("SWAPYARD_REPOSITORIES", "[a, b]"),
        ("SWAPYARD_REPOSITORIES", "{a: [unclosed"),
        ("SWAPYARD_EDGE_LISTEN", " , "),
    ]:
        with pytest.raises(
            ServiceConfigError, match=f"^{variable}={raw!r}: expected ".replace("[", r"\[")
        ):
            load_settings({"allow_unsigned": True}, environ={variable: raw})


def test_a_secret_is_not_shown_in_a_message():
    with pytest.raises(ServiceConfigError) as info:
        load_settings({"allow_unsigned": True, "api_token": ["hunter2"]}, environ={})
    assert "hunter2" not in str(info.value) and "api_token: expected a string" in str(info.value)


def test_the_driver_declares_its_own_options(tmp_path):
    from deploy.providers.local.provider import LocalProvider

    declared = {o.name for o in LocalProvider.options}
    assert {"edge_listen", "edge_admin"} <= declared
    assert not {n.lower() for n in DEFAULTS} & declared  # the service declares none of them
    config = tmp_path / "swapyard.yaml"
    config.write_text(yaml.safe_dump({"edge_listen": ["127.0.0.1:9001", "[::1]:9001"]}))
    s = load_settings(
        {"allow_unsigned": True, "stop_timeout": 3},
        environ={"SWAPYARD_CONFIG": str(config), "SWAPYARD_EDGE_ADMIN": "127.0.0.1:9002"},
    )
    assert s.provider_options == {
        "edge_listen": ("127.0.0.1:9001", "[::1]:9001"),
        "edge_admin": "127.0.0.1:9002",
        "edge_addresses": (),
        "use_loop": None,
        "stop_timeout": 3,
    }
    defaults = load_settings({"allow_unsigned": True}, environ={}).provider_options
    assert defaults == {o.name: o.default for o in LocalProvider.options}


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"edge_listen": 8000}, "create_app(config=...): edge_listen: expected a list of strings"),
        ({"edge_admin": None}, "create_app(config=...): edge_admin: expected a string"),
        ({"stop_timeout": "ten"}, "create_app(config=...): stop_timeout: expected a whole number"),
        (
            {"use_loop": "maybe"},
            "create_app(config=...): use_loop: expected true or false, or null",
        ),
        ({"edge_lissen": "x"}, "create_app(config=...): unknown setting 'edge_lissen'; known: "),
        ({"provider": "cloud"}, "provider 'cloud' is not registered (known: "),
    ],
)
def test_provider_options_are_checked_like_the_others(layer, message):
    with pytest.raises(ServiceConfigError) as info:
        load_settings({"allow_unsigned": True, **layer}, environ={})
    assert message in str(info.value)


def test_an_option_of_another_driver_is_unknown_to_this_one():
    """The settings a driver declares are known only when that driver is the provider."""

    class Cloud(Provider):
        name = "cloud"
        options = (Option("region", str, "eu-1", "Where instances run."),)

    drivers = {"local": registry.DRIVERS["local"], "cloud": (__name__, "_CLOUD")}
    globals()["_CLOUD"] = Cloud
    try:
        registry.DRIVERS.update(drivers)
        s = load_settings({"allow_unsigned": True, "provider": "cloud"}, environ={})
        assert dict(s.provider_options) == {"region": "eu-1"}
        with pytest.raises(ServiceConfigError) as info:
            load_settings({"allow_unsigned": True, "region": "eu-2"}, environ={})
        assert str(info.value) == (
            "create_app(config=...): 'region' is a setting of the cloud provider, and provider "
            "is 'local': remove it, or set provider to 'cloud'"
        )
        with pytest.raises(ServiceConfigError, match="'edge_admin' is a setting of the local"):
            load_settings({"allow_unsigned": True, "provider": "cloud", "edge_admin": "x"}, {})
        assert "Settings of the `cloud` provider" in settings_markdown()
        assert "| `region` | `SWAPYARD_REGION` | `'eu-1'` | Where instances run. |" in (
            settings_markdown()
        )
    finally:
        registry.DRIVERS.pop("cloud", None)
        globals().pop("_CLOUD", None)


def test_a_driver_option_may_not_shadow_a_service_setting():
    class Clash(Provider):
        name = "clash"
        options = (Option("workers", int, 1, "Clashes with the service's own."),)

    globals()["_CLASH"] = Clash
    try:
        registry.DRIVERS["clash"] = (__name__, "_CLASH")
        with pytest.raises(ServiceConfigError, match="declares the option 'workers'"):
            load_settings({"allow_unsigned": True, "provider": "clash"}, environ={})
    finally:
        registry.DRIVERS.pop("clash", None)
        globals().pop("_CLASH", None)


def test_a_drivers_declared_defaults_are_its_constructors():
    """One default per option: the declaration's is the one the driver uses when not given."""
    import inspect

    for name in registry.DRIVERS:
        driver = registry.get_driver(name)
        parameters = inspect.signature(driver).parameters
        for option in driver.options:
            assert parameters[f"ex_{option.name}"].default == option.default, (name, option)


def test_the_provider_is_built_from_the_settings(tmp_path):
    from deploy.providers.local.provider import LocalProvider
    from service.worker.deployer import open_provider

    admin = "127.0.0.1:9"  # never contacted: building a provider starts nothing
    s = load_settings(
        {"allow_unsigned": True, "data_dir": str(tmp_path), "edge_admin": admin},
        environ={"SWAPYARD_EDGE_LISTEN": "127.0.0.1:1,127.0.0.1:2", "SWAPYARD_STOP_TIMEOUT": "4"},
    )
    provider = open_provider(s)
    assert isinstance(provider, LocalProvider)
    assert provider.state_dir == tmp_path.resolve() / "state"
    assert provider.edge.listen == ("127.0.0.1:1", "127.0.0.1:2") and provider.edge.admin == admin
    assert provider.stop_timeout == 4
