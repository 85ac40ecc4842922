"""Service settings: defaults < YAML file < SWAPYARD_* environment < create_app(config)."""

from __future__ import annotations

import pytest
import yaml

from service.settings import SETTINGS, ServiceConfigError, load_settings


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
    assert s["WEBHOOK_SECRET"] == "from-file"
    assert s["WORKERS"] == 7 and s["ALLOW_UNSIGNED"] is True and s["LEASE_SECONDS"] == 5
    assert s["PUBLIC_URL"] == "https://ci.example.org"
    assert s["DATABASE_URL"] == f"sqlite:///{tmp_path / 'd' / 'swapyard.db'}"


def test_secrets_from_files(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "token").write_text("tok\n")
    s = load_settings(
        {"api_token_file": str(tmp_path / "token")},
        environ={"SWAPYARD_WEBHOOK_SECRET_FILE": str(tmp_path / "secret")},
    )
    assert (s["WEBHOOK_SECRET"], s["API_TOKEN"]) == ("s3cret", "tok")
    with pytest.raises(ServiceConfigError, match="cannot read WEBHOOK_SECRET from"):
        load_settings(environ={"SWAPYARD_WEBHOOK_SECRET_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    "layer, environ, message",
    [
        ({"webhok_secret": "x"}, {}, "unknown setting 'webhok_secret'"),
        ({}, {"SWAPYARD_WORKERS": "many"}, "SWAPYARD_WORKERS='many': expected a int"),
        ({}, {"SWAPYARD_ALLOW_UNSIGNED": "perhaps"}, "expected a bool"),
        ({"allow_unsigned": False}, {}, "no webhook secret configured"),
        (
            {"allow_unsigned": True, "max_yaml_depth": 0},
            {},
            "max_yaml_depth: expected a positive whole number, found 0",
        ),
        (
            {"allow_unsigned": True},
            {"SWAPYARD_MAX_YAML_DEPTH": "5000"},
            "max_yaml_depth: expected at most 100, found 5000",
        ),
        ({"allow_unsigned": True, "max_file_bytes": "1M"}, {}, "max_file_bytes: expected a"),
    ],
)
def test_mistakes_say_what_to_fix(layer, environ, message):
    with pytest.raises(ServiceConfigError, match=message.replace("(", r"\(")):
        load_settings(layer, environ=environ)


def test_limits_are_settings_like_the_others():
    from service.settings import config_limits

    s = load_settings({"allow_unsigned": True}, environ={"SWAPYARD_MAX_FILE_BYTES": "2048"})
    assert config_limits(s).max_file_bytes == 2048
    assert config_limits(s).max_yaml_nodes == 20_000


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
