"""The missed-push check: catches pushes whose webhook never arrived.

Every `RECONCILE_SECONDS` (0: off, the default) it lists the branches of each
known repository (`git ls-remote`), keeps those that the branch's own
`swapyard.yaml` maps to a project, and queues a synthetic push event for a
head commit it has never seen. Its delivery id is derived from the branch and
commit, so two processes running the check (or a late webhook) never run a
commit twice.

It is not the swap engine's `reconcile` (deploy/swap/engine.py), which puts
volumes and routes back after a restart; it was once called the reconciler
too, hence the setting's name. The setting keeps it (`reconcile_seconds`,
documented as the missed-push check's interval), as do the events it stores
(event `reconcile`, delivery ids `reconcile:...`), so existing configs and
databases read the same.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from handlers.errors import GitError
from handlers.gitops.changes import REPO_FILE
from handlers.gitops.mirror import Mirror, MirrorCache
from handlers.gitops.pipeline import mapped_branches
from handlers.intake.events import EventStatus
from handlers.refs import ZERO_SHA
from service.settings import Settings
from service.store.db import Database
from service.store.models import Event

log = logging.getLogger(__name__)


class MissedPushCheck:
    """Lists the heads of known repositories and queues the mapped ones never seen."""

    def __init__(self, db: Database, settings: Settings, mirrors: MirrorCache):
        self.db = db
        self.settings = settings
        self.mirrors = mirrors
        self.limits = settings.limits

    def _known(self) -> dict[str, tuple[str, str]]:
        """Repository -> (forge, clone URL), from the settings and from events received."""
        known: dict[str, tuple[str, str]] = {}
        with self.db.session() as session:
            rows = session.execute(
                select(Event.repository, Event.forge, Event.clone_url)
                .where(Event.kind == "push", Event.repository.is_not(None))
                .order_by(Event.id)
            ).all()
        for repository, forge, url in rows:
            if repository:
                known[repository] = (forge, url or "")
        pinned = self.settings.repositories
        if pinned:
            known = {r: (known.get(r, ("github", ""))[0], u) for r, u in pinned.items()}
        return {r: v for r, v in known.items() if v[1]}

    def check(self) -> list[int]:
        """Queue an event for each unseen head of a mapped branch; returns their ids."""
        queued = []
        for repository, (forge, url) in sorted(self._known().items()):
            mirror = self.mirrors.mirror(repository)
            try:
                heads = mirror.remote_heads(url)
                for branch, sha in sorted(heads.items()):
                    if self._seen(repository, branch, sha):
                        continue
                    mirror.fetch(url, sha)
                    if branch in self._mapped(mirror, sha):
                        event_id = self._queue(forge, repository, url, branch, sha)
                        if event_id is not None:
                            queued.append(event_id)
            except GitError as exc:  # one repository's trouble never stops the others
                log.warning("missed-push check: %s", exc)
        return queued

    def _mapped(self, mirror: Mirror, sha: str) -> set[str]:
        size = mirror.blob_size(sha, REPO_FILE)
        if size is None:
            return set()
        if size > self.limits.max_file_bytes:  # never read whole: a push shows the problem
            log.warning(
                "missed-push check: %s at %s is %d bytes: not read", REPO_FILE, sha[:12], size
            )
            return set()
        content = mirror.show(sha, REPO_FILE)
        if content is None:
            return set()
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / REPO_FILE).write_bytes(content)
            return mapped_branches(Path(tmp), self.limits)

    def _seen(self, repository: str, branch: str, sha: str) -> bool:
        """Whether the newest event of the branch is for `sha` (a rollback to an older
        commit is a new head, so it is compared with the newest event only)."""
        with self.db.session() as session:
            newest = session.scalar(
                select(Event.after)
                .where(Event.repository == repository, Event.ref == f"refs/heads/{branch}")
                .order_by(Event.id.desc())
            )
        return newest == sha

    def _queue(self, forge: str, repository: str, url: str, branch: str, sha: str) -> int | None:
        ref = f"refs/heads/{branch}"
        with self.db.session() as session:
            last = session.scalar(
                select(Event.after)
                .where(Event.repository == repository, Event.ref == ref, Event.kind == "push")
                .order_by(Event.id.desc())
            )
        event = Event(
            forge=forge,
            event_name="reconcile",
            kind="push",
            delivery_id=f"reconcile:{repository}:{ref}:{sha}",
            received_at=time.time(),
            status=EventStatus.QUEUED,
            reason="found by the missed-push check: no webhook arrived for this commit",
            repository=repository,
            clone_url=url,
            ref=ref,
            before=last or ZERO_SHA,
            after=sha,
            attempts=0,
        )
        try:
            with self.db.session() as session:
                session.add(event)
        except IntegrityError:
            return None
        return event.id
