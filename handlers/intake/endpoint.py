"""`POST /hooks/<forge>`: check the signature, classify, hand to the inbox, answer.

This is the one hot path of the service (a forge may deliver hundreds of
pushes per second during a migration or a replay), so it is a plain WSGI
endpoint in front of the Flask app, not a Flask view: no request context, no
session, no routing table, no response object — about a third of the Python
time a Flask view spent per delivery. Everything else (API, pages, metrics)
goes on to Flask untouched.

The endpoint does nothing slow: the inbox only persists the event (the worker
does the git work later). The inbox is an interface handed in by the service
(`app.extensions["swapyard.inbox"]`), so this module needs no database.
The few settings it obeys come in as one `Reception` (the service builds it
from its settings), since this package knows nothing of the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import orjson
from werkzeug.datastructures import EnvironHeaders

from handlers.errors import WebhookError
from handlers.intake.events import REGISTRY, Classified, EventRegistry, EventStatus, unmanaged
from handlers.intake.forges import FORGES, parse_body

log = logging.getLogger(__name__)

PREFIX = "/hooks/"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Incoming:
    """A verified, classified delivery, ready to be stored."""

    forge: str
    event_name: str
    delivery_id: str
    classified: Classified


@dataclass(frozen=True)
class Recorded:
    event_id: int
    status: str
    reason: str | None
    duplicate: bool
    url: str


@dataclass(frozen=True)
class Reception:
    """What the endpoint obeys: body limit, webhook secret (None: unsigned), pinned repositories."""

    max_body_bytes: int
    secret: str | None
    repositories: Mapping[str, str]


class Inbox(Protocol):
    def record(self, incoming: Incoming) -> Recorded: ...


class HookEndpoint:
    """WSGI middleware: answers `/hooks/<forge>` itself and passes every other path to `app`."""

    def __init__(self, app: WsgiApp, reception: Reception, extensions: Mapping[str, Any]):
        self.app = app
        self.reception = reception
        self.extensions = extensions

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        status, answer = self._answer(path[len(PREFIX) :], environ)
        body = orjson.dumps(answer)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _answer(self, forge_name: str, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        forge = FORGES.get(forge_name)
        if forge is None:
            return 404, {"error": f"unknown forge {forge_name!r}; use one of {', '.join(FORGES)}"}
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, {"error": f"{environ.get('REQUEST_METHOD')} not allowed; POST a delivery"}
        limit = self.reception.max_body_bytes
        length = _content_length(environ)
        if length is not None and length > limit:
            return 413, {"error": f"body of {length} bytes exceeds the limit of {limit}"}
        # without a Content-Length (chunked), read one byte past the limit to detect excess
        body = environ["wsgi.input"].read(limit + 1 if length is None else length)
        if len(body) > limit:
            return 413, {"error": f"body exceeds the limit of {limit} bytes"}
        try:
            return self._accept(forge_name, environ, body)
        except WebhookError as exc:
            return exc.status, {"error": str(exc)}
        except Exception:  # the forge retries a 5xx; nothing was acknowledged
            log.exception("delivery to /hooks/%s failed", forge_name)
            return 500, {"error": "internal error: the delivery was not stored; retry it"}

    def _accept(
        self, forge_name: str, environ: dict[str, Any], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        forge = FORGES[forge_name]
        headers = EnvironHeaders(environ)
        forge.verify(headers, body, self.reception.secret or None)
        payload = parse_body(body, environ.get("CONTENT_TYPE"))
        event_name = forge.event_name(headers)
        registry: EventRegistry = self.extensions.get("swapyard.events", REGISTRY)
        classified = unmanaged(
            registry.classify(forge_name, event_name, payload), self.reception.repositories
        )
        if classified.status == EventStatus.PING:
            return 200, {"status": "pong", "event": event_name}
        inbox: Inbox = self.extensions["swapyard.inbox"]
        recorded = inbox.record(
            Incoming(forge_name, event_name, forge.delivery_id(headers, body), classified)
        )
        answer: dict[str, Any] = {"event": recorded.event_id, "url": recorded.url}
        if recorded.duplicate:
            return 200, {"status": "duplicate", **answer}
        return 202, {"status": recorded.status, "reason": recorded.reason, **answer}


def _content_length(environ: Mapping[str, Any]) -> int | None:
    try:
        return int(environ["CONTENT_LENGTH"])
    except (KeyError, ValueError):
        return None


def init_app(
    app: Any, inbox: Inbox, reception: Reception, registry: EventRegistry | None = None
) -> None:
    """Mount the endpoint in front of the Flask app `app` (its `wsgi_app`)."""
    app.extensions["swapyard.inbox"] = inbox
    app.extensions["swapyard.events"] = registry or REGISTRY
    app.wsgi_app = HookEndpoint(app.wsgi_app, reception, app.extensions)
