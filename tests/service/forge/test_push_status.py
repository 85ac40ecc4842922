"""The push-wide `swapyard` status: pending as soon as the delivery is stored, then settled
once every deployment of the push has ended, linking to the push's page."""

from __future__ import annotations

import requests

from tests.service.conftest import REPO_NAME, TOKEN, ZERO, outbox_drained, push_body, wait_for
from tests.service.worker.test_queue import queue_blog_commits
from tests.service.worker.test_worker import finished, push_broken_blog


def final(forge, sha: str) -> dict:
    def settled():
        mine = [s for s in forge.statuses("swapyard") if s["sha"] == sha]
        return mine and mine[-1]["state"] != "pending" and mine[-1]

    return wait_for(settled, what=f"the final swapyard status of {sha[:12]}")


def test_pending_is_posted_at_receipt_before_any_worker_looks(serve, config_repo, forge):
    served = serve(config_repo, workers=0)  # only the status sender runs
    sha = config_repo.sha()
    answer = served.push(ZERO, sha).json()
    [status] = wait_for(lambda: forge.statuses("swapyard"), what="the pending status")
    assert (status["state"], status["sha"]) == ("pending", sha)
    assert status["description"].startswith("received")
    assert status["target_url"] == f"{served.url}/events/{answer['event']}"
    assert served.api(f"/api/events/{answer['event']}")["status"] == "queued"


def test_ignored_deliveries_get_no_status(serve, config_repo, forge):
    served = serve(config_repo, workers=0)
    served.push(config_repo.sha(), ZERO, "feature-x")  # a deleted branch: ignored at receipt
    served.push(ZERO, config_repo.sha(), delivery="seen")
    served.push(ZERO, config_repo.sha(), delivery="seen")  # a duplicate stores nothing new
    wait_for(lambda: forge.statuses("swapyard"), what="the one pending status")
    assert len(forge.statuses("swapyard")) == 1


def test_a_push_settles_when_all_its_instances_are_deployed(serve, config_repo, forge):
    served = serve(config_repo)
    sha = config_repo.sha()
    event = finished(served, served.push(ZERO, sha).json()["event"])
    status = final(forge, sha)
    assert status["state"] == "success"
    assert status["description"] == "3 succeeded"
    assert status["target_url"] == f"{served.url}/events/{event['id']}"
    page = requests.Session()
    page.post(f"{served.url}/login", data={"token": TOKEN}, timeout=5)
    html = page.get(f"{served.url}/events/{event['id']}", timeout=5).text
    for dep in event["deployments"]:
        assert f'href="/deployments/{dep["id"]}"' in html
    assert "production/www" in html and sha in html


def test_a_failed_instance_fails_the_push(serve, config_repo, forge):
    after, _ = push_broken_blog(serve(config_repo), config_repo)
    status = final(forge, after)
    assert status["state"] == "failure"
    assert status["description"].startswith("1 failed, 1 succeeded; production/blog: ")
    assert "apps.config" in status["description"] and len(status["description"]) <= 140


def test_a_push_that_changes_nothing_succeeds_with_the_reason(serve, config_repo, forge):
    served = serve(config_repo)
    before = config_repo.sha()
    after = config_repo.commit("docs only", {"README.md": "notes\n"})
    config_repo.push()
    event = finished(served, served.push(before, after).json()["event"])
    assert event["deployments"] == []
    status = final(forge, after)
    assert status["state"] == "success"
    assert status["description"] == event["reason"]


def test_a_superseded_push_ends_as_error_naming_the_newer_commit(serve, config_repo, forge):
    served = serve(config_repo, workers=0)
    shas, events = queue_blog_commits(served, config_repo, 2)
    for e in events:
        finished(served, e)
    older, newer = final(forge, shas[1]), final(forge, shas[2])
    assert older["state"] == "error"
    assert older["description"] == f"production/blog: superseded by {shas[2]}"
    assert newer["state"] == "success"


def test_a_repository_outside_the_setting_gets_no_status(serve, config_repo, forge):
    """An organisation-wide hook also delivers repositories swapyard does not manage:
    they are stored as ignored at receipt and nothing is posted on their commits."""
    served = serve(config_repo, repositories={REPO_NAME: str(config_repo.bare)})
    sha = config_repo.sha()
    body = push_body(config_repo, ZERO, sha)
    body["repository"]["full_name"] = "someone/else"
    answer = served.hook("github", "push", body)
    assert answer.status_code == 202
    assert answer.json()["status"] == "ignored"
    assert answer.json()["reason"] == "repository someone/else is not in the repositories setting"
    managed = finished(served, served.push(ZERO, sha, delivery="managed").json()["event"])
    assert managed["status"] == "dispatched"
    final(forge, sha)  # the managed push settles; by then the other one was long decided
    outbox_drained(served)
    assert {s["path"].split("/repos/")[1].split("/statuses")[0] for s in forge.statuses()} == {
        REPO_NAME
    }


def test_a_repository_dropped_from_the_setting_after_receipt_settles_its_status(
    serve, config_repo, forge
):
    """Received while managed (its pending status posted), dispatched after a restart
    without it: the pending status is settled, not left pending for ever."""
    first = serve(config_repo, workers=0)
    sha = config_repo.sha()
    event_id = first.push(ZERO, sha).json()["event"]
    wait_for(lambda: forge.statuses("swapyard"), what="the pending status")
    second = serve(config_repo, repositories={"someone/else": "/nowhere"})
    event = finished(second, event_id)
    assert event["status"] == "ignored"
    status = final(forge, sha)
    assert status["state"] == "error"
    assert "not in the repositories setting" in status["description"]
