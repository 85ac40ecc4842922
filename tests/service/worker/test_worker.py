"""Processing: fetch into the mirror, diff, per-instance deployments and commit statuses."""

from __future__ import annotations

import base64
import random

import pytest

from handlers.gitops.mirror import MirrorCache
from tests.gitdamage import corrupt_packed
from tests.service.conftest import REPO_NAME, ZERO, git, wait_for

PRODUCTION = ["production/blog", "production/cloud", "production/www"]


def finished(served, event_id: int, timeout: float = 20.0) -> dict:
    def done():
        event = served.api(f"/api/events/{event_id}")
        if event["status"] in ("queued", "processing"):
            return None
        if any(d["status"] in ("waiting", "running") for d in event["deployments"]):
            return None
        return event

    return wait_for(done, timeout, what=f"event {event_id} to finish")


def keys(event: dict) -> list[str]:
    return sorted(f"{d['project']}/{d['instance']}" for d in event["deployments"])


def test_new_branch_evaluates_every_instance_of_the_project(serve, config_repo, forge):
    served = serve(config_repo)
    sha = config_repo.sha()
    event = finished(served, served.push(ZERO, sha).json()["event"])
    assert event["status"] == "dispatched"
    assert "new branch" in event["reason"]
    assert keys(event) == PRODUCTION
    for dep in event["deployments"]:
        assert dep["status"] == "success", dep
        assert dep["sha"] == sha
    ctx = "swapyard/production/blog"
    # pending goes out first unless success was already stored (only the newest is sent)
    states = wait_for(
        lambda: (
            [s["state"] for s in forge.statuses(ctx)][-1:] == ["success"] and forge.statuses(ctx)
        ),
        what="statuses",
    )
    assert [s["state"] for s in states] in (["pending", "success"], ["success"])
    final = states[-1]
    assert final["path"] == f"/repos/{REPO_NAME}/statuses/{sha}"
    assert len(final["description"]) <= 140
    blog = next(d for d in event["deployments"] if d["instance"] == "blog")
    assert final["target_url"] == f"{served.url}/deployments/{blog['id']}"
    assert forge.calls[-1].authorization == "token forge-token"
    detail = served.api(f"/api/deployments/{blog['id']}")
    assert detail["steps"][0]["name"] == "validate"


def test_push_touching_one_instance_deploys_only_that_one(serve, config_repo):
    served = serve(config_repo)
    before = config_repo.sha()
    config_repo.commit("blog: tweak", {"instances/blog/notes.txt": "a\n"})
    after = config_repo.commit("blog: tweak again", {"instances/blog/notes.txt": "b\n"})
    config_repo.push()
    event = finished(served, served.push(before, after).json()["event"])
    assert keys(event) == ["production/blog"]
    assert event["reason"] == "1 instance(s) changed"


def test_change_to_swapyard_yaml_affects_all_instances(serve, config_repo):
    served = serve(config_repo)
    before = config_repo.sha()
    text = config_repo.read("swapyard.yaml") + "\n# a comment\n"
    after = config_repo.commit("defaults", {"swapyard.yaml": text})
    config_repo.push()
    event = finished(served, served.push(before, after).json()["event"])
    assert keys(event) == PRODUCTION
    assert "swapyard.yaml changed" in event["reason"]


def test_force_push_evaluates_every_instance(serve, config_repo):
    served = serve(config_repo)
    base = config_repo.sha()
    lost = config_repo.commit("to be rewritten", {"instances/www/x.txt": "1\n"})
    config_repo.push()
    finished(served, served.push(base, lost).json()["event"])
    from tests.service.conftest import git

    git("reset", "-q", "--hard", base, cwd=config_repo.work)
    rewritten = config_repo.commit("rewritten", {"instances/cloud/y.txt": "2\n"})
    config_repo.push(force=True)
    event = finished(served, served.push(lost, rewritten).json()["event"])
    assert "force-push" in event["reason"]
    assert keys(event) == PRODUCTION


def test_staging_branch_maps_to_staging_project(serve, config_repo):
    served = serve(config_repo)
    config_repo.push("staging")
    event = finished(served, served.push(ZERO, config_repo.sha(), "staging").json()["event"])
    assert keys(event) == ["staging/staging-blog"]
    assert event["deployments"][0]["context"] == "swapyard/staging/staging-blog"


def test_unmapped_branch_is_planned_only(serve, config_repo, forge):
    served = serve(config_repo)
    config_repo.push("feature-x")
    sha = config_repo.sha()
    event = finished(served, served.push(ZERO, sha, "feature-x").json()["event"])
    assert event["status"] == "ignored"
    assert event["reason"].startswith("branch feature-x is not mapped to a project")
    [dep] = event["deployments"]
    assert (dep["context"], dep["mode"], dep["status"]) == ("swapyard/plan", "plan", "success")
    final = wait_for(
        lambda: [s for s in forge.statuses("swapyard/plan") if s["state"] != "pending"],
        what="plan status",
    )
    assert final[-1]["description"].startswith("plan only: 4 instance(s) valid")


def push_broken_blog(served, config_repo) -> tuple[str, dict]:
    """Push a commit that breaks blog's apps.config and changes www; wait for it."""
    before = config_repo.sha()
    bad = config_repo.read("instances/blog/apps.config").replace("domains:", "domainz:", 1)
    after = config_repo.commit(
        "break blog", {"instances/blog/apps.config": bad, "instances/www/z.txt": "ok\n"}
    )
    config_repo.push()
    return after, finished(served, served.push(before, after).json()["event"])


def test_invalid_config_fails_that_instance_only(serve, config_repo, forge):
    served = serve(config_repo)
    _, event = push_broken_blog(served, config_repo)
    by_name = {d["instance"]: d for d in event["deployments"]}
    assert by_name["blog"]["status"] == "failure"
    assert "instances/blog/apps.config" in by_name["blog"]["summary"]
    assert by_name["www"]["status"] == "success"
    final = wait_for(
        lambda: [s for s in forge.statuses("swapyard/production/blog") if s["state"] == "failure"],
        what="failure status",
    )
    assert "apps.config" in final[0]["description"] and len(final[0]["description"]) <= 140


def test_removed_instance_destroys_nothing(serve, config_repo):
    served = serve(config_repo)
    before = config_repo.sha()
    after = config_repo.commit("drop www", {"instances/www": None})
    config_repo.push()
    event = finished(served, served.push(before, after).json()["event"])
    [dep] = event["deployments"]
    assert dep["instance"] == "www" and dep["action"] == "removed"
    assert "nothing destroyed" in dep["summary"]


def test_broken_swapyard_yaml_fails_on_the_plan_context(serve, config_repo, forge):
    served = serve(config_repo)
    before = config_repo.sha()
    after = config_repo.commit("break projects", {"swapyard.yaml": "projects: [1, 2\n"})
    config_repo.push()
    event = finished(served, served.push(before, after).json()["event"])
    [dep] = event["deployments"]
    assert (dep["context"], dep["status"]) == ("swapyard/plan", "failure")
    assert "swapyard.yaml" in dep["summary"]
    final = wait_for(lambda: forge.statuses("swapyard/plan"), what="failure status")
    assert final[-1]["state"] == "failure" and "swapyard.yaml" in final[-1]["description"]


def test_instances_api_shows_current_commit(serve, config_repo):
    served = serve(config_repo)
    good = config_repo.sha()
    finished(served, served.push(ZERO, good).json()["event"])
    bad = config_repo.read("instances/www/apps.config").replace("domains:", "domainz:", 1)
    after = config_repo.commit("break www", {"instances/www/apps.config": bad})
    config_repo.push()
    finished(served, served.push(good, after).json()["event"])
    www = next(i for i in served.api("/api/instances") if i["key"] == "production/www")
    assert www["current"]["sha"] == good  # the last successful commit
    assert (www["latest"]["sha"], www["latest"]["status"]) == (after, "failure")
    history = served.api("/api/deployments?instance=production/www")
    assert [d["status"] for d in history] == ["failure", "success"]


@pytest.mark.parametrize("token", ["forge-token", None], ids=["statuses", "no-forge-token"])
def test_a_delivery_wakes_the_idle_worker_at_once(serve, config_repo, forge, token):
    # Polling alone would look only after a minute: well past wait_for's 20 s.
    served = serve(config_repo, poll_seconds=60, github_token=token)
    sha = config_repo.sha()
    event = finished(served, served.push(ZERO, sha).json()["event"])
    assert {d["status"] for d in event["deployments"]} == {"success"}
    if token:
        wait_for(
            lambda: [s for s in forge.statuses("swapyard") if s["state"] == "success"],
            what="the push's final status, sent by the woken status sender",
        )


def test_an_unreadable_object_in_the_mirror_is_repaired_not_failed(
    serve, config_repo, forge, tmp_path
):
    data = base64.b64encode(random.Random(0).randbytes(3000)).decode()
    first = config_repo.commit("blog: data", {"instances/blog/files/data.txt": data})
    config_repo.push()
    served = serve(config_repo)
    finished(served, served.push(ZERO, first).json()["event"])
    mirror = MirrorCache(tmp_path / "data" / "mirrors").mirror(REPO_NAME)
    corrupt_packed(
        mirror.path,
        git("rev-parse", f"{first}:instances/blog/files/data.txt", cwd=config_repo.bare),
    )

    second = config_repo.commit("blog: tweak", {"instances/blog/notes.txt": "a\n"})
    config_repo.push()
    event = finished(served, served.push(first, second).json()["event"])
    assert [(d["instance"], d["status"]) for d in event["deployments"]] == [("blog", "success")]
    assert event["attempts"] == 1, event  # repaired within the first attempt
    assert mirror.aside.is_dir() and mirror.is_complete(second)
