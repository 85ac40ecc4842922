"""The event registry and the forge header rules, without a server."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from handlers.errors import SignatureError
from handlers.intake.events import REGISTRY, Classified, EventStatus
from handlers.intake.forges import FORGES
from tests.service.deliveries import body as fixture


def test_outside_code_registers_like_the_built_ins():
    registry = REGISTRY.copy()
    assert registry.classify("github", "release", {}).status == "ignored"

    @registry.register("github", "release")
    def release(body):
        return Classified(EventStatus.QUEUED, "release", f"release {body['tag']}")

    assert registry.classify("github", "release", {"tag": "v1"}).reason == "release v1"
    assert not REGISTRY.handles("github", "release")  # the built-in registry is untouched
    assert registry.classify("github", "push", fixture("github/push.json")).kind == "push"


def test_forgejo_headers():
    body = b'{"ref": "refs/heads/main"}'
    digest = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    forge = FORGES["gitea"]
    headers = {
        "X-Forgejo-Event": "push",
        "X-Forgejo-Delivery": "d-1",
        "X-Forgejo-Signature": digest,
        "X-Hub-Signature-256": "sha256=",
    }
    forge.verify(headers, body, "k")
    assert forge.event_name(headers) == "push"
    assert forge.delivery_id(headers, body) == "d-1"
    with pytest.raises(SignatureError, match="X-Forgejo-Signature does not match"):
        forge.verify({**headers, "X-Forgejo-Signature": "0" * 64}, body, "k")


def test_gitlab_delivery_prefers_the_retry_stable_key():
    forge = FORGES["gitlab"]
    headers = {"Idempotency-Key": "same-across-retries", "X-Gitlab-Event-UUID": "per-event"}
    assert forge.delivery_id(headers, b"{}") == "same-across-retries"
    assert forge.delivery_id({}, b"{}").startswith("sha256-of-body:")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"ref": "try-new-proxy", "ref_type": "branch"},
            "branch try-new-proxy deleted: nothing is destroyed (set state: absent to destroy)",
        ),
        ({"ref": "v2024.06", "ref_type": "tag"}, "tag v2024.06 deleted: tags are not deployed"),
        ({"ref": "refs/tags/v1", "ref_type": "tag"}, "tag v1 deleted: tags are not deployed"),
    ],
)
@pytest.mark.parametrize("forge", ["github", "gitea"])
def test_delete_events_are_recorded_never_acted_on(forge, body, reason):
    event = REGISTRY.classify(forge, "delete", {**body, "repository": {"full_name": "o/r"}})
    assert (event.status, event.kind, event.reason, event.repository) == (
        "ignored",
        "delete",
        reason,
        "o/r",
    )
