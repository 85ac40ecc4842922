"""Helpers for renderer tests: the example repository, fake secrets, reference files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import schemas
from schemas.model import Instance, SecretRef
from tests.conftest import reference

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "config-repo"


def load_json_reference(relative: str) -> Any:
    return json.loads(reference(relative).read_text())


def example_instances() -> tuple[Instance, ...]:
    return schemas.load_repo(EXAMPLES).instances


def secret_names(instance: Instance) -> set[str]:
    """Every secret name an instance references."""
    values: list[object] = [v for s in instance.services for _, v in s.environment]
    values += [instance.backup.password, instance.dns.key_secret]
    values += [v for _, v in instance.backup.environment]
    return {v.name for v in values if isinstance(v, SecretRef)}


def fake_secret(name: str) -> str:
    """A recognisable value per name; with quote and dollar to exercise env-file quoting."""
    return f"FAKE-{name}-s3cr3t$x'q"


def fake_secrets(instance: Instance) -> dict[str, str]:
    return {name: fake_secret(name) for name in secret_names(instance)}


def decode_data_url(source: str) -> bytes:
    prefix = "data:;base64,"
    assert source.startswith(prefix), source[:40]
    return base64.b64decode(source[len(prefix) :])
