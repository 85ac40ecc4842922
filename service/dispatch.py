"""From a diffed event to queued work: one deployment per instance key, with a pending status.

Runs inside the transaction that finishes the event, so an event is either
fully dispatched (deployments and statuses stored) or still claimable.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.pipeline import Targets

from . import statuses
from .models import Deployment, Event

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
    event.status, event.reason = "dispatched", chosen.note
    if chosen.project is None and not chosen.problem and event.kind == "push":
        event.status = "ignored"  # an unmapped branch: recorded with its reason, planned only
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
            status="waiting",
            log="",
            created_at=now,
        )
        if chosen.problem:
            dep.status, dep.summary, dep.finished_at = "failure", chosen.problem, now
        session.add(dep)
        session.flush()
        state = dep.status if chosen.problem else "pending"
        status(session, event, dep, state, chosen.problem or f"queued: {chosen.note}", public_url)
    event.processed_at, event.lease_owner, event.lease_expires = now, None, None


def status(
    session: Session, event: Event, dep: Deployment, state: str, text: str, public_url: str
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
