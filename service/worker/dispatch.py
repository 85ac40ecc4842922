"""From a diffed event to queued work, and the commit statuses that tell the forge about it.

`create_deployments` queues one deployment per instance key with a pending
status, inside the transaction that finishes the event, so an event is
either fully dispatched (deployments and statuses stored) or still
claimable. The rest queues statuses: per deployment (`status`,
`note_waiting`, `note_recovered`) and for the push as a whole (`received_status`,
`settle`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.gitops.pipeline import DeploymentStatus, HistoryStep, StepStatus, Targets, clip
from handlers.intake.events import EventStatus
from service.forge import statuses
from service.forge.statuses import CommitState
from service.store.models import RECOVERED_STEP, Deployment, Event, StatusOutbox, Step
from service.worker.deployer import Recovery

Row = tuple[str, str | None, str | None, str, str]  # key, project, instance, context, mode


def _rows(event: Event, chosen: Targets) -> list[Row]:
    if chosen.problem:
        return [("plan/" + (event.ref or ""), None, None, "swapyard/plan", "plan")]
    if chosen.project is None:
        plan: Row = ("plan/" + (event.ref or ""), None, None, "swapyard/plan", "plan")
        return [plan] if chosen.names else []
    p = chosen.project
    return [(f"{p}/{n}", p, n, f"swapyard/{p}/{n}", "deploy") for n in chosen.names]


def create_deployments(session: Session, event: Event, chosen: Targets, public_url: str) -> None:
    """Queue the event's deployments (idempotent per key) and mark the event dispatched."""
    existing = set(session.scalars(select(Deployment.key).where(Deployment.event_id == event.id)))
    event.status, event.reason = EventStatus.DISPATCHED, chosen.note
    if chosen.project is None and not chosen.problem and event.kind == "push":
        # an unmapped branch: recorded with its reason, planned only
        event.status = EventStatus.IGNORED
    now = time.time()
    for key, project, name, context, mode in _rows(event, chosen):
        if key in existing:
            continue
        dep = Deployment(
            event_id=event.id,
            key=key,
            project=project,
            instance=name,
            context=context,
            mode=mode,
            sha=event.after,
            status=DeploymentStatus.WAITING,
            log="",
            created_at=now,
        )
        if chosen.problem:
            dep.status, dep.summary, dep.finished_at = DeploymentStatus.FAILURE, chosen.problem, now
        session.add(dep)
        session.flush()
        state = CommitState.FAILURE if chosen.problem else CommitState.PENDING
        status(session, event, dep, state, chosen.problem or f"queued: {chosen.note}", public_url)
    event.processed_at, event.lease_owner, event.lease_expires = now, None, None
    settle(session, event, public_url, chosen.note)


def note_waiting(session: Session, key: str, text: str, public_url: str) -> None:
    """Show what the running deployment of instance `key` waits for (a backup holding its
    lock): in its summary, its log and a `pending` status."""
    dep = session.scalars(
        select(Deployment).where(
            Deployment.key == key, Deployment.status == DeploymentStatus.RUNNING
        )
    ).first()
    if dep is None:
        return
    dep.summary = text
    dep.log = "\n".join(filter(None, [dep.log, text]))
    status(session, dep.event, dep, CommitState.PENDING, text, public_url)


def note_recovered(session: Session, recovery: Recovery, public_url: str) -> None:
    """Show on the deployment a dead worker was running what recovery did to its swap.

    The swap's journaled steps (the interrupted attempt's, then the rollback's or the
    completion's) join the deployment's steps, followed by a `recovered` step with the
    swap's result; its summary, log and a `pending` status say it, and the deployment then
    runs again (its lease has expired). Nothing when no unfinished deployment matches
    (the swap was started outside the worker).
    """
    dep = session.scalars(
        select(Deployment)
        .where(
            Deployment.key == recovery.key,
            Deployment.sha == recovery.commit,
            Deployment.status.in_(DeploymentStatus.open()),
        )
        .order_by(Deployment.id.desc())
    ).first()
    if dep is None:
        return
    now = time.time()
    summary = recovery.result.summary
    steps = [*recovery.steps, HistoryStep(RECOVERED_STEP, StepStatus.DONE, now, now, summary)]
    session.add_all(Step.of(dep.id, s) for s in steps)
    text = f"recovered after a restart: {summary}; deploying again"
    dep.summary = text
    dep.log = "\n".join(filter(None, [dep.log, text]))
    status(session, dep.event, dep, CommitState.PENDING, clip(text), public_url)


def status(
    session: Session,
    event: Event,
    dep: Deployment,
    state: CommitState,
    text: str,
    public_url: str,
) -> None:
    """Queue a commit status for `dep` in the outbox, linking to its page."""
    statuses.enqueue(
        session,
        forge=event.forge,
        repository=event.repository or "",
        sha=dep.sha,
        state=state,
        context=dep.context,
        description=text,
        target_url=f"{public_url}/deployments/{dep.id}",
    )


# -- the push as a whole ------------------------------------------------------

PUSH_CONTEXT = "swapyard"
"""Status context of a whole push: `pending` when its delivery is stored (before the
202), then settled once its instances' deployments have all ended."""


def received_status(
    event_id: int, forge: str, repository: str, sha: str, public_url: str, now: float
) -> dict[str, object]:
    """The outbox row of a push's first status, stored with the delivery itself."""
    return statuses.outbox_row(
        forge=forge,
        repository=repository,
        sha=sha,
        state=CommitState.PENDING,
        context=PUSH_CONTEXT,
        description="received: looking for the instances this commit changes",
        target_url=f"{public_url}/events/{event_id}",
        now=now,
    )


def was_received(session: Session, event: Event) -> bool:
    """True when the push's status was stored at receipt (its forge has a token)."""
    return (
        session.scalar(
            select(StatusOutbox.id)
            .where(
                StatusOutbox.repository == (event.repository or ""),
                StatusOutbox.sha == (event.after or ""),
                StatusOutbox.context == PUSH_CONTEXT,
            )
            .limit(1)
        )
        is not None
    )


def push_status(
    session: Session, event: Event, state: CommitState, text: str, public_url: str
) -> None:
    statuses.enqueue(
        session,
        forge=event.forge,
        repository=event.repository or "",
        sha=event.after or "",
        state=state,
        context=PUSH_CONTEXT,
        description=text,
        target_url=f"{public_url}/events/{event.id}",
    )


def settle(session: Session, event: Event, public_url: str, note: str | None = None) -> None:
    """Post the push's status: still pending while a deployment waits or runs, else final.

    Called whenever one of the event's deployments changes; the event row is locked
    first (PostgreSQL), so of two deployments finishing at once exactly one settles it.
    """
    if not event.repository or not event.after:
        return
    session.execute(select(Event.id).where(Event.id == event.id).with_for_update())
    deps = session.scalars(
        select(Deployment).where(Deployment.event_id == event.id).order_by(Deployment.id)
    ).all()
    open_ = [_label(d) for d in deps if d.status in DeploymentStatus.open()]
    if open_:
        verb = "planning" if all(d.mode == "plan" for d in deps) else "deploying"
        push_status(session, event, CommitState.PENDING, f"{verb} {', '.join(open_)}", public_url)
        return
    state, text = _push_state(deps, note or event.reason or "nothing to deploy")
    push_status(session, event, state, text, public_url)


_PAST: dict[str, str] = {
    DeploymentStatus.SUCCESS: "succeeded",
    DeploymentStatus.FAILURE: "failed",
    DeploymentStatus.ERROR: "errored",
}


def _label(d: Deployment) -> str:
    return d.key if d.mode == "deploy" else "plan"


def _push_state(deps: Sequence[Deployment], note: str) -> tuple[CommitState, str]:
    """The settled status of a push whose deployments have all ended, and its text."""
    if not deps:
        return CommitState.SUCCESS, note
    if len(deps) == 1:
        d = deps[0]
        superseded = d.status == DeploymentStatus.SUPERSEDED
        state = CommitState.ERROR if superseded else CommitState(d.status)
        return state, f"{_label(d)}: {d.summary or d.status}"
    counts: dict[str, int] = {}
    for d in deps:
        counts[_PAST.get(d.status, d.status)] = counts.get(_PAST.get(d.status, d.status), 0) + 1
    failed = (DeploymentStatus.FAILURE, DeploymentStatus.ERROR)
    worst = next((d for d in deps if d.status in failed), None)
    statuses_ = {d.status for d in deps}
    state = (
        CommitState.FAILURE
        if DeploymentStatus.FAILURE in statuses_
        else CommitState.ERROR
        if statuses_ & {DeploymentStatus.ERROR, DeploymentStatus.SUPERSEDED}
        else CommitState.SUCCESS
    )
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if worst is not None:
        text += f"; {_label(worst)}: {worst.summary or worst.status}"
    return state, text
