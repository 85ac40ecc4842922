"""limits.json: rendered only when a limit is set, inside the Ignition config and its digest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import schemas
from renderers import render_instance
from renderers.layout import LIMITS
from schemas.model import Instance
from tests.conftest import run_cli
from tests.renderers.helpers import decode_data_url


def test_no_limit_no_artifact(instance: Instance) -> None:
    assert LIMITS not in render_instance(instance).names


def test_limits_travel_in_the_ignition_and_change_the_digest(instance: Instance) -> None:
    limited = replace(instance, cpus=2, memory_bytes=1 << 30)
    artifacts = render_instance(limited)
    assert json.loads(artifacts[LIMITS]) == {"cpus": 2, "memory_bytes": 1 << 30}
    files = json.loads(artifacts["ignition.json"])["storage"]["files"]
    (entry,) = [f for f in files if f["path"] == f"/opt/swapyard/{LIMITS}"]
    assert decode_data_url(entry["contents"]["source"]) == artifacts[LIMITS]
    assert artifacts.digest != render_instance(instance).digest
    assert render_instance(replace(limited, cpus=3)).digest != artifacts.digest


def write_config(root: Path, text: str) -> None:
    (root / "instances" / "web").mkdir(parents=True)
    (root / "instances" / "web" / "apps.config").write_text(text)


def test_the_config_sets_limits(tmp_path: Path) -> None:
    root = tmp_path
    write_config(
        root,
        "instance:\n  cpus: 2\n  memory: 1G\napps:\n  - name: site\n    image: nginx:1.27\n"
        "    domains: [site.example]\n    port: 80\n",
    )
    (instance,) = schemas.load_repo(root).instances
    assert (instance.cpus, instance.memory_bytes) == (2, 1 << 30)


def test_a_bad_limit_names_its_field(tmp_path: Path) -> None:
    root = tmp_path
    write_config(
        root,
        "instance:\n  cpus: 0\n  memory: lots\napps:\n  - name: site\n    image: nginx:1.27\n"
        "    domains: [site.example]\n    port: 80\n",
    )
    result = run_cli("validate", str(root))
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert (
        "instances/web/apps.config" in out and "instance.cpus" in out and "instance.memory" in out
    )
    assert "Traceback" not in out
