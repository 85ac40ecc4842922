"""The worker: claims events and deployments from the database under expiring leases.

An event is claimed (status `processing`, lease), its `after` commit fetched
into the mirror, diffed, and turned into one `waiting` deployment per affected
instance (plus `pending` statuses), all in one transaction. A deployment runs
under a lease on its instance key, so one instance runs one at a time; when
the lease is taken, the newest waiting deployment of that key runs and older
ones are marked `superseded`. A lease that expires (killed worker) frees the
work for another worker, so nothing waits forever and nothing is lost.

The mirror keeps a fetch whole or invisible and repairs itself
(handlers/gitops/mirror.py); a read that still fails on a commit fetched whole (an
object there but unreadable) has the mirror cloned afresh and runs once more,
so damage on this side costs a clone, not the push.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from handlers.errors import GitError
from handlers.gitops.changes import Change, diff_push
from handlers.gitops.mirror import MirrorCache
from handlers.gitops.pipeline import Outcome, Pipeline, clip, targets
from handlers.intake.events import unmanaged_reason
from schemas import Instance
from service.forge import statuses
from service.settings import Settings, settings_of
from service.store import leases
from service.store.db import Database, get_db, rowcount
from service.store.models import Deployment, Event, Step
from service.work import backups, dispatch
from service.work.backups import Backups
from service.work.deployer import Deployer, Recovery
from service.work.doorbell import Doorbell
from service.work.reconciler import Reconciler

log = logging.getLogger(__name__)
MAX_EVENT_ATTEMPTS = 5
STATUS_GAP = 0.1  # seconds: the status sender's shortest pause after an idle round


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        pipeline: Pipeline | None = None,
        deployer: Deployer | None = None,
    ):
        self.db = db
        self.settings = settings
        self.deployer = deployer
        self.backups: Backups | None = None
        self.limits = settings.limits
        self.pipeline = pipeline or Pipeline(executor=deployer, limits=self.limits)
        self.process_id = uuid.uuid4().hex[:12]
        self.mirrors = MirrorCache(settings.data_dir / "mirrors")
        self.work_dir = settings.data_dir / "work"
        self.lease = settings.lease_seconds
        self.sender = statuses.StatusSender(db, settings)
        self.reconciler = Reconciler(db, settings, self.mirrors)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.doorbell = Doorbell()
        if deployer is not None:
            deployer.on_wait.append(self._note_waiting)

    def _note_waiting(self, instance: Instance, text: str) -> None:
        with self.db.session() as session:
            dispatch.note_waiting(session, instance.key, text, self.settings.public_url)

    def wake(self) -> None:
        """New work was stored in this process: idle threads look now."""
        self.doorbell.ring()

    @property
    def owner(self) -> str:
        """Who holds a lease: this process and thread (sibling threads must not share one)."""
        return f"{self.process_id}/{threading.get_ident()}"

    # -- events ---------------------------------------------------------------

    def claim_event(self) -> Event | None:
        now = time.time()
        claimable = or_(
            (Event.status == "queued")
            & or_(Event.lease_expires.is_(None), Event.lease_expires < now),
            (Event.status == "processing") & (Event.lease_expires < now),
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
                            status="processing",
                            lease_owner=self.owner,
                            lease_expires=now + self.lease,
                            attempts=Event.attempts + 1,
                        )
                    )
                )
                if not won:
                    continue
                event = session.get(Event, event_id)
                assert event is not None
                if event.attempts > MAX_EVENT_ATTEMPTS:  # a poison event: stop retrying it
                    event.status, event.processed_at = "failed", now
                    event.reason = f"gave up after {MAX_EVENT_ATTEMPTS} attempts: {event.reason}"
                    event.lease_owner = event.lease_expires = None
                    self._push_status(session, event, "error", event.reason)
                    continue
                return event
        return None

    def _url(self, event: Event) -> str:
        return self.settings.repositories.get(event.repository or "") or event.clone_url or ""

    def dispatch(self, event: Event) -> None:
        """Fetch, diff and create the deployments of one claimed event."""
        reason = unmanaged_reason(event.repository, self.settings.repositories)
        if reason is not None:
            self._ignore(event, reason)
            return
        with leases.kept_alive(self.db, self._renew_event(event.id), self.lease):
            self._dispatch(event)

    def _renew_event(self, event_id: int) -> Callable[[Session], None]:
        owner = self.owner  # the claiming thread's identity, not the heartbeat's

        def renew(session: Session) -> None:
            session.execute(
                update(Event)
                .where(Event.id == event_id, Event.lease_owner == owner)
                .values(lease_expires=time.time() + self.lease)
            )

        return renew

    def _ignore(self, event: Event, reason: str) -> None:
        with self.db.session() as session:
            current = session.get(Event, event.id)
            if current is not None and current.lease_owner == self.owner:
                current.status, current.reason, current.processed_at = (
                    "ignored",
                    reason,
                    time.time(),
                )
                current.lease_owner = current.lease_expires = None
                # a repository left out of the setting after this push was received: settle
                # the status posted at receipt; otherwise swapyard posts nothing on it
                if dispatch.was_received(session, current):
                    self._push_status(session, current, "error", f"not deployed: {reason}")

    def _dispatch(self, event: Event) -> None:
        try:
            if not event.after or not event.repository or not self._url(event):
                raise GitError(
                    f"event {event.id}: no repository, commit or clone URL in the payload; "
                    "map the repository to a URL with the `repositories` setting"
                )
            url, after = self._url(event), event.after
            mirror = self.mirrors.mirror(event.repository)
            mirror.fetch(url, after)

            with tempfile.TemporaryDirectory(dir=self._work()) as tmp:

                def read() -> tuple[Change, Path]:
                    if event.kind == "push":
                        change = diff_push(mirror, event.before, after)
                    else:
                        note = "pull request: every instance is evaluated"
                        change = Change(True, frozenset(), note)
                    return change, mirror.export(after, Path(tmp) / "tree", self.limits)

                change, tree = mirror.read_or_repair(url, after, read)
                branch = (
                    event.ref[len("refs/heads/") :] if event.kind == "push" and event.ref else None
                )
                chosen = targets(tree, branch, change, self.limits)
        except GitError as exc:
            self._retry_or_fail(event, str(exc))
            return
        with self.db.session() as session:
            current = session.get(Event, event.id)
            if current is None or current.lease_owner != self.owner:
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
                current.status, current.processed_at = "failed", time.time()
                self._push_status(session, current, "error", reason)
            else:
                current.status = "queued"
                current.lease_expires = time.time() + min(2.0**current.attempts, 60.0)

    def _status(
        self, session: Session, event: Event, dep: Deployment, state: str, text: str
    ) -> None:
        dispatch.status(session, event, dep, state, text, self.settings.public_url)

    def _push_status(self, session: Session, event: Event, state: str, text: str) -> None:
        if event.repository and event.after:
            dispatch.push_status(session, event, state, text, self.settings.public_url)

    # -- deployments ----------------------------------------------------------

    def claim_deployment(self) -> Deployment | None:
        with self.db.session() as session:
            keys = session.scalars(
                select(Deployment.key)
                .where(Deployment.status.in_(("waiting", "running")))
                .group_by(Deployment.key)
                .order_by(Deployment.key)
            ).all()
            for key in keys:
                if not leases.take(session, key, self.owner, self.lease):
                    continue
                pending = session.scalars(
                    select(Deployment)
                    .where(Deployment.key == key, Deployment.status.in_(("waiting", "running")))
                    .order_by(Deployment.event_id.desc(), Deployment.id.desc())
                ).all()
                if not pending:  # finished by another worker meanwhile
                    leases.release(session, key, self.owner)
                    continue
                newest, older = pending[0], pending[1:]
                for dep in older:
                    dep.status, dep.finished_at = "superseded", time.time()
                    dep.summary = f"superseded by {newest.sha}"
                    self._status(
                        session,
                        dep.event,
                        dep,
                        "error",
                        f"superseded by {newest.sha[:12]}: the newer commit deploys instead",
                    )
                    dispatch.settle(session, dep.event, self.settings.public_url)
                newest.status, newest.started_at = "running", time.time()
                return newest
        return None

    def run_deployment(self, dep: Deployment) -> None:
        with self.db.session() as session:
            event = session.get(Event, dep.event_id)
            assert event is not None
            session.expunge(event)
        try:
            url = self._url(event)
            mirror = self.mirrors.mirror(event.repository or "")
            mirror.fetch(url, dep.sha)
            with (
                tempfile.TemporaryDirectory(dir=self._work()) as tmp,
                leases.kept_alive(
                    self.db, leases.renew_lease(dep.key, self.owner, self.lease), self.lease
                ),
            ):
                export = partial(mirror.export, dep.sha, Path(tmp) / "tree", self.limits)
                tree = mirror.read_or_repair(url, dep.sha, export)
                if dep.mode == "plan":
                    outcome = self.pipeline.run_plan(tree, [])
                else:
                    outcome = self.pipeline.run_instance(
                        tree, dep.project or "", dep.instance or "", dep.sha
                    )
        except GitError as exc:
            outcome = Outcome(dep.instance or "*", dep.project, "error", "fetch", str(exc))
        self._finish(dep, event, outcome)

    def _show(self, recovered: list[Recovery]) -> None:
        """Put what start-up recovery did on the deployments it interrupted."""
        with self.db.session() as session:
            for recovery in recovered:
                dispatch.note_recovered(session, recovery, self.settings.public_url)

    def _finish(self, dep: Deployment, event: Event, outcome: Outcome) -> None:
        now = time.time()
        with self.db.session() as session:
            current = session.get(Deployment, dep.id)
            assert current is not None
            recovered = current.recoveries
            current.status, current.action = outcome.state, outcome.action
            current.summary, current.digest = outcome.summary, outcome.digest
            description = outcome.description
            if recovered:  # the history keeps what the restart did; the status says it first
                current.summary += f" (after a restart: {'; '.join(recovered)})"
                description = clip(f"retried after a restart: {outcome.summary}")
            current.finished_at = now
            lines = (f"[{s.name}] {s.status} {s.log}".rstrip() for s in outcome.steps)
            current.log = "\n".join([current.log, *lines] if recovered else lines)
            session.add_all(Step.of(dep.id, s) for s in outcome.steps)
            self._status(session, event, current, outcome.state, description)
            dispatch.settle(session, current.event, self.settings.public_url)
            leases.release(session, dep.key, self.owner)

    # -- loop -----------------------------------------------------------------

    def _work(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def run_once(self) -> bool:
        """Do one unit of work (an event, else a deployment); False when idle."""
        event = self.claim_event()
        if event is not None:
            self.dispatch(event)
            self.wake()  # its deployments and statuses, for the idle threads
            return True
        dep = self.claim_deployment()
        if dep is not None:
            self.run_deployment(dep)
            self.wake()
            return True
        return False

    def _loop(self, step: Any, idle: float, gap: float | None) -> None:
        """Run `step` until stopped; after an idle round wait `idle` seconds, or less when
        the doorbell rings, but (`gap`) not less than that (None: the bell is ignored)."""
        while not self._stop.is_set():
            seen = self.doorbell.rings
            try:
                busy = step()
            except Exception:  # keep the thread alive; the lease frees the work
                log.exception("worker step failed")
                busy = False
            if busy or self._stop.is_set():
                continue
            if gap is None:
                self._stop.wait(idle)
            elif not (gap and self._stop.wait(gap)):
                self.doorbell.wait(seen, max(idle - gap, 0.0))

    def start(
        self, threads: int | None = None, statuses: bool = True, role: str | None = "serve"
    ) -> None:
        """Start `threads` worker threads (default WORKERS), the status sender and backups.

        With a `role` (`serve`, `worker`) this process stands for the schedule
        lease: whichever process holds it runs the backup jobs of every process
        on the database (service.work.backups); with None it only stores jobs.
        """
        count = self.settings.workers if threads is None else threads
        if self.deployer is not None and count > 0:
            self._show(self.deployer.recover())
        if self.backups is not None:
            self.backups.start(role)
        self._stop.clear()
        for n in range(count):
            self._spawn(f"swapyard-worker-{n}", self.run_once)
        if statuses:
            # at most one idle round per STATUS_GAP: under a flood of deliveries each
            # rings the bell, and a round per ring starved the web threads of the GIL
            self._spawn("swapyard-statuses", lambda: self.sender.send_due() > 0, gap=STATUS_GAP)
        every = self.settings.reconcile_seconds
        if every > 0:
            self._spawn("swapyard-reconciler", self._reconcile, every, gap=None)

    def _reconcile(self) -> bool:
        self.reconciler.run_once()
        return False  # then wait a full RECONCILE_SECONDS

    def _spawn(
        self, name: str, step: Any, idle: float | None = None, gap: float | None = 0.0
    ) -> None:
        idle = self.settings.poll_seconds if idle is None else idle
        thread = threading.Thread(target=self._loop, args=(step, idle, gap), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.doorbell.ring()
        if self.backups is not None and self.backups.scheduler.scheduler.running:
            self.backups.shutdown()  # running backups finish, then the lease is given up
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()


def init_app(app: Flask, pipeline: Pipeline | None = None) -> Worker:
    """Create (not start) the app's worker; `swapyard serve`/`worker` start it.

    With DEPLOY on, pushes to mapped branches go through the deploy engine;
    the provider itself is only touched once the worker starts.
    """
    db, settings = get_db(app), settings_of(app)
    deployer = Deployer(settings, db.engine) if settings.deploy else None
    worker = Worker(db, settings, pipeline, deployer)
    worker.backups = backups.init_app(app, deployer)
    app.extensions["swapyard.worker"] = worker
    return worker


def get_worker(app: Flask) -> Worker:
    return app.extensions["swapyard.worker"]
