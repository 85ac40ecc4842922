"""Generated docs and schema exports stay current and correct."""

from __future__ import annotations

import json

import jsonschema
import yaml

from schemas.export import json_schema, markdown_reference
from tests.conftest import EXAMPLES, REPO, run_cli

REFERENCE = REPO / "docs" / "config-reference.md"


def test_config_reference_is_current() -> None:
    assert REFERENCE.read_text() == markdown_reference(), (
        "docs/config-reference.md is stale: run "
        "`swapyard schema --format markdown --out docs/config-reference.md`"
    )


def test_every_schema_field_is_documented() -> None:
    text = REFERENCE.read_text()
    for field in (
        "`instance.timezone`",
        "`apps[].domains`",
        "`backup.retention.daily`",
        "`volume.filesystem`",
        "`projects`",
        "`apps[].services[].image`",
    ):
        assert field in text


def test_json_schema_is_valid_and_accepts_the_examples() -> None:
    for which, pattern in (
        ("apps.config", "instances/*/apps.config"),
        ("swapyard.yaml", "swapyard.yaml"),
    ):
        schema = json_schema(which)
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        files = sorted((EXAMPLES / "config-repo").glob(pattern))
        assert files
        for path in files:
            errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
            assert errors == [], path


def test_json_schema_rejects_what_validation_rejects() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    bad = {
        "apps": [
            {
                "name": "Blog",
                "domains": ["x_y"],
                "bogus": 1,
                "catalog": "ghost",
                "settings": {"db_password": "inline"},
            }
        ]
    }
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "'Blog' does not match" in messages and "'x_y' does not match" in messages
    assert "'bogus' was unexpected" in messages and "'inline' does not match" in messages


def test_cli_schema_prints_json() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "apps.config"
