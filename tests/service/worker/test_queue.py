"""Queue semantics: newest commit wins, leases expire, a down forge only delays statuses."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from service.settings import settings_of
from service.store.db import get_db
from service.store.models import StatusOutbox
from service.worker.build import build_worker
from service.worker.threads import get_worker
from tests.service.conftest import ZERO, outbox_drained, wait_for
from tests.service.worker.test_worker import finished


def queue_blog_commits(served, config_repo, count: int) -> tuple[list[str], list[int]]:
    """Push `count` commits to blog with no worker running, then start one worker thread
    (deterministic order) and wait for every event; returns (shas, event ids)."""
    shas, events = [config_repo.sha()], []
    for n in range(count):
        shas.append(config_repo.commit(f"blog {n}", {"instances/blog/n.txt": f"{n}\n"}))
        config_repo.push()
        events.append(served.push(shas[-2], shas[-1]).json()["event"])
    get_worker(served.app).start(1, statuses=False)
    return shas, events


def test_older_waiting_commits_are_superseded(serve, config_repo, forge):
    served = serve(config_repo, workers=0)
    shas, events = queue_blog_commits(served, config_repo, 3)
    results = [finished(served, e) for e in events]
    deps = [r["deployments"][0] for r in results]
    assert [d["status"] for d in deps] == ["superseded", "superseded", "success"]
    assert deps[0]["summary"] == f"superseded by {shas[-1]}"
    ctx = "swapyard/production/blog"

    def terminal():
        last = {s["sha"]: s for s in forge.statuses(ctx)}
        return len(last) == 3 and all(s["state"] != "pending" for s in last.values()) and last

    last_per_sha = wait_for(terminal, what="a final status for each of the three commits")
    assert last_per_sha[shas[1]]["state"] == "error"
    assert last_per_sha[shas[1]]["description"].startswith(f"superseded by {shas[-1][:12]}")
    assert last_per_sha[shas[3]]["state"] == "success"


def test_a_dead_workers_leases_expire(serve, config_repo):
    served = serve(config_repo, workers=0, lease_seconds=1)
    settings = settings_of(served.app)
    dead, alive = (
        build_worker(get_db(served.app), settings),
        build_worker(get_db(served.app), settings),
    )
    event_id = served.push(ZERO, config_repo.sha()).json()["event"]
    assert dead.events.claim() is not None  # ...and the worker dies here
    assert alive.events.claim() is None
    time.sleep(1.1)
    claimed = alive.events.claim()
    assert claimed is not None and claimed.id == event_id and claimed.attempts == 2
    alive.events.dispatch(claimed)
    dep = dead.deployments.claim()  # dies again, holding production/blog's lease
    assert dep is not None
    while (other := alive.deployments.claim()) is not None:
        assert other.key != dep.key  # the dead worker's instance stays locked...
        alive.deployments.run(other)
    time.sleep(1.1)  # ...until its lease expires
    d = alive.deployments.claim()
    assert d is not None and d.key == dep.key and d.id == dep.id
    alive.deployments.run(d)
    event = finished(served, event_id)
    assert {x["status"] for x in event["deployments"]} == {"success"}


# GitHub's answer once the token's hourly budget is spent (its docs, "Rate limits for the
# REST API"): a 403, not a 429, which must not be taken for "no permission"
RATE_LIMITED = (
    403,
    {
        "message": "API rate limit exceeded for installation ID 1.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    },
)


@pytest.mark.parametrize("failure", [None, RATE_LIMITED], ids=["down", "rate-limited"])
def test_a_failing_forge_delays_statuses_but_loses_none(serve, config_repo, forge, failure):
    forge.fail_first = 4
    forge.failure = failure or forge.failure
    served = serve(config_repo)
    sha = config_repo.sha()
    event = finished(served, served.push(ZERO, sha).json()["event"])
    assert {d["status"] for d in event["deployments"]} == {"success"}  # never failed by the forge
    for ctx in ("swapyard/production/blog", "swapyard/production/cloud", "swapyard/production/www"):
        wait_for(
            lambda c=ctx: [s for s in forge.statuses(c) if s["state"] == "success"],
            what=f"{ctx} success status despite the forge failing",
        )
    assert forge.failures == 4
    outbox_drained(served)  # older pending ones are dropped, not sent late
    with get_db(served.app).session() as session:
        rows = session.scalars(select(StatusOutbox)).all()
        lost = [(r.context, r.state, r.last_error) for r in rows if r.given_up and not r.sent_at]
    assert [x for x in lost if not x[2].startswith("replaced by a newer")] == []
