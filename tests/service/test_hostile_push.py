"""Pushes built to hurt, through the real service: each ends `invalid` within seconds,
says why on the commit, and the next push is processed as usual."""

from __future__ import annotations

import pytest

from tests.service.conftest import ZERO, ConfigRepo, git, wait_for

WITHIN = 60.0  # seconds from the webhook to a finished event: "not hanging", generously


def finished_within(served, event_id: int) -> dict:
    """The finished event, waited for WITHIN seconds (a shared, loaded machine is slow)."""

    def done():
        event = served.api(f"/api/events/{event_id}")
        busy = event["status"] in ("queued", "processing") or any(
            d["status"] in ("waiting", "running") for d in event["deployments"]
        )
        return None if busy else event

    return wait_for(done, timeout=WITHIN, what=f"event {event_id} to finish")


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\nbomb: *a9\n"


def commit_all(repo: ConfigRepo, message: str) -> str:
    """Commit the work tree as it is (links and sparse files included)."""
    git("add", "-A", cwd=repo.work)
    git("commit", "-qm", message, cwd=repo.work)
    return repo.sha()


def _alias_bomb(repo: ConfigRepo) -> str:
    good = repo.read("instances/blog/apps.config")
    return repo.commit("bomb", {"instances/blog/apps.config": good + alias_bomb()})


def _deep(repo: ConfigRepo) -> str:
    good = repo.read("instances/blog/apps.config")
    deep = "deep: " + "[" * 5000 + "]" * 5000 + "\n"
    return repo.commit("deep", {"instances/blog/apps.config": good + deep})


def _huge(repo: ConfigRepo) -> str:
    path = repo.work / "instances/blog/apps.config"
    with open(path, "ab") as handle:
        handle.truncate(40 << 20)  # 40 MB (zeros: cheap for git to store)
    return commit_all(repo, "huge")


def _shadow(repo: ConfigRepo) -> str:
    files = repo.work / "instances/blog/files"
    files.mkdir(parents=True)
    (files / "shadow").symlink_to("/etc/shadow")
    return commit_all(repo, "link")


def _linked_config(repo: ConfigRepo) -> str:
    path = repo.work / "instances/blog/apps.config"
    path.unlink()
    path.symlink_to("/etc/hostname")
    return commit_all(repo, "link")


def _big_file(repo: ConfigRepo) -> str:
    files = repo.work / "instances/blog/files"
    files.mkdir(parents=True)
    with open(files / "disk.img", "wb") as handle:
        handle.truncate(200 << 20)
    return commit_all(repo, "big")


HOSTILE = {
    "alias-bomb": (_alias_bomb, "max_yaml_nodes"),
    "deep-nesting": (_deep, "max_yaml_depth"),
    "huge-apps-config": (_huge, "max_file_bytes"),
    "link-to-etc-shadow": (_shadow, "is a symbolic link"),
    "apps-config-link": (_linked_config, "is a symbolic link"),
    "big-shipped-file": (_big_file, "max_shipped_bytes"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_push_ends_invalid_and_the_next_push_deploys(serve, config_repo, forge, case):
    served = serve(config_repo)
    base = config_repo.sha()
    finished_within(served, served.push(ZERO, base).json()["event"])
    make, expected = HOSTILE[case]
    bad = make(config_repo)
    config_repo.push()
    event = finished_within(served, served.push(base, bad).json()["event"])
    [blog] = [d for d in event["deployments"] if d["instance"] == "blog"]
    assert (blog["status"], blog["action"]) == ("failure", "invalid"), blog
    assert "instances/blog/" in blog["summary"]
    detail = served.api(f"/api/deployments/{blog['id']}")
    assert expected in detail["log"], detail["log"]
    sent = wait_for(
        lambda: [s for s in forge.statuses("swapyard/production/blog") if s["state"] == "failure"],
        what="the failure status",
    )
    assert len(sent[-1]["description"]) <= 140
    # the next push, restoring blog, is processed as usual
    git("revert", "--no-edit", "HEAD", cwd=config_repo.work)
    fixed = config_repo.sha()
    config_repo.push()
    event = finished_within(served, served.push(bad, fixed).json()["event"])
    [blog] = [d for d in event["deployments"] if d["instance"] == "blog"]
    assert blog["status"] == "success", blog


def test_thousands_of_instance_directories_fail_the_push_once(serve, config_repo, forge):
    served = serve(config_repo)
    base = config_repo.sha()
    for i in range(1001):
        path = config_repo.work / "instances" / f"spam{i}" / "apps.config"
        path.parent.mkdir()
        path.write_text("apps: [\n")
    bad = commit_all(config_repo, "spam")
    config_repo.push()
    event = finished_within(served, served.push(base, bad).json()["event"])
    [dep] = event["deployments"]  # one failure, not a deployment per directory
    assert (dep["context"], dep["status"]) == ("swapyard/plan", "failure")
    assert dep["summary"].startswith("instances: holds more than 1000 entries")
    assert "--max-instances" in dep["summary"]
    # recovered by a force-push (a revert would queue one `removed` report per directory)
    git("reset", "-q", "--hard", base, cwd=config_repo.work)
    config_repo.push(force=True)
    event = finished_within(served, served.push(bad, base).json()["event"])
    assert "force-push" in event["reason"]
    assert {d["status"] for d in event["deployments"]} == {"success"}


def test_limits_are_service_settings(serve, config_repo):
    served = serve(config_repo, max_shipped_files=1)  # www ships two files in two folders
    event = finished_within(served, served.push(ZERO, config_repo.sha()).json()["event"])
    by_name = {d["instance"]: d for d in event["deployments"]}
    assert by_name["www"]["action"] == "invalid"
    assert by_name["www"]["summary"].startswith("instances/www/files: holds more than 1 entries")
    assert "max_shipped_files" in served.api(f"/api/deployments/{by_name['www']['id']}")["log"]
    assert by_name["blog"]["status"] == by_name["cloud"]["status"] == "success"


def test_a_repository_past_max_files_fails_the_push_once(serve, config_repo):
    served = serve(config_repo, max_files=5)  # 4 apps.config, 2 shipped files in 2 folders
    event = finished_within(served, served.push(ZERO, config_repo.sha()).json()["event"])
    [dep] = event["deployments"]
    assert (dep["context"], dep["status"]) == ("swapyard/plan", "failure")
    assert dep["summary"].startswith("instances: hold more than 5 files together")
