"""Plans against a real earlier render on disk, through the library and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from handlers.gitops.plan import make_plan, read_deployed, summary
from renderers import RenderOptions, render_instance
from schemas import load_repo
from tests.conftest import EXAMPLES, run_cli


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A private copy of the example repository that a test may edit."""
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "config-repo", target)
    return target


@pytest.fixture
def deployed(repo: Path, tmp_path: Path) -> Path:
    out = tmp_path / "deployed"
    result = run_cli("render", str(repo), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def plan_of(repo: Path, deployed: Path) -> dict[str, tuple[str, str, str]]:
    config = load_repo(repo)
    rendered = {
        i.key: render_instance(i, RenderOptions()) for i in config.instances if i.state == "present"
    }
    absent = [i.key for i in config.instances if i.state == "absent"]
    return {
        item.instance: (item.action, item.reason, item.diff)
        for item in make_plan(rendered, absent, read_deployed(deployed))
    }


def test_unchanged_repository_is_all_noop(repo: Path, deployed: Path) -> None:
    plan = plan_of(repo, deployed)
    assert {k: v[0] for k, v in plan.items()} == {
        "production/blog": "noop",
        "production/cloud": "noop",
        "production/www": "noop",
        "staging/staging-blog": "noop",
    }


def test_changed_image_replaces_with_a_readable_diff(repo: Path, deployed: Path) -> None:
    edit(repo / "instances/www/apps.config", "orders-api:2.3.1", "orders-api:2.4.0")
    action, reason, diff = plan_of(repo, deployed)["production/www"]
    assert action == "replace"
    assert "compose.yaml" in reason and "ignition.json" in reason
    assert "-    image: ghcr.io/example/orders-api:2.3.1" in diff
    assert "+    image: ghcr.io/example/orders-api:2.4.0" in diff


def test_dns_change_is_dns_only(repo: Path, deployed: Path) -> None:
    edit(repo / "instances/www/apps.config", "zone: example.org", "zone: example.org\n  ttl: 60")
    action, reason, diff = plan_of(repo, deployed)["production/www"]
    assert (action, reason) == ("dns-only", "DNS settings changed")
    assert '"ttl": 60' in diff


def test_backup_change_touches_no_instance(repo: Path, deployed: Path) -> None:
    edit(repo / "instances/cloud/apps.config", "daily: 14", "daily: 30")
    action, reason, diff = plan_of(repo, deployed)["production/cloud"]
    assert action == "noop" and "backup settings changed" in reason
    assert '"daily": 30' in diff


def test_new_instance_is_created(repo: Path, deployed: Path) -> None:
    shutil.copytree(repo / "instances/blog", repo / "instances/journal")
    for old, new in (
        ("blog.example.org", "journal.example.org"),
        ("archive.example.org", "old.journal.example.org"),
        ("git.example.org", "git.journal.example.org"),
    ):
        edit(repo / "instances/journal/apps.config", old, new)
    assert plan_of(repo, deployed)["production/journal"][0] == "create"


def test_removed_directory_destroys_nothing(repo: Path, deployed: Path) -> None:
    shutil.rmtree(repo / "instances/blog")
    action, reason, _ = plan_of(repo, deployed)["production/blog"]
    assert action == "noop" and "state: absent" in reason


def test_state_absent_destroys(repo: Path, deployed: Path) -> None:
    path = repo / "instances/blog/apps.config"
    path.write_text("state: absent\n" + path.read_text())
    action, reason, _ = plan_of(repo, deployed)["production/blog"]
    assert action == "destroy" and "volume is kept" in reason


def test_cli_plan_prints_actions_and_exit_code(repo: Path, deployed: Path) -> None:
    edit(repo / "instances/blog/apps.config", "name: git", "name: forge")
    result = run_cli("plan", str(repo), "--against", str(deployed), "--exit-code")
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("replace   production/blog: changed: ") for line in lines)
    assert "noop      production/www: unchanged" in lines
    assert lines[-1] == "plan: 1 to replace, 3 unchanged"


def test_cli_plan_without_changes_exits_zero(repo: Path, deployed: Path) -> None:
    result = run_cli("plan", str(repo), "--against", str(deployed), "--exit-code")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "plan: 4 unchanged"


def test_cli_render_prints_digests_and_is_stable(repo: Path, tmp_path: Path) -> None:
    first = run_cli("render", str(repo), "--out", str(tmp_path / "a"))
    second = run_cli("render", str(repo), "--out", str(tmp_path / "b"))
    assert first.returncode == 0 and first.stdout == second.stdout
    assert [line.split()[0] for line in first.stdout.splitlines()] == [
        "production/blog",
        "production/cloud",
        "production/www",
        "staging/staging-blog",
    ]
    assert all(line.split()[1].startswith("sha256:") for line in first.stdout.splitlines())


def test_plan_against_a_missing_directory_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    result = run_cli("plan", str(repo), "--against", str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "nope" in result.stderr


def test_summary_words() -> None:
    assert summary([]) == "nothing"
