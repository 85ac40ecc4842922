"""GitLab end to end: a push webhook in, commit statuses out through GitLab's status API."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service.store.db import get_db
from service.store.models import StatusOutbox
from service.worker.threads import get_worker
from tests.service.conftest import ZERO, gitlab_push_body, outbox_drained, wait_for
from tests.service.forge_stub import GITLAB_TOKEN
from tests.service.worker.test_worker import finished

WWW, BLOG, CLOUD = (f"swapyard/production/{n}" for n in ("www", "blog", "cloud"))
INSTANCES = (WWW, BLOG, CLOUD)


def outbox(served) -> list[StatusOutbox]:
    with get_db(served.app).session() as session:
        return list(session.scalars(select(StatusOutbox).order_by(StatusOutbox.id)))


def delivered(served, body: dict) -> int:
    answer = served.hook("gitlab", "Push Hook", body)
    assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
    return answer.json()["event"]


def dispatch(served) -> None:
    """Dispatch the delivered push here (per-instance pending statuses queued), run nothing."""
    worker = get_worker(served.app)
    event = worker.events.claim()
    assert event is not None
    worker.events.dispatch(event)


def dispatched(served, body: dict) -> int:
    event_id = delivered(served, body)
    dispatch(served)
    return event_id


def test_gitlab_push_gets_pending_then_final_statuses(serve, config_repo, forge):
    served = serve(config_repo, workers=0)  # the sender runs; deployments wait for the test
    before = config_repo.sha()
    bad = config_repo.read("instances/blog/apps.config").replace("domains:", "domainz:", 1)
    after = config_repo.commit(
        "break blog", {"instances/blog/apps.config": bad, "instances/www/z.txt": "ok\n"}
    )
    config_repo.push()
    event_id = dispatched(served, gitlab_push_body(config_repo, before, after))
    wait_for(lambda: forge.statuses(WWW) and forge.statuses(BLOG), what="pending, before runs")
    get_worker(served.app).start(1, statuses=False)
    deps = {d["context"]: d for d in finished(served, event_id)["deployments"]}
    assert (deps[WWW]["status"], deps[BLOG]["status"]) == ("success", "failure")
    wait_for(lambda: [len(forge.statuses(c)) for c in (WWW, BLOG)] == [2, 2], what="final ones")

    sent = [c for c in forge.calls if "/statuses/" in c.path]
    assert {c.path for c in sent} == {f"/api/v4/projects/owner%2Fconfig/statuses/{after}"}
    assert {c.private_token for c in sent} == {GITLAB_TOKEN}
    assert {c.code for c in sent if c.body["name"] in INSTANCES} == {201}
    # the push-wide context: "received", then "deploying ..." (GitLab refuses pending ->
    # pending with a 400, which counts as sent), then failed naming blog
    wait_for(lambda: forge.gitlab_states.get((sent[0].path, "swapyard")) == "failed", what="push")
    assert "production/blog" in forge.statuses("swapyard")[-1]["description"]
    pending, success = forge.statuses(WWW)
    assert (pending["state"], pending["name"]) == ("pending", WWW)
    assert pending["description"].startswith("queued: ")
    assert (success["state"], success["name"]) == ("success", WWW)
    assert success["target_url"] == f"{served.url}/deployments/{deps[WWW]['id']}"
    assert success["description"] and len(success["description"]) <= 140
    assert [s["state"] for s in forge.statuses(BLOG)] == ["pending", "failed"]
    failed = forge.statuses(BLOG)[-1]
    assert failed["name"] == BLOG
    assert "instances/blog/apps.config" in failed["description"]
    assert failed["target_url"] == f"{served.url}/deployments/{deps[BLOG]['id']}"
    assert forge.gitlab_states[(pending["path"], WWW)] == "success"


def test_gitlab_down_delays_statuses_but_loses_none(serve, config_repo, forge):
    forge.fail_first = 4
    served = serve(config_repo)
    sha = config_repo.sha()
    body = gitlab_push_body(config_repo, ZERO, sha)
    event = finished(served, served.hook("gitlab", "Push Hook", body).json()["event"])
    assert {d["status"] for d in event["deployments"]} == {"success"}
    for ctx in (WWW, BLOG, CLOUD):
        wait_for(
            lambda c=ctx: [s for s in forge.statuses(c) if s["state"] == "success"],
            what=f"{ctx} success status despite GitLab answering 503",
        )
    assert forge.failures == 4
    outbox_drained(served)
    assert all(row.sent_at or row.given_up for row in outbox(served))


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("revoked-token", "forge answered 401: 401 Unauthorized"),
        (None, "no GITLAB_API_URL/GITLAB_TOKEN configured (set SWAPYARD_GITLAB_TOKEN)"),
    ],
)
def test_gitlab_refusing_the_token_gives_up_at_once(serve, config_repo, forge, token, error):
    served = serve(config_repo, gitlab_token=token)
    body = gitlab_push_body(config_repo, ZERO, config_repo.sha())
    event = finished(served, served.hook("gitlab", "Push Hook", body).json()["event"])
    assert {d["status"] for d in event["deployments"]} == {"success"}  # never failed by it
    outbox_drained(served)
    tried = [row for row in outbox(served) if row.attempts]
    assert tried and all(row.given_up and not row.sent_at for row in tried)
    assert {(row.attempts, row.last_error) for row in tried} == {(1, error)}
    assert forge.statuses() == []


def test_gitlab_refusing_a_repeated_state_counts_as_sent(serve, config_repo, forge):
    forge.lose_answers = 1  # GitLab applies each pending status, but the answers get lost
    served = serve(config_repo, workers=0)
    sha = config_repo.sha()
    event_id = delivered(served, gitlab_push_body(config_repo, ZERO, sha))
    wait_for(lambda: all(row.sent_at for row in outbox(served)), what="'received' sent")
    forge.lose_answers = 3  # one per instance: their pending statuses go out first
    dispatch(served)
    wait_for(lambda: all(row.sent_at for row in outbox(served)), what="pending ones sent")
    rows = outbox(served)
    assert [r.context for r in rows] == ["swapyard", *sorted(INSTANCES), "swapyard"]
    for row in rows[:-1]:  # the retry was refused as "already pending" and counts
        assert (row.state, row.attempts, row.last_error) == ("pending", 2, None)
        codes = [c.code for c in forge.calls if c.body.get("name") == row.context]
        assert codes[:2] == [502, 400]
    get_worker(served.app).start(1, statuses=False)
    finished(served, event_id)
    outbox_drained(served)
    path = f"/api/v4/projects/owner%2Fconfig/statuses/{sha}"
    assert {forge.gitlab_states[(path, ctx)] for ctx in (WWW, BLOG, CLOUD)} == {"success"}
