"""The event dispatcher: claims a received event, fetches and diffs it, queues its deployments.

An event is claimed (status `processing`, a lease in its own row), its
`after` commit fetched into the mirror, diffed, and turned into one
`waiting` deployment per affected instance (plus `pending` statuses), all
in one transaction (service.worker.dispatch). The lease is renewed while the
fetch runs; one that expires (a killed worker) frees the event for another
worker. A git failure puts the event back in the queue with a backoff; after
`MAX_EVENT_ATTEMPTS` claims it fails, and a poison event that kills its
worker every time is given up on the claim after that.

The mirror keeps a fetch whole or invisible and repairs itself
(handlers/gitops/mirror.py); a read that still fails on a commit fetched
whole (an object there but unreadable) has the mirror cloned afresh and runs
once more, so damage on this side costs a clone, not the push.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from handlers.errors import GitError
from handlers.gitops.changes import Change, diff_push
from handlers.gitops.pipeline import targets
from handlers.intake.events import EventStatus, unmanaged_reason
from service.forge.statuses import CommitState
from service.settings import Settings
from service.store import leases
from service.store.db import Database, rowcount
from service.store.models import Event
from service.worker import dispatch
from service.worker.workspace import Workspace

log = logging.getLogger(__name__)
MAX_EVENT_ATTEMPTS = 5


class EventDispatcher:
    """Turns queued events into deployments, one claimed event at a time."""

    def __init__(self, db: Database, settings: Settings, workspace: Workspace):
        self.db = db
        self.settings = settings
        self.workspace = workspace

    def claim(self) -> Event | None:
        """Lease the oldest claimable event (queued, or processing under an expired lease)."""
        now = time.time()
        owner, lease = self.workspace.owner, self.workspace.lease
        claimable = or_(
            (Event.status == EventStatus.QUEUED)
            & or_(Event.lease_expires.is_(None), Event.lease_expires < now),
            (Event.status == EventStatus.PROCESSING) & (Event.lease_expires < now),
        )
        with self.db.session() as session:
            ids = session.scalars(
                select(Event.id).where(claimable).order_by(Event.id).limit(5)
            ).all()
            for event_id in ids:
                won = rowcount(
                    session.execute(
                        update(Event)
                        .where(Event.id == event_id, claimable)
                        .values(
                            status=EventStatus.PROCESSING,
                            lease_owner=owner,
                            lease_expires=now + lease,
                            attempts=Event.attempts + 1,
                        )
                    )
                )
                if not won:
                    continue
                event = session.get(Event, event_id)
                assert event is not None
                if event.attempts > MAX_EVENT_ATTEMPTS:  # a poison event: stop retrying it
                    event.status, event.processed_at = EventStatus.FAILED, now
                    event.reason = f"gave up after {MAX_EVENT_ATTEMPTS} attempts: {event.reason}"
                    event.lease_owner = event.lease_expires = None
                    self._push_status(session, event, CommitState.ERROR, event.reason)
                    continue
                return event
        return None

    def dispatch(self, event: Event) -> None:
        """Fetch, diff and create the deployments of one claimed event."""
        reason = unmanaged_reason(event.repository, self.settings.repositories)
        if reason is not None:
            self._ignore(event, reason)
            return
        with leases.kept_alive(self.db, self._renew(event.id), self.workspace.lease):
            self._dispatch(event)

    def _renew(self, event_id: int) -> Callable[[Session], None]:
        owner = self.workspace.owner  # the claiming thread's identity, not the heartbeat's
        lease = self.workspace.lease

        def renew(session: Session) -> None:
            session.execute(
                update(Event)
                .where(Event.id == event_id, Event.lease_owner == owner)
                .values(lease_expires=time.time() + lease)
            )

        return renew

    def _ignore(self, event: Event, reason: str) -> None:
        with self.db.session() as session:
            current = session.get(Event, event.id)
            if current is not None and current.lease_owner == self.workspace.owner:
                current.status, current.reason, current.processed_at = (
                    EventStatus.IGNORED,
                    reason,
                    time.time(),
                )
                current.lease_owner = current.lease_expires = None
                # a repository left out of the setting after this push was received: settle
                # the status posted at receipt; otherwise swapyard posts nothing on it
                if dispatch.was_received(session, current):
                    self._push_status(
                        session, current, CommitState.ERROR, f"not deployed: {reason}"
                    )

    def _dispatch(self, event: Event) -> None:
        work = self.workspace
        try:
            url = work.clone_url(event)
            if not event.after or not event.repository or not url:
                raise GitError(
                    f"event {event.id}: no repository, commit or clone URL in the payload; "
                    "map the repository to a URL with the `repositories` setting"
                )
            after = event.after
            mirror = work.mirrors.mirror(event.repository)
            mirror.fetch(url, after)

            with work.scratch() as tmp:

                def read() -> tuple[Change, Path]:
                    if event.kind == "push":
                        change = diff_push(mirror, event.before, after)
                    else:
                        note = "pull request: every instance is evaluated"
                        change = Change(True, frozenset(), note)
                    return change, mirror.export(after, Path(tmp) / "tree", work.limits)

                change, tree = mirror.read_or_repair(url, after, read)
                branch = (
                    event.ref[len("refs/heads/") :] if event.kind == "push" and event.ref else None
                )
                chosen = targets(tree, branch, change, work.limits)
        except GitError as exc:
            self._retry_or_fail(event, str(exc))
            return
        with self.db.session() as session:
            current = session.get(Event, event.id)
            if current is None or current.lease_owner != work.owner:
                return  # our lease expired and someone else took over
            dispatch.create_deployments(session, current, chosen, self.settings.public_url)

    def _retry_or_fail(self, event: Event, reason: str) -> None:
        log.warning("event %s: %s", event.id, reason)
        with self.db.session() as session:
            current = session.get(Event, event.id)
            if current is None:
                return
            current.reason = reason
            if current.attempts >= MAX_EVENT_ATTEMPTS:
                current.status, current.processed_at = EventStatus.FAILED, time.time()
                self._push_status(session, current, CommitState.ERROR, reason)
            else:
                current.status = EventStatus.QUEUED
                current.lease_expires = time.time() + min(2.0**current.attempts, 60.0)

    def _push_status(self, session: Session, event: Event, state: CommitState, text: str) -> None:
        if event.repository and event.after:
            dispatch.push_status(session, event, state, text, self.settings.public_url)
