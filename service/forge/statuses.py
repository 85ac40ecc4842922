"""Commit statuses through an outbox: stored with the work, sent later, retried with backoff.

A forge that is down delays a status, never loses it and never fails a
deployment. Only the newest status per (repository, commit, context) is
sent: an older one still waiting is dropped, so a late retry can never
overwrite a newer state. GitHub, GitHub Enterprise and Gitea/Forgejo (its
GitHub-compatible status endpoint) go through PyGithub, GitLab through its own
status API (`service.forge.gitlab`).

`CommitState` is the one definition of the states a commit status takes; its
values are GitHub's words, stored in the outbox as they are sent.
"""

from __future__ import annotations

import threading
import time
import uuid
from enum import StrEnum
from typing import Any

from github import Auth, Github, GithubException, RateLimitExceededException
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from handlers.gitops.pipeline import clip
from handlers.intake.forges import FORGES
from service.forge.gitlab import GitLabAnswer, GitLabStatuses
from service.settings import Settings
from service.store import leases
from service.store.db import Database, rowcount
from service.store.models import StatusOutbox

SENDER_LEASE = "status-sender"
SETTLE_WINDOW = 500  # due rows looked at per round for bulk give-ups
# Answers that the same request would get again: bad request, no or wrong
# token, no access, no such repository or commit, rejected fields.
PERMANENT = (400, 401, 403, 404, 422)


class CommitState(StrEnum):
    """The state of a commit status, as the forge shows it on the commit."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


def outbox_row(
    *,
    forge: str,
    repository: str,
    sha: str,
    state: CommitState,
    context: str,
    description: str,
    target_url: str | None,
    now: float | None = None,
) -> dict[str, Any]:
    """The columns of a status waiting in the outbox (for Core inserts and `enqueue`)."""
    state = CommitState(state)  # a string that is no state fails here, not at the forge
    now = time.time() if now is None else now
    return {
        "forge": forge,
        "repository": repository,
        "sha": sha,
        "state": state,
        "context": context,
        "description": clip(description),
        "target_url": target_url,
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "given_up": False,
    }


def enqueue(session: Session, **status: Any) -> StatusOutbox:
    """Queue a status (the keywords of `outbox_row`) in the session's transaction."""
    row = StatusOutbox(**outbox_row(**status))
    session.add(row)
    return row


def forge_access(settings: Settings, forge: str) -> tuple[str | None, str | None]:
    """The API URL and token the settings give for `forge` (None where a forge has none)."""
    name = forge.lower()
    return getattr(settings, f"{name}_api_url", None), getattr(settings, f"{name}_token", None)


def sending_forges(settings: Settings) -> frozenset[str]:
    """The forges statuses can be sent to: those with an API URL and a token."""
    return frozenset(forge for forge in FORGES if all(forge_access(settings, forge)))


class StatusSender:
    def __init__(self, db: Database, settings: Settings):
        self.db = db
        self.settings = settings
        self.forges = sending_forges(settings)
        self._process = uuid.uuid4().hex[:12]

    def _unsendable(self, forge: str) -> str | None:
        """Why statuses for `forge` cannot be sent (no API URL or token), or None."""
        if forge in self.forges:
            return None
        prefix = forge.upper()
        return f"no {prefix}_API_URL/{prefix}_TOKEN configured (set SWAPYARD_{prefix}_TOKEN)"

    def _client(self, forge: str) -> Github | GitLabStatuses:
        """A client for `forge`: PyGithub, or GitLab's status API."""
        url, token = forge_access(self.settings, forge)
        assert url and token  # only asked for a forge in `self.forges`
        timeout = self.settings.status_timeout_seconds
        if forge == "gitlab":
            return GitLabStatuses(url, token, timeout)
        return Github(
            base_url=url,
            auth=Auth.Token(token),
            timeout=int(timeout),  # PyGithub takes whole seconds
            retry=None,
            lazy=True,
        )

    def _claim(self, limit: int = 20) -> list[StatusOutbox]:
        """Settle in bulk what needs no call, then lease up to `limit` due statuses.

        A busy service queues statuses by the thousand (one per push at receipt,
        more per instance), faster than a forge takes them. Of the oldest
        SETTLE_WINDOW due rows, the ones a newer status of their context replaces
        and the ones for a forge without a token are given up with one UPDATE
        each: bounded work per round, however long the queue.
        """
        now = time.time()
        due = and_(StatusOutbox.waiting(), StatusOutbox.next_attempt_at <= now)

        def oldest_due(*where: Any) -> Any:
            return StatusOutbox.id.in_(
                select(StatusOutbox.id)
                .where(due, *where)
                .order_by(StatusOutbox.id)
                .limit(SETTLE_WINDOW)
            )

        claimed = []
        with self.db.session() as session:
            newer = aliased(StatusOutbox)
            session.execute(
                update(StatusOutbox)
                .where(
                    oldest_due(),
                    exists().where(
                        newer.repository == StatusOutbox.repository,
                        newer.sha == StatusOutbox.sha,
                        newer.context == StatusOutbox.context,
                        newer.id > StatusOutbox.id,
                    ),
                )
                .values(given_up=True, last_error="replaced by a newer status of its context")
                .execution_options(synchronize_session=False)
            )
            for forge in FORGES:
                if (reason := self._unsendable(forge)) is not None:
                    session.execute(
                        update(StatusOutbox)
                        .where(oldest_due(StatusOutbox.forge == forge))
                        .values(
                            given_up=True, attempts=StatusOutbox.attempts + 1, last_error=reason
                        )
                        .execution_options(synchronize_session=False)
                    )
            rows = session.scalars(
                select(StatusOutbox).where(due).order_by(StatusOutbox.id).limit(limit)
            ).all()
            lease = now + 3 * self.settings.status_timeout_seconds
            for row in rows:
                won = rowcount(
                    session.execute(
                        update(StatusOutbox)
                        .where(
                            StatusOutbox.id == row.id,
                            StatusOutbox.next_attempt_at == row.next_attempt_at,
                        )
                        .values(next_attempt_at=lease)
                    )
                )
                if won:
                    claimed.append(row)
        return claimed

    def send_due(self) -> int:
        """Send what is due; returns how many were sent.

        One sender at a time across threads and processes (a lease), so statuses of
        one context can never overtake each other on the way to the forge.
        """
        owner = f"{self._process}/{threading.get_ident()}"
        seconds = 3 * self.settings.status_timeout_seconds
        with self.db.session() as session:
            if not leases.take(session, SENDER_LEASE, owner, seconds):
                return 0
        try:
            renew = leases.renew_lease(SENDER_LEASE, owner, seconds)
            with leases.kept_alive(self.db, renew, seconds):
                return self._send_claimed()
        finally:
            with self.db.session() as session:
                leases.release(session, SENDER_LEASE, owner)

    def _send_claimed(self) -> int:
        """Post the claimed statuses, then record every answer in one transaction. A
        crash between the two posts some again once their lease expires, which a forge
        takes as the same status.

        A client per status, not per round: a reused PyGithub client took a second per
        call against a server that closes each connection (measured with the tests'
        forge stand-in), where a new client takes ~2 ms."""
        results = [(row.id, *self._send(row)) for row in self._claim()]
        if not results:
            return 0
        now = time.time()
        with self.db.session() as session:
            for row_id, error, permanent in results:
                current = session.get(StatusOutbox, row_id)
                assert current is not None
                current.attempts += 1
                current.last_error = error
                if error is None:
                    current.sent_at = now
                elif permanent or current.attempts >= self.settings.status_max_attempts:
                    current.given_up = True
                else:
                    delay = self.settings.status_backoff_seconds * 2 ** (current.attempts - 1)
                    current.next_attempt_at = now + min(
                        delay, self.settings.status_backoff_max_seconds
                    )
        return sum(1 for _, error, _ in results if error is None)

    def _send(self, row: StatusOutbox) -> tuple[str | None, bool]:
        """Post one status: (error or None, whether retrying is pointless)."""
        client = self._client(row.forge)
        try:
            _post(client, row)
        except RateLimitExceededException as exc:  # a 403 that only means "later"
            return f"forge rate limit: {clip(str(exc.data), 200)}", False
        except GithubException as exc:
            return _answered(exc.status, exc.data)
        except GitLabAnswer as exc:
            return _answered(exc.status, exc.message)
        except (OSError, ValueError) as exc:  # connection refused, timeouts, bad JSON
            return f"{type(exc).__name__}: {clip(str(exc), 200)}", False
        finally:
            client.close()
        return None, False


def _post(client: Github | GitLabStatuses, row: StatusOutbox) -> None:
    """One status call through the forge's own API."""
    if isinstance(client, GitLabStatuses):
        client.post(
            row.repository,
            row.sha,
            state=row.state,
            name=row.context,
            description=row.description,
            target_url=row.target_url,
        )
        return
    client.get_repo(row.repository).get_commit(row.sha).create_status(
        state=row.state,
        target_url=row.target_url or "",
        description=row.description,
        context=row.context,
    )


def _answered(status: int, detail: object) -> tuple[str, bool]:
    """The outbox error for an HTTP error answer of the forge, and whether it is permanent."""
    return f"forge answered {status}: {clip(str(detail), 200)}", status in PERMANENT
