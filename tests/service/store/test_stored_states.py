"""State columns hold the values of the StrEnums that own them, so that a database
written before the enums existed (plain strings, written here with raw SQL) is
claimed, run and settled as before."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from handlers.gitops.pipeline import DeploymentStatus, StepStatus
from handlers.intake.events import EventStatus
from service.forge.statuses import CommitState, outbox_row
from service.store.db import get_db
from service.store.models import StatusOutbox
from service.worker.dispatch import PUSH_CONTEXT
from service.worker.threads import get_worker
from tests.service.conftest import REPO_NAME, ZERO
from tests.service.worker.test_worker import finished

# The strings releases before the enums stored; changing one strands existing rows.
STORED = {
    EventStatus: {"queued", "ignored", "ping", "processing", "dispatched", "failed"},
    DeploymentStatus: {"waiting", "running", "success", "failure", "error", "superseded"},
    StepStatus: {"running", "started", "done", "failed", "error"},
    CommitState: {"pending", "success", "failure", "error"},
}


@pytest.mark.parametrize("enum", list(STORED), ids=lambda e: e.__name__)
def test_each_state_keeps_its_stored_string(enum):
    assert {member.value for member in enum} == STORED[enum]
    assert all(str(member) == member.value for member in enum)  # what SQL and JSON receive


def test_open_and_ended_deployments_cover_every_state_once():
    opened, ended = set(DeploymentStatus.open()), set(DeploymentStatus.ended())
    assert opened == {"waiting", "running"}
    assert opened.isdisjoint(ended) and opened | ended == set(DeploymentStatus)


def test_a_commit_status_outside_the_states_is_refused_before_it_is_stored():
    with pytest.raises(ValueError, match="'done' is not a valid CommitState"):
        outbox_row(
            forge="github",
            repository=REPO_NAME,
            sha="a" * 40,
            state="done",  # type: ignore[arg-type]
            context=PUSH_CONTEXT,
            description="",
            target_url=None,
        )


def test_an_event_stored_as_plain_strings_is_claimed_run_and_settled(serve, config_repo):
    served = serve(config_repo, workers=0)
    sha = config_repo.sha()
    with get_db(served.app).connection() as connection:
        event_id = connection.execute(
            text(
                "INSERT INTO events (forge, event_name, kind, delivery_id, received_at, status,"
                " repository, clone_url, ref, before, after, attempts)"
                " VALUES ('github', 'push', 'push', 'from-an-old-release', :now, 'queued',"
                " :repository, :url, 'refs/heads/main', :before, :after, 0) RETURNING id"
            ),
            {
                "now": time.time(),
                "repository": REPO_NAME,
                "url": str(config_repo.bare),
                "before": ZERO,
                "after": sha,
            },
        ).scalar_one()
    get_worker(served.app).start(1, statuses=False)
    event = finished(served, event_id)
    assert event["status"] == "dispatched", event
    assert event["deployments"] and {d["status"] for d in event["deployments"]} == {"success"}
    with get_db(served.app).session() as session:
        pushed = session.scalars(
            select(StatusOutbox.state)
            .where(StatusOutbox.sha == sha, StatusOutbox.context == PUSH_CONTEXT)
            .order_by(StatusOutbox.id)
        ).all()
    assert pushed[-1] == CommitState.SUCCESS and type(pushed[-1]) is str, pushed
