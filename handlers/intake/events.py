"""Event name -> handler: what a delivery means for swapyard.

A handler turns one forge's payload into a `Classified` event: queued for the
worker (with the repository, ref and commits it needs) or ignored with the
reason recorded. The built-in handlers are registered through `register`, the
same way outside code adds one.

`EventStatus` is the one definition of an event's states, from its
classification here to the worker's (the values are the stored strings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from handlers.refs import ZERO_SHA


class EventStatus(StrEnum):
    """Where a delivery is: classified at receipt, then taken through by the worker."""

    QUEUED = "queued"  # stored for the worker
    IGNORED = "ignored"  # stored with its reason, never acted on
    PING = "ping"  # answered `pong` at receipt, never stored
    PROCESSING = "processing"  # claimed by a worker (a lease that expires)
    DISPATCHED = "dispatched"  # its deployments are queued
    FAILED = "failed"  # could not be fetched or diffed, retries exhausted


@dataclass(frozen=True)
class Classified:
    status: EventStatus  # queued | ignored | ping
    kind: str  # push | pull_request | ping | <event name>
    reason: str | None = None
    repository: str | None = None
    clone_url: str | None = None
    ref: str | None = None
    before: str | None = None
    after: str | None = None


Handler = Callable[[Mapping[str, Any]], Classified]


class EventRegistry:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}

    def register(self, forge: str, *event_names: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            for name in event_names:
                self._handlers[(forge, name)] = handler
            return handler

        return decorator

    def handles(self, forge: str, event_name: str) -> bool:
        return (forge, event_name) in self._handlers

    def classify(self, forge: str, event_name: str, payload: Mapping[str, Any]) -> Classified:
        handler = self._handlers.get((forge, event_name))
        if handler is None:
            return Classified(
                EventStatus.IGNORED, event_name, f"{forge} event {event_name!r} is not handled"
            )
        return handler(payload)

    def copy(self) -> EventRegistry:
        other = EventRegistry()
        other._handlers = dict(self._handlers)
        return other


REGISTRY = EventRegistry()


def unmanaged_reason(repository: str | None, repositories: Mapping[str, str]) -> str | None:
    """Why `repository` is not swapyard's to deploy, or None when it is: `repositories`,
    when set, lists the only repositories swapyard manages."""
    if not repositories or repository in repositories:
        return None
    return f"repository {repository} is not in the repositories setting"


def unmanaged(event: Classified, repositories: Mapping[str, str]) -> Classified:
    """`event` ignored when its repository is not managed (`unmanaged_reason`).

    Decided at receipt, so a delivery from a repository swapyard does not manage (an
    organisation-wide hook) is stored as ignored and nothing is ever posted on it.
    """
    reason = unmanaged_reason(event.repository, repositories)
    if event.status != EventStatus.QUEUED or reason is None:
        return event
    return replace(event, status=EventStatus.IGNORED, reason=reason)


def _repo_fields(payload: Mapping[str, Any]) -> dict[str, str | None]:
    repo = payload.get("repository") or {}
    project = payload.get("project") or {}
    return {
        "repository": repo.get("full_name") or project.get("path_with_namespace"),
        "clone_url": repo.get("clone_url")
        or project.get("git_http_url")
        or repo.get("git_http_url"),
    }


def _push(payload: Mapping[str, Any]) -> Classified:
    ref = str(payload.get("ref") or "")
    before = str(payload.get("before") or ZERO_SHA)
    after = str(payload.get("after") or ZERO_SHA)
    event = Classified(
        EventStatus.QUEUED,
        "push",
        None,
        ref=ref,
        before=before,
        after=after,
        **_repo_fields(payload),
    )
    if not event.repository:
        return replace(event, status=EventStatus.IGNORED, reason="push without a repository name")
    if ref.startswith("refs/tags/"):
        tag = ref[len("refs/tags/") :]
        return replace(
            event, status=EventStatus.IGNORED, reason=f"tag push ({tag}): tags are not deployed"
        )
    if not ref.startswith("refs/heads/"):
        return replace(
            event, status=EventStatus.IGNORED, reason=f"push to {ref!r}: only branches are deployed"
        )
    branch = ref[len("refs/heads/") :]
    if after == ZERO_SHA or payload.get("deleted"):
        return replace(event, status=EventStatus.IGNORED, reason=_deleted("branch", branch))
    return event


def _deleted(ref_type: str, name: str) -> str:
    if ref_type == "branch":
        return f"branch {name} deleted: nothing is destroyed (set state: absent to destroy)"
    return f"{ref_type} {name} deleted: tags are not deployed"


@REGISTRY.register("github", "delete")
@REGISTRY.register("gitea", "delete")
def _delete(payload: Mapping[str, Any]) -> Classified:
    """A deleted branch or tag as its own event (Gitea and Forgejo report a deleted branch
    only this way, never as a push): recorded, never acted on."""
    ref_type = str(payload.get("ref_type") or "ref")
    name = str(payload.get("ref") or "")
    reason = _deleted(ref_type, name.removeprefix("refs/heads/").removeprefix("refs/tags/"))
    return Classified(EventStatus.IGNORED, "delete", reason, ref=name, **_repo_fields(payload))


@REGISTRY.register("github", "ping")
@REGISTRY.register("gitea", "ping")
def _ping(payload: Mapping[str, Any]) -> Classified:
    return Classified(EventStatus.PING, "ping", "pong", **_repo_fields(payload))


REGISTRY.register("github", "push")(_push)
REGISTRY.register("gitea", "push")(_push)
REGISTRY.register("gitlab", "Push Hook")(_push)
REGISTRY.register("gitlab", "Tag Push Hook")(_push)


@REGISTRY.register("github", "pull_request")
@REGISTRY.register("gitea", "pull_request")
def _pull_request(payload: Mapping[str, Any]) -> Classified:
    action = payload.get("action")
    pr = payload.get("pull_request") or {}
    head, base = pr.get("head") or {}, pr.get("base") or {}
    number = payload.get("number") or pr.get("number")
    event = Classified(
        EventStatus.QUEUED,
        "pull_request",
        f"pull request #{number}: validated and planned only",
        ref=f"refs/pull/{number}/head",
        before=base.get("sha"),
        after=head.get("sha"),
        **_repo_fields(payload),
    )
    if action not in ("opened", "synchronize", "synchronized", "reopened"):
        return replace(
            event,
            status=EventStatus.IGNORED,
            reason=f"pull request #{number} {action}: nothing to plan",
        )
    if not event.after or not event.repository:
        return replace(
            event,
            status=EventStatus.IGNORED,
            reason="pull request without head commit or repository",
        )
    return event


@REGISTRY.register("gitlab", "Merge Request Hook")
def _merge_request(payload: Mapping[str, Any]) -> Classified:
    attrs = payload.get("object_attributes") or {}
    action = attrs.get("action")
    iid = attrs.get("iid")
    last = (attrs.get("last_commit") or {}).get("id")
    event = Classified(
        EventStatus.QUEUED,
        "pull_request",
        f"merge request !{iid}: validated and planned only",
        ref=f"refs/merge-requests/{iid}/head",
        before=None,
        after=last,
        **_repo_fields(payload),
    )
    if action not in ("open", "reopen", "update") or not last or not event.repository:
        return replace(
            event,
            status=EventStatus.IGNORED,
            reason=f"merge request !{iid} {action}: nothing to plan",
        )
    return event
