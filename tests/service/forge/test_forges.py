"""Each forge end to end: GitHub pull requests, Gitea pushes and statuses (GitLab: test_gitlab)."""

from __future__ import annotations

from handlers.gitops.mirror import MirrorCache
from tests.service.conftest import REPO_NAME, ZERO, wait_for
from tests.service.deliveries import body as fixture
from tests.service.worker.test_worker import finished


def test_pull_request_is_planned_only(serve, config_repo, forge):
    served = serve(config_repo)
    base = config_repo.sha()
    head = config_repo.commit("pr", {"instances/blog/pr.txt": "x\n"})
    config_repo.push("feature-pr")
    body = fixture("github/pull_request-opened.json")
    body["pull_request"]["head"]["sha"] = head
    body["pull_request"]["base"]["sha"] = base
    body["repository"].update(full_name=REPO_NAME, clone_url=str(config_repo.bare))
    answer = served.hook("github", "pull_request", body)
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    event = finished(served, answer.json()["event"])
    [dep] = event["deployments"]
    assert (dep["context"], dep["sha"], dep["status"]) == ("swapyard/plan", head, "success")
    assert dep["summary"].startswith("plan only")
    closed = dict(body, action="closed")
    assert served.hook("github", "pull_request", closed).json()["status"] == "ignored"


def test_gitea_push_gets_statuses_through_the_gitea_api(serve, config_repo, forge):
    served = serve(config_repo, gitea_api_url=forge.url + "/api/v1")
    sha = config_repo.sha()
    body = fixture("gitea/push.json")
    body.update(ref="refs/heads/main", before=ZERO, after=sha)
    body["repository"].update(full_name=REPO_NAME, clone_url=str(config_repo.bare))
    event = finished(served, served.hook("gitea", "push", body).json()["event"])
    assert sorted(d["instance"] for d in event["deployments"]) == ["blog", "cloud", "www"]
    sent = wait_for(lambda: forge.statuses("swapyard/production/cloud"), what="gitea status")
    assert sent[0]["path"] == f"/api/v1/repos/{REPO_NAME}/statuses/{sha}"


def test_mirror_fetches_only_what_is_new(tmp_path, config_repo):
    mirror = MirrorCache(tmp_path / "mirrors").mirror(REPO_NAME)
    first = config_repo.sha()
    assert mirror.fetch(str(config_repo.bare), first) is True
    assert mirror.fetch(str(config_repo.bare), first) is False  # already there: no network
    second = config_repo.commit("more", {"instances/www/a.txt": "a\n"})
    config_repo.push()
    assert mirror.fetch(str(config_repo.bare), second) is True
    assert mirror.changed_paths(first, second) == ["instances/www/a.txt"]
    assert mirror.is_ancestor(first, second) and not mirror.is_ancestor(second, first)
    tree = mirror.export(second, tmp_path / "tree")
    www = tree / "instances" / "www"
    assert (www / "apps.config").read_text() == config_repo.read("instances/www/apps.config")
    assert not (www / "a.txt").exists()  # only what validation reads is exported


def test_unreachable_repository_fails_the_event_with_a_reason(serve, config_repo):
    served = serve(config_repo)
    body = fixture("github/push.json")
    body["repository"].update(full_name="owner/missing", clone_url=str(config_repo.bare) + "-nope")
    event_id = served.hook("github", "push", body).json()["event"]
    event = wait_for(
        lambda: (e := served.api(f"/api/events/{event_id}"))["reason"] and e,
        what="a reason on the event",
    )
    assert "cannot fetch from" in event["reason"]


def test_repositories_setting_pins_urls_and_refuses_others(serve, config_repo):
    served = serve(config_repo, repositories={REPO_NAME: str(config_repo.bare)})
    body = fixture("github/push.json")
    body.update(ref="refs/heads/main", before=ZERO, after=config_repo.sha())
    body["repository"].update(full_name=REPO_NAME, clone_url="https://example.invalid/x.git")
    event = finished(served, served.hook("github", "push", body).json()["event"])
    assert event["status"] == "dispatched"  # fetched from the pinned URL, not the payload's
    body["repository"]["full_name"] = "someone/else"
    other = finished(served, served.hook("github", "push", body).json()["event"])
    assert other["status"] == "ignored"
    assert other["reason"] == "repository someone/else is not in the repositories setting"
