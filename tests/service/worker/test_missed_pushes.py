"""The missed-push check finds a push whose webhook never arrived, once."""

from __future__ import annotations

from service.worker.threads import get_worker
from tests.service.conftest import ZERO, wait_for
from tests.service.worker.test_worker import finished


def test_lost_webhook_is_caught_once(serve, config_repo):
    served = serve(config_repo)
    first = config_repo.sha()
    finished(served, served.push(ZERO, first).json()["event"])
    missed = get_worker(served.app).missed_pushes
    assert missed.check() == []  # every mapped head has been seen

    lost = config_repo.commit("cloud: change without a webhook", {"instances/cloud/n.txt": "1\n"})
    config_repo.push("main")
    config_repo.push("feature-y")  # not mapped: no event
    [event_id] = missed.check()
    event = finished(served, event_id)
    assert (event["event"], event["before"], event["after"]) == ("reconcile", first, lost)
    assert [d["instance"] for d in event["deployments"]] == ["cloud"]
    assert missed.check() == []


def test_a_rollback_without_webhook_is_caught(serve, config_repo):
    from tests.service.conftest import git

    served = serve(config_repo)
    old = config_repo.sha()
    finished(served, served.push(ZERO, old).json()["event"])
    new = config_repo.commit("www: change", {"instances/www/n.txt": "1\n"})
    config_repo.push()
    finished(served, served.push(old, new).json()["event"])
    git("reset", "-q", "--hard", old, cwd=config_repo.work)
    config_repo.push(force=True)  # back to a commit seen before; its webhook is lost
    [event_id] = get_worker(served.app).missed_pushes.check()
    event = finished(served, event_id)
    assert (event["before"], event["after"]) == (new, old)
    assert "force-push" in event["reason"]  # history rewound: every instance is re-evaluated
    assert sorted(d["instance"] for d in event["deployments"]) == ["blog", "cloud", "www"]


def test_the_check_runs_periodically_when_enabled(serve, config_repo):
    served = serve(
        config_repo, repositories={"owner/config": str(config_repo.bare)}, reconcile_seconds=0.2
    )
    events = wait_for(lambda: served.api("/api/events"), what="the missed-push check to queue main")
    assert events[0]["event"] == "reconcile" and events[0]["ref"] == "refs/heads/main"
    assert finished(served, events[0]["id"])["status"] == "dispatched"


def test_an_oversized_swapyard_yaml_is_never_read(serve, config_repo, caplog):
    served = serve(config_repo, max_file_bytes=4096)
    first = config_repo.sha()
    finished(served, served.push(ZERO, first).json()["event"])
    missed = get_worker(served.app).missed_pushes
    text = config_repo.read("swapyard.yaml") + "#" * 8192 + "\n"
    config_repo.commit("swapyard.yaml: padded past the limit", {"swapyard.yaml": text})
    config_repo.push("main")
    assert missed.check() == []  # its branches cannot be known: nothing queued
    assert "swapyard.yaml at" in caplog.text and "bytes: not read" in caplog.text
