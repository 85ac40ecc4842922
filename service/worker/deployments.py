"""The deployment runner: claims the newest queued deployment of an instance and runs it.

A deployment runs under a lease on its instance key (service.store.leases),
so one instance runs one deployment at a time; when the lease is taken, the
newest waiting deployment of that key runs and older ones are marked
`superseded` (the newer commit deploys instead). The lease is renewed for as
long as the run takes, a deploy waiting for a backup included; one that
expires (a killed worker) frees the instance for another worker.

The run reads the commit out of the mirror (repaired like the dispatcher's
reads), hands the tree to the pipeline (validate, render and, with the
deployer as its executor, deploy) and stores the result, its steps and its
commit status in one transaction. What start-up recovery did to a swap a
dead worker left (service.worker.deployer.Recovery) and what a running deploy
waits for (`WaitNotice`) are shown on the deployment too, where its history
is read, not only in the log.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.errors import GitError
from handlers.gitops.pipeline import DeploymentResult, DeploymentStatus, Pipeline, clip
from schemas import Instance
from service.forge.statuses import CommitState
from service.settings import Settings
from service.store import leases
from service.store.db import Database
from service.store.models import Deployment, Event, Step
from service.worker import dispatch
from service.worker.deployer import Recovery
from service.worker.workspace import Workspace


class DeploymentRunner:
    """Runs queued deployments through the pipeline, one instance key at a time."""

    def __init__(self, db: Database, settings: Settings, workspace: Workspace, pipeline: Pipeline):
        self.db = db
        self.settings = settings
        self.workspace = workspace
        self.pipeline = pipeline

    def claim(self) -> Deployment | None:
        """Lease an instance key with work queued; its newest deployment starts running."""
        owner, lease = self.workspace.owner, self.workspace.lease
        with self.db.session() as session:
            keys = session.scalars(
                select(Deployment.key)
                .where(Deployment.status.in_(DeploymentStatus.open()))
                .group_by(Deployment.key)
                .order_by(Deployment.key)
            ).all()
            for key in keys:
                if not leases.take(session, key, owner, lease):
                    continue
                pending = session.scalars(
                    select(Deployment)
                    .where(Deployment.key == key, Deployment.status.in_(DeploymentStatus.open()))
                    .order_by(Deployment.event_id.desc(), Deployment.id.desc())
                ).all()
                if not pending:  # finished by another worker meanwhile
                    leases.release(session, key, owner)
                    continue
                newest, older = pending[0], pending[1:]
                for dep in older:
                    dep.status, dep.finished_at = DeploymentStatus.SUPERSEDED, time.time()
                    dep.summary = f"superseded by {newest.sha}"
                    self._status(
                        session,
                        dep.event,
                        dep,
                        CommitState.ERROR,
                        f"superseded by {newest.sha[:12]}: the newer commit deploys instead",
                    )
                    dispatch.settle(session, dep.event, self.settings.public_url)
                newest.status, newest.started_at = DeploymentStatus.RUNNING, time.time()
                return newest
        return None

    def run(self, dep: Deployment) -> None:
        """Run one claimed deployment to its end and store the result; never raises on git."""
        work = self.workspace
        with self.db.session() as session:
            event = session.get(Event, dep.event_id)
            assert event is not None
            session.expunge(event)
        try:
            url = work.clone_url(event)
            mirror = work.mirrors.mirror(event.repository or "")
            mirror.fetch(url, dep.sha)
            with (
                work.scratch() as tmp,
                leases.kept_alive(
                    self.db, leases.renew_lease(dep.key, work.owner, work.lease), work.lease
                ),
            ):
                export = partial(mirror.export, dep.sha, Path(tmp) / "tree", work.limits)
                tree = mirror.read_or_repair(url, dep.sha, export)
                if dep.mode == "plan":
                    result = self.pipeline.run_plan_only(tree, [])
                else:
                    result = self.pipeline.run_instance(
                        tree, dep.project or "", dep.instance or "", dep.sha
                    )
        except GitError as exc:
            result = DeploymentResult(
                dep.instance or "*", dep.project, DeploymentStatus.ERROR, "fetch", str(exc)
            )
        self._finish(dep, event, result)

    def show_recovered(self, recovered: list[Recovery]) -> None:
        """Put what start-up recovery did on the deployments it interrupted."""
        with self.db.session() as session:
            for recovery in recovered:
                dispatch.note_recovered(session, recovery, self.settings.public_url)

    def _finish(self, dep: Deployment, event: Event, result: DeploymentResult) -> None:
        now = time.time()
        with self.db.session() as session:
            current = session.get(Deployment, dep.id)
            assert current is not None
            recovered = current.recoveries
            current.status, current.action = result.status, result.action
            current.summary, current.digest = result.summary, result.digest
            description = result.description
            if recovered:  # the history keeps what the restart did; the status says it first
                current.summary += f" (after a restart: {'; '.join(recovered)})"
                description = clip(f"retried after a restart: {result.summary}")
            current.finished_at = now
            lines = (f"[{s.name}] {s.status} {s.log}".rstrip() for s in result.steps)
            current.log = "\n".join([current.log, *lines] if recovered else lines)
            session.add_all(Step.of(dep.id, s) for s in result.steps)
            self._status(session, event, current, CommitState(result.status), description)
            dispatch.settle(session, current.event, self.settings.public_url)
            leases.release(session, dep.key, self.workspace.owner)

    def _status(
        self, session: Session, event: Event, dep: Deployment, state: CommitState, text: str
    ) -> None:
        dispatch.status(session, event, dep, state, text, self.settings.public_url)


class WaitNotice:
    """The deployer's `on_wait`: shows on an instance's running deployment what it waits for
    (a backup holding the instance's lock, the old records' TTL before the old instance is
    destroyed), in its summary, log and a `pending` status."""

    def __init__(self, db: Database, public_url: str):
        self.db = db
        self.public_url = public_url

    def __call__(self, instance: Instance, text: str) -> None:
        with self.db.session() as session:
            dispatch.note_waiting(session, instance.key, text, self.public_url)
