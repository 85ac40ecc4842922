"""`POST /hooks/<forge>`: check the signature, classify, hand to the inbox, answer.

The view does nothing slow: the inbox only persists the event (the worker
does the git work later). The inbox is an interface handed in by the service
(`app.extensions["swapyard.inbox"]`), so this module needs no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import WebhookError
from .events import PING, REGISTRY, Classified, EventRegistry
from .forges import FORGES, parse_body


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


class Inbox(Protocol):
    def record(self, incoming: Incoming) -> Recorded: ...


bp = Blueprint("hooks", __name__)


def _error(status: int, message: str) -> ResponseReturnValue:
    return jsonify({"error": message}), status


@bp.post("/hooks/<forge_name>")
def receive(forge_name: str) -> ResponseReturnValue:
    forge = FORGES.get(forge_name)
    if forge is None:
        return _error(404, f"unknown forge {forge_name!r}; use one of {', '.join(FORGES)}")
    limit = current_app.config["MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body of {request.content_length} bytes exceeds the limit of {limit}")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _error(413, f"body exceeds the limit of {limit} bytes")
    if len(body) > limit:
        return _error(413, f"body of {len(body)} bytes exceeds the limit of {limit}")
    try:
        return _accept(forge_name, body)
    except WebhookError as exc:
        return _error(exc.status, str(exc))


def _accept(forge_name: str, body: bytes) -> ResponseReturnValue:
    forge = FORGES[forge_name]
    headers = request.headers
    forge.verify(headers, body, current_app.config["WEBHOOK_SECRET"] or None)
    payload = parse_body(body, request.content_type)
    event_name = forge.event_name(headers)
    registry: EventRegistry = current_app.extensions.get("swapyard.events", REGISTRY)
    classified = registry.classify(forge_name, event_name, payload)
    if classified.status == PING:
        return jsonify({"status": "pong", "event": event_name}), 200
    inbox: Inbox = current_app.extensions["swapyard.inbox"]
    recorded = inbox.record(
        Incoming(forge_name, event_name, forge.delivery_id(headers, body), classified)
    )
    answer: dict[str, Any] = {"event": recorded.event_id, "url": recorded.url}
    if recorded.duplicate:
        return jsonify({"status": "duplicate", **answer}), 200
    return jsonify({"status": recorded.status, "reason": recorded.reason, **answer}), 202


def init_app(app: Any, inbox: Inbox, registry: EventRegistry | None = None) -> None:
    app.extensions["swapyard.inbox"] = inbox
    app.extensions["swapyard.events"] = registry or REGISTRY
    app.register_blueprint(bp)
