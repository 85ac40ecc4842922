"""Every example is checked: the good repository validates, each bad one fails as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import ConfigError, load_repo
from tests.conftest import EXAMPLES, run_cli

INVALID = sorted(p for p in (EXAMPLES / "invalid").iterdir() if p.is_dir())


def test_example_repository_validates() -> None:
    repo = load_repo(EXAMPLES / "config-repo")
    keys = [i.key for i in repo.instances]
    assert keys == ["production/blog", "production/cloud", "production/www", "staging/staging-blog"]
    kinds = {a.kind for i in repo.instances for a in i.apps}
    assert {
        "static",
        "nextcloud",
        "ghost",
        "wordpress",
        "vaultwarden",
        "forgejo",
        "uptime-kuma",
        "custom",
    } <= kinds
    assert all(i.backup.enabled for i in repo.instances)
    assert repo.warnings == ()


def test_example_defaults_merge_by_project() -> None:
    repo = load_repo(EXAMPLES / "config-repo")
    by_key = {i.key: i for i in repo.instances}
    staging, prod = by_key["staging/staging-blog"], by_key["production/blog"]
    # project defaults sit above repo-wide defaults; the instance above both
    assert staging.backup.repository == "/var/backups/swapyard-staging"
    assert staging.backup.retention.daily == 3 and staging.https is False
    assert prod.backup.repository.startswith("s3:") and prod.https is True
    assert prod.backup.retention.monthly == 12  # repo-wide default
    assert by_key["production/cloud"].backup.retention.daily == 14  # instance wins
    assert by_key["production/www"].backup.schedule == "30 2 * * *"


def test_one_instance_directory_validates_alone() -> None:
    repo = load_repo(EXAMPLES / "config-repo" / "instances" / "www")
    assert [i.key for i in repo.instances] == ["production/www"]


@pytest.mark.parametrize("case", INVALID, ids=[p.name for p in INVALID])
def test_invalid_example_is_rejected_with_its_message(case: Path) -> None:
    expected = (case / "expected.txt").read_text().splitlines()
    with pytest.raises(ConfigError) as caught:
        load_repo(case)
    assert [str(p) for p in caught.value.problems] == expected


@pytest.mark.parametrize("case", INVALID, ids=[p.name for p in INVALID])
def test_cli_rejects_invalid_example(case: Path) -> None:
    result = run_cli("validate", str(case))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[:-1] == (case / "expected.txt").read_text().splitlines()
    assert lines[-1].endswith("problem(s) found")


def test_inline_secret_is_never_echoed() -> None:
    result = run_cli("validate", str(EXAMPLES / "invalid" / "inline-secret"))
    assert result.returncode == 1
    assert "correct-horse-battery-staple" not in result.stdout + result.stderr
