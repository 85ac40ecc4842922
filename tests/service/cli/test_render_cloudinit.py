"""`swapyard render --format cloud-init`: user-data beside the artifacts, never one of them."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES, REPO, run_cli

REPOSITORY = EXAMPLES / "config-repo"
GOLDEN = REPO / "tests" / "renderers" / "golden_cloudinit"
KEYS = ["production/blog", "production/cloud", "production/www", "staging/staging-blog"]


def _tree(directory: Path, pattern: str = "*/*/cloud-init.yaml") -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.glob(pattern)}


def test_writes_the_golden_user_data_of_every_instance(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("render", str(REPOSITORY), "--format", "cloud-init", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == KEYS
    assert _tree(out) == _tree(GOLDEN)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["cloud-init.yaml"] * 4


def test_user_data_is_no_artifact_and_plans_stay_noop(tmp_path: Path) -> None:
    out = tmp_path / "deployed"
    assert run_cli("render", str(REPOSITORY), "--out", str(out)).returncode == 0
    manifests = _tree(out, "*/*/manifest.json")
    result = run_cli("render", str(REPOSITORY), "--format", "cloud-init", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert _tree(out, "*/*/manifest.json") == manifests  # digests untouched
    plan = run_cli("plan", str(REPOSITORY), "--against", str(out), "--exit-code")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert plan.stdout.splitlines()[-1] == "plan: 4 unchanged"
    # A render of the artifacts into the same directory clears the stale user-data.
    assert run_cli("render", str(REPOSITORY), "--out", str(out)).returncode == 0
    assert _tree(out) == {}


def test_prints_one_instance_redacted(tmp_path: Path) -> None:
    result = run_cli("render", str(REPOSITORY / "instances" / "blog"), "--format", "cloud-init")
    assert result.returncode == 0, result.stderr
    golden = GOLDEN / "production" / "blog" / "cloud-init.yaml"
    assert result.stdout.encode() == golden.read_bytes()
    document = yaml.safe_load(result.stdout)
    secrets = [
        base64.b64decode(entry["content"])
        for entry in document["write_files"]
        if entry["path"].startswith("/opt/swapyard/secrets/")
    ]
    assert secrets and all(b"<secret:" in data for data in secrets)


def test_printing_needs_one_instance_and_artifacts_need_out() -> None:
    many = run_cli("render", str(REPOSITORY), "--format", "cloud-init")
    assert many.returncode == 2 and many.stdout == ""
    assert "PATH holds 4" in many.stderr and "--out DIR" in many.stderr
    plain = run_cli("render", str(REPOSITORY))
    assert plain.returncode == 2 and "--out DIR is required" in plain.stderr
    for result in (many, plain):
        assert "Traceback" not in result.stderr
