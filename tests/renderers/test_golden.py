"""Golden files and determinism: the example repository renders to known bytes.

Golden files live in tests/renderers/golden/<project>/<instance>/, written by
`ArtifactSet.write` (the artifacts plus manifest.json). After a deliberate
change to a renderer, regenerate them and review the diff:

    SWAPYARD_UPDATE_GOLDEN=1 .venv/bin/pytest tests/renderers/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from renderers import RenderOptions, render_instance
from schemas.model import Instance
from tests.renderers.helpers import fake_secrets

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("SWAPYARD_UPDATE_GOLDEN") == "1"


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_golden_files_are_current(instance: Instance, tmp_path: Path) -> None:
    golden = GOLDEN / instance.project / instance.name
    artifacts = render_instance(instance)
    if UPDATE:
        artifacts.write(golden)
    if not golden.is_dir():
        pytest.fail(f"{golden} is missing; run with SWAPYARD_UPDATE_GOLDEN=1 to create it")
    artifacts.write(tmp_path)
    want, got = _tree(golden), _tree(tmp_path)
    stale = sorted(name for name in want.keys() | got.keys() if want.get(name) != got.get(name))
    assert not stale, (
        f"golden files of {instance.key} are stale: {stale}; if the change is intended, "
        "regenerate with SWAPYARD_UPDATE_GOLDEN=1 and review the diff"
    )


def test_no_golden_directory_without_an_instance(examples: tuple[Instance, ...]) -> None:
    if not GOLDEN.is_dir():
        pytest.skip("no golden files yet")
    keys = {f"{p.parent.name}/{p.name}" for p in GOLDEN.glob("*/*") if p.is_dir()}
    assert keys <= {i.key for i in examples}, "golden files for an instance no longer in examples"


def test_render_is_deterministic(instance: Instance) -> None:
    first, second = render_instance(instance), render_instance(instance)
    assert first.files == second.files
    assert first.digest == second.digest
    options = RenderOptions(mode="resolved", secrets=fake_secrets(instance).get)
    assert render_instance(instance, options).files == render_instance(instance, options).files


def test_digest_follows_every_byte(instance: Instance) -> None:
    artifacts = render_instance(instance)
    resolved = render_instance(
        instance, RenderOptions(mode="resolved", secrets=fake_secrets(instance).get)
    )
    has_secrets = any(s.secret_environment for s in instance.services)
    assert (artifacts.digest != resolved.digest) == has_secrets
    assert artifacts.digest.startswith("sha256:")
