"""Secrets: placeholders when redacted, values only where they must go when resolved."""

from __future__ import annotations

import json

import pytest

from renderers import ArtifactSet, RenderOptions, render_instance
from renderers.secrets import text
from schemas import RenderError, SecretNotFound, SecretRef
from schemas.model import Instance
from tests.renderers.helpers import decode_data_url, fake_secrets, secret_names


def _decoded(artifacts: ArtifactSet) -> dict[str, bytes]:
    """Every artifact, plus each file inside ignition.json decoded from its data URL."""
    out = dict(artifacts.files)
    for entry in json.loads(artifacts["ignition.json"])["storage"]["files"]:
        source = entry["contents"]["source"]
        if source.startswith("data:"):
            out[f"ignition.json:{entry['path']}"] = decode_data_url(source)
    return out


def test_text_by_mode() -> None:
    ref = SecretRef("db")
    assert text("plain", RenderOptions()) == "plain"
    assert text(ref, RenderOptions()) == "<secret:db>"
    assert text(ref, RenderOptions(mode="resolved", secrets={"db": "v"}.get)) == "v"
    with pytest.raises(SecretNotFound, match="'db'"):
        text(ref, RenderOptions(mode="resolved", secrets={}.get))
    with pytest.raises(SecretNotFound):
        text(ref, RenderOptions(mode="resolved", secrets={}.__getitem__))


def test_resolved_without_a_lookup_is_a_render_error(instance: Instance) -> None:
    with pytest.raises(RenderError, match=r"RenderOptions\.secrets"):
        render_instance(instance, RenderOptions(mode="resolved"))


def test_a_missing_secret_names_it(instance: Instance) -> None:
    secrets = fake_secrets(instance)
    service_secrets = {r.name for s in instance.services for _, r in s.secret_environment}
    if not service_secrets:
        pytest.skip("no service secrets in this instance")
    missing = sorted(service_secrets)[0]
    del secrets[missing]
    with pytest.raises(SecretNotFound) as info:
        render_instance(instance, RenderOptions(mode="resolved", secrets=secrets.get))
    assert info.value.name == missing


def test_redacted_output_holds_no_secret_value(instance: Instance) -> None:
    values = fake_secrets(instance).values()
    artifacts = render_instance(instance)
    for name, data in _decoded(artifacts).items():
        for value in values:
            assert value.encode() not in data, name
            assert _env_line_value(value) not in data, name
    for value in values:
        assert value not in json.dumps(artifacts.manifest())


def test_resolved_values_appear_only_in_env_files_and_ignition(instance: Instance) -> None:
    secrets = fake_secrets(instance)
    artifacts = render_instance(instance, RenderOptions(mode="resolved", secrets=secrets.get))
    used = {r.name for s in instance.services for _, r in s.secret_environment}
    seen: set[str] = set()
    for name, data in _decoded(artifacts).items():
        found = {
            n
            for n in secret_names(instance)
            if _env_line_value(secrets[n]) in data or secrets[n].encode() in data
        }
        if found:
            allowed = name.startswith("secrets/") or name.startswith(
                "ignition.json:/opt/swapyard/secrets/"
            )
            assert allowed, (name, found)
            seen |= found
    assert seen == used
    for value in secrets.values():  # settings kept outside the instance stay redacted
        assert value not in json.dumps(artifacts.manifest())


def _env_line_value(value: str) -> bytes:
    """The fake value as an env file spells it (double-quoted, `$` escaped)."""
    return value.replace("$", "\\$").encode()


def test_env_files_are_placeholders_when_redacted(instance: Instance) -> None:
    artifacts = render_instance(instance)
    for service in instance.services:
        if service.secret_environment:
            data = artifacts[f"secrets/{service.name}.env"].decode()
            for key, ref in service.secret_environment:
                assert f"{key}='{ref.placeholder}'\n" in data
